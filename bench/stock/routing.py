from django.urls import path

from bench.stock.consumers import GroupRelayConsumer

websocket_urlpatterns = [path("ws", GroupRelayConsumer.as_asgi())]
