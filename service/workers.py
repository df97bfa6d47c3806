"""The worker role: `django-admin runworker groupcast.jobs groupcast.events`.

JobsConsumer runs bulk broadcasts; EventsConsumer hands connection events to the
webhook. GroupcastWorker is Channels' runworker Worker with two additions: it takes a
job off the channel only when it has a free slot (so idle workers get the work instead
of one worker hoarding it), and it moves due jobs onto the channel.
"""

import asyncio
import logging
import signal

from channels.consumer import AsyncConsumer
from channels.worker import Worker
from django.conf import settings
from redis import RedisError

from service import events, jobs, metrics
from service.store import redis_async

log = logging.getLogger(__name__)
SCHEDULE_INTERVAL = 0.25


class JobsConsumer(AsyncConsumer):
    """Runs the jobs sent to `groupcast.jobs`."""

    async def job_run(self, message):
        slots = self.scope.get("groupcast.slots")
        task = asyncio.ensure_future(jobs.job_run(redis_async(), message["job"]))
        if slots is None:
            await task  # under a plain Channels Worker: one job at a time
        else:
            task.add_done_callback(lambda _: slots.release())


class EventsConsumer(AsyncConsumer):
    """Receives batches of connection events from the socket processes."""

    async def groupcast_events(self, message):
        batch = message["events"]
        metrics.EVENTS.labels("received").inc(len(batch))
        if not settings.GROUPCAST_WEBHOOK_URL:
            return
        try:
            await asyncio.to_thread(events.webhook_deliver, batch)
            metrics.EVENTS.labels("delivered").inc(len(batch))
        except Exception as error:
            metrics.EVENTS.labels("webhook_failed").inc(len(batch))
            log.warning("webhook delivery of %d events failed: %s", len(batch), error)


class GroupcastWorker(Worker):
    async def arun(self):
        """Serve until SIGTERM/SIGINT, then hand running jobs back and exit cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        serving = asyncio.ensure_future(super().arun())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            stopping.cancel()
            serving.result()  # a crash: let it show
            return
        log.info("stopping: handing %d running job(s) back", len(jobs.running))
        serving.cancel()
        await asyncio.wait([serving], timeout=2)
        await jobs.jobs_release_running()

    async def handle(self):
        self.slots = asyncio.Semaphore(settings.GROUPCAST_WORKER_CONCURRENCY)
        scheduler = asyncio.ensure_future(self.schedule_due_jobs())
        try:
            await super().handle()
        finally:
            scheduler.cancel()

    async def listener(self, channel):
        """Channels' listener, waiting for a free slot before taking the next job."""
        scope = {"type": "channel", "channel": channel}
        if channel == jobs.CHANNEL:
            scope["groupcast.slots"] = self.slots
        while True:
            if channel == jobs.CHANNEL:
                await self.slots.acquire()
            message = await self._receive(channel)
            if not message.get("type"):
                raise ValueError("Worker received message with no type.")
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)

    async def _receive(self, channel):
        """The next message on `channel`, waiting out Redis outages instead of dying."""
        delay = 0.1
        while True:
            try:
                message = await self.channel_layer.receive(channel)
                metrics.redis_ok("worker")
                return message
            except (RedisError, OSError) as error:
                metrics.redis_failed("worker")
                log.warning("receiving on %s failed (%s); retrying in %.1fs", channel, error, delay)
                await asyncio.sleep(delay)  # back off while Redis is away
                delay = min(delay * 2, 5.0)

    async def schedule_due_jobs(self):
        """Put due jobs (new, delayed, retried, or abandoned by a dead worker) on the channel."""
        client = redis_async()
        while True:
            try:
                for job_id in await jobs.jobs_due(client):
                    await self.channel_layer.send(jobs.CHANNEL, {"type": "job.run", "job": job_id})
                metrics.redis_ok("worker")
            except Exception as error:
                metrics.redis_failed("worker")
                log.warning("scheduling due jobs failed: %s", error)
            await asyncio.sleep(SCHEDULE_INTERVAL)  # the scheduler's polling period
