"""The worker process: Channels' runworker Worker with job slots and a scheduler.

It takes a job off the channel only when it has a free slot (so idle workers get the
work instead of one worker hoarding it), moves due jobs onto the channel, waits out
Redis outages instead of dying, and hands running jobs back on SIGTERM.
"""

import asyncio
import logging
import signal
import uuid

from django.conf import settings

from service import metrics
from service.storage.clients import REDIS_FAILURES, redis_async
from service.storage.jobs import jobs_due
from service.tasks import cancel_and_wait
from service.upstream.channels import GatedWorker
from service.worker import jobs, probes

log = logging.getLogger(__name__)
SCHEDULE_INTERVAL = 0.25


class GroupcastWorker(GatedWorker):
    async def arun(self):
        """Serve until SIGTERM/SIGINT, then hand running jobs back and exit cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        probes.mark("serving")
        serving = asyncio.ensure_future(super().arun())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        probes.mark("stopping")
        if serving.done():
            stopping.cancel()
            serving.result()  # a crash: let it show
            return
        log.info("stopping: handing %d running job(s) back", len(jobs.running))
        await cancel_and_wait([serving])
        await jobs.jobs_release_running()

    async def handle(self):
        self.slots = asyncio.Semaphore(settings.GROUPCAST_WORKER_CONCURRENCY)
        scheduler = asyncio.ensure_future(self.schedule_due_jobs())
        try:
            await super().handle()
        finally:
            scheduler.cancel()

    def listener_scope(self, channel):
        scope = super().listener_scope(channel)
        if channel == jobs.CHANNEL:
            scope["groupcast.slots"] = self.slots
        return scope

    async def before_receive(self, channel):
        """A job is taken off its channel only with a free slot to run it in."""
        if channel == jobs.CHANNEL:
            await self.slots.acquire()

    async def receive(self, channel):
        """The next message on `channel`, waiting out Redis outages instead of dying."""
        delay = 0.1
        while True:
            try:
                message = await self.channel_layer.receive(channel)
                metrics.redis_ok("worker")
                return message
            except REDIS_FAILURES as error:
                metrics.redis_failed("worker")
                log.warning("receiving on %s failed (%s); retrying in %.1fs", channel, error, delay)
                await asyncio.sleep(delay)  # back off while Redis is away
                delay = min(delay * 2, 5.0)

    async def schedule_due_jobs(self):
        """Put due jobs (new, delayed, retried, or abandoned by a dead worker) on the channel."""
        client = redis_async()
        claim = uuid.uuid4().hex
        while True:
            try:
                for job_id in await jobs_due(client, claim=claim):
                    # twice on the channel does no harm: a job runs only from `queued`
                    await self.channel_layer.send(jobs.CHANNEL, {"type": "job.run", "job": job_id})
                metrics.redis_ok("worker")
                # all on the channel: the next call claims anew. After a failure, the same
                # claim again: jobs claimed by a call whose answer or sends were lost are
                # sent now, not a lease later.
                claim = uuid.uuid4().hex
            except Exception as error:
                metrics.redis_failed("worker")
                log.warning("scheduling due jobs failed: %s", error)
            await asyncio.sleep(SCHEDULE_INTERVAL)  # the scheduler's polling period
