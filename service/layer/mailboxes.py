"""Messages for this process's channels, handed from the layer's thread to receivers on
any event loop (Daphne's, runworker's, or a fresh one per async_to_sync call).

One lock guards every mailbox: the layer's thread puts, receivers take. A mailbox holds
at most `capacity` messages (channels_redis's receive buffer does the same, silently);
the oldest one is dropped and counted when a consumer does not take its messages.
"""

import asyncio
import collections
import threading

from service import metrics


class _Mailbox:
    __slots__ = ("messages", "waiters")

    def __init__(self):
        self.messages = None  # deque, once a message waits for a reader
        self.waiters = None  # list of futures, once a reader waits (a deque costs ~600 B)


class Mailboxes:
    def __init__(self, capacity):
        self.capacity = capacity
        self.lock = threading.Lock()
        self.boxes = {}

    def put(self, channels, message):
        """Hand `message` to each of `channels` (from any thread)."""
        handed = []
        with self.lock:
            for channel in channels:
                box = self.boxes.get(channel)
                if box is None:
                    box = self.boxes[channel] = _Mailbox()
                waiter = None
                while box.waiters:
                    candidate = box.waiters.pop(0)
                    if not candidate.done():
                        waiter = candidate
                        break
                if not box.waiters:
                    box.waiters = None
                if waiter is not None:
                    handed.append((waiter, channel))
                    continue
                if box.messages is None:
                    box.messages = collections.deque()
                elif len(box.messages) >= self.capacity:
                    box.messages.popleft()
                    metrics.DROPPED.labels("channel_full").inc()
                box.messages.append(message)
        by_loop = collections.defaultdict(list)
        for waiter, channel in handed:
            by_loop[waiter.get_loop()].append((waiter, channel))
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._hand, waiters, message)
            except RuntimeError:  # the receiver's loop is closed: keep the message
                self._keep([channel for _, channel in waiters], message)

    def _hand(self, waiters, message):
        """On the receiver's loop: resolve each waiter, or keep the message for the next
        reader if the waiter was cancelled meanwhile."""
        for waiter, channel in waiters:
            if waiter.done():
                self._keep([channel], message)
            else:
                waiter.set_result(message)

    def _keep(self, channels, message):
        with self.lock:
            for channel in channels:
                box = self.boxes.setdefault(channel, _Mailbox())
                if box.messages is None:
                    box.messages = collections.deque()
                box.messages.appendleft(message)

    async def get(self, channel):
        """The next message for `channel`, waiting on the running loop for it."""
        with self.lock:
            box = self.boxes.get(channel)
            if box is not None and box.messages:
                message = box.messages.popleft()
                self._forget_if_idle(channel, box)
                return message
            if box is None:
                box = self.boxes[channel] = _Mailbox()
            waiter = asyncio.get_running_loop().create_future()
            if box.waiters is None:
                box.waiters = []
            box.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._keep([channel], waiter.result())  # handed over just as it was cancelled
            raise
        finally:
            with self.lock:
                box = self.boxes.get(channel)
                if box is not None:
                    if box.waiters and waiter in box.waiters:
                        box.waiters.remove(waiter)
                    self._forget_if_idle(channel, box)

    def _forget_if_idle(self, channel, box):
        if not box.messages and not box.waiters:
            self.boxes.pop(channel, None)

    def queued(self, channel):
        with self.lock:
            box = self.boxes.get(channel)
            return len(box.messages) if box is not None and box.messages else 0
