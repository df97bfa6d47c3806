"""runworker with groupcast's worker: job slots, the due-job scheduler and a metrics port."""

from channels.management.commands import runworker
from django.conf import settings

from service import metrics
from service.storage.clients import startup_check
from service.worker.probes import worker_probe_serve
from service.worker.server import GroupcastWorker


class Command(runworker.Command):
    worker_class = GroupcastWorker

    def handle(self, *args, **options):
        startup_check("worker")
        metrics.declare_role("worker")
        worker_probe_serve(settings.GROUPCAST_METRICS_PORT, settings.GROUPCAST_METRICS_HOST)
        super().handle(*args, **options)
