"""The worker role's consumers, on the fixed channels `runworker` serves.

JobsConsumer runs jobs (bulk broadcasts, webhook deliveries); EventsConsumer turns each
batch of connection events into a webhook delivery job.
"""

import asyncio
import logging

from channels.consumer import AsyncConsumer
from django.conf import settings

from service import metrics
from service.storage.clients import redis_async
from service.storage.jobs import webhook_job_create
from service.worker import jobs, webhook

log = logging.getLogger(__name__)


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
            # Recorded before it is attempted: from here on a dying worker loses nothing,
            # and the delivery runs (and is retried) like every job.
            await webhook_job_create(redis_async(), body=webhook.webhook_body(batch), events=len(batch))
        except Exception as error:
            metrics.EVENTS.labels("webhook_failed").inc(len(batch))
            log.warning("could not record a webhook delivery of %d events: %s", len(batch), error)
