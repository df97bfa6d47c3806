"""/healthz, /readyz and /metrics of the http role."""

from django.http import HttpResponse, JsonResponse

from service import metrics
from service.storage.clients import redis_problem


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    # a publish may go to any group: the http role depends on every shard of a cluster
    problem = redis_problem("http")
    if problem is None:
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "unready", "reason": problem}, status=503)


def metrics_view(request):
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
