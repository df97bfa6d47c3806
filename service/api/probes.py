"""/healthz, /readyz and /metrics of the http role."""

from django.http import HttpResponse, JsonResponse

from service import metrics
from service.storage.clients import redis_reachable


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    if redis_reachable("http"):
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "unready", "reason": "redis unreachable"}, status=503)


def metrics_view(request):
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
