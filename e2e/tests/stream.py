"""A steady publish stream that records what the API acknowledged."""

import asyncio
import collections
import time


class PublishStream:
    """Publishes {"n": i} to one group every `interval` seconds until stopped.

    `acked` holds the offsets answered 200, in order; `outcomes` counts every answer
    by status (or by exception name when there was no answer at all).
    """

    def __init__(self, api, group, interval=0.05):
        self.api = api
        self.group = group
        self.interval = interval
        self.acked = []
        self.outcomes = collections.Counter()
        self.first_503_at = None
        self.bad_503 = []  # 503 answers without Retry-After
        self.refused = []  # n of each publish answered 503 ("nothing was stored")
        self.refusals = collections.Counter()  # the error codes of those 503 answers
        self.unanswered = []  # n of each publish that got no answer at all
        self.sent = 0
        self.history = []  # (monotonic time of the answer, status or exception name), in order
        self._stop = asyncio.Event()
        self._task = None
        self._progress = asyncio.Event()

    def start(self):
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self):
        self._stop.set()
        await self._task

    async def wait_acked(self, count, timeout):
        """Until `count` more publishes than now have been acknowledged."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(self.acked)} of {target} publishes acknowledged after {timeout} s: {dict(self.outcomes)}"
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def wait_status(self, status, timeout, count=1):
        """Until `count` answers with `status` have come in (in all, since the start)."""
        deadline = time.monotonic() + timeout
        while self.outcomes[status] < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{self.outcomes[status]} of {count} {status} answers within {timeout} s: {dict(self.outcomes)}"
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            self.sent += 1
            try:
                answer = await self.api.apublish(self.group, {"n": n}, timeout=5)
            except Exception as error:  # no answer: neither acknowledged nor refused
                self.outcomes[type(error).__name__] += 1
                self.unanswered.append(n)
                self.history.append((time.monotonic(), type(error).__name__))
            else:
                self.outcomes[answer.status] += 1
                self.history.append((time.monotonic(), answer.status))
                if answer.status == 200:
                    self.acked.append(answer.body["offset"])
                elif answer.status == 503:
                    self.refused.append(n)
                    self.refusals[(answer.body.get("error") or {}).get("code")] += 1
                    self.first_503_at = self.first_503_at or time.monotonic()
                    if "Retry-After" not in answer.headers:
                        self.bad_503.append(answer)
            self._progress.set()
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass
