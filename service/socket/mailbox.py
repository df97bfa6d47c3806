"""A small FIFO of messages for one consumer: what asyncio.Queue does for a connection,
at a tenth of its memory.

Every idle WebSocket holds two such queues (Daphne's input queue and its channel-layer
channel). An asyncio.Queue is four deques and an Event, about 3 kB even when empty; a
Mailbox is two slots until something waits in it or arrives (bench: RSS per idle
connection).
"""

import asyncio
import collections


class Mailbox:
    __slots__ = ("messages", "waiters")

    def __init__(self):
        self.messages = None  # deque, once a message has to wait for a reader
        self.waiters = None  # list of futures, once a reader has to wait for a message

    # No __len__: Daphne tests `if self.application_queue:`, so a Mailbox must be truthy
    # even when empty, as an asyncio.Queue is.
    def qsize(self):
        return len(self.messages) if self.messages else 0

    def empty(self):
        return not self.messages

    def idle(self):
        """Nothing queued and nobody waiting: the mailbox can be forgotten."""
        return not self.messages and not self.waiters

    def put_nowait(self, message):
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(message)
                return
        if self.messages is None:
            self.messages = collections.deque()
        self.messages.append(message)

    async def get(self):
        messages = self.messages
        if messages:
            message = messages.popleft()
            if not messages:
                self.messages = None  # an empty deque alone is ~700 bytes
            return message
        waiter = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a message just as the reader was cancelled: keep it, first in line.
                if self.messages is None:
                    self.messages = collections.deque()
                self.messages.appendleft(waiter.result())
            elif waiter in self.waiters:
                self.waiters.remove(waiter)
            raise
