"""Stopping asyncio tasks that talk to Redis."""

import asyncio
import logging

log = logging.getLogger(__name__)

# How long a cancelled task may take before it is cancelled again.
CANCEL_AGAIN_AFTER = 0.05


async def cancel_and_wait(tasks, timeout=2.0):
    """Cancel `tasks` and wait up to `timeout` seconds for them to end, cancelling again
    any that goes on; a task still running then is logged.

    A cancellation can be lost: Python 3.11's asyncio.wait_for (redis-py awaits every
    command's write with it) returns the write's result and drops the cancellation when
    both come in the same pass (bpo-42130, fixed in 3.12). A layer puller cancelled then
    went on to block in BZPOPMIN for up to 5 s, past its loop's close ("Task was destroyed
    but it is pending")."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            for task in pending:
                log.warning("task %r did not stop within %.0fs", task.get_name(), timeout)
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(left, CANCEL_AGAIN_AFTER))
