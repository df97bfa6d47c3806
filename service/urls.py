from django.urls import path

from service.api import demo, probes, views

urlpatterns = [
    path("api/v1/openapi.json", views.openapi),
    path("api/v1/publish", views.publish),
    path("api/v1/batch", views.batch),
    path("api/v1/tokens", views.tokens),
    path("api/v1/jobs", views.jobs),
    path("api/v1/jobs/<str:job_id>", views.job),
    path("api/v1/groups/<str:name>", views.group),
    path("api/v1/groups/<str:name>/presence", views.presence),
    path("api/v1/disconnect", views.disconnect),
    path("api/v1/unsubscribe", views.unsubscribe),
    path("healthz", probes.healthz),
    path("readyz", probes.readyz),
    path("metrics", probes.metrics_view),
    path("", demo.index),
    path("static/<str:name>", demo.script),
    path("demo/token", demo.token),
]
