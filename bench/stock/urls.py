from django.urls import path

from bench.stock.views import publish

urlpatterns = [path("publish", publish)]
