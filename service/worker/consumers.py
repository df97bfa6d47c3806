"""The worker role's consumers, on the fixed channels `runworker` serves.

JobsConsumer runs bulk broadcasts; EventsConsumer hands connection events to the webhook.
"""

import asyncio
import logging

from channels.consumer import AsyncConsumer
from django.conf import settings

from service import metrics
from service.storage.clients import redis_async
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
            await asyncio.to_thread(webhook.webhook_deliver, batch)
            metrics.EVENTS.labels("delivered").inc(len(batch))
        except Exception as error:
            metrics.EVENTS.labels("webhook_failed").inc(len(batch))
            log.warning("webhook delivery of %d events failed: %s", len(batch), error)
