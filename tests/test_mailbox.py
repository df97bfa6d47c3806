"""The Mailbox that replaces asyncio.Queue for each connection's input and channel."""

import asyncio

from service.socket.mailbox import Mailbox


async def test_messages_come_out_in_order_whether_or_not_a_reader_waits():
    mailbox = Mailbox()
    reader = asyncio.ensure_future(mailbox.get())
    await asyncio.sleep(0)  # the reader is now waiting
    for message in ("a", "b", "c"):
        mailbox.put_nowait(message)
    assert await reader == "a"
    assert [await mailbox.get(), await mailbox.get()] == ["b", "c"]
    assert mailbox.idle() and mailbox.qsize() == 0


async def test_a_message_handed_to_a_cancelled_reader_is_kept_for_the_next():
    mailbox = Mailbox()
    reader = asyncio.ensure_future(mailbox.get())
    await asyncio.sleep(0)
    mailbox.put_nowait("kept")
    reader.cancel()  # cancelled after the hand-over, before it ran
    await asyncio.gather(reader, return_exceptions=True)
    assert reader.cancelled()
    mailbox.put_nowait("next")
    assert [await mailbox.get(), await mailbox.get()] == ["kept", "next"]


async def test_a_cancelled_waiting_reader_leaves_no_trace():
    mailbox = Mailbox()
    reader = asyncio.ensure_future(mailbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert mailbox.idle()
    mailbox.put_nowait("x")
    assert mailbox.qsize() == 1 and await mailbox.get() == "x"


def test_an_empty_mailbox_is_truthy_like_an_asyncio_queue():
    assert Mailbox()  # Daphne checks `if self.application_queue:` before a disconnect
