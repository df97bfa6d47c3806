# chat/routing.py (tutorial part 2), plus a route to part 3's asynchronous consumer
from django.urls import re_path

from . import consumers, consumers_async

websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>\w+)/$", consumers.ChatConsumer.as_asgi()),
    re_path(r"ws/achat/(?P<room_name>\w+)/$", consumers_async.ChatConsumer.as_asgi()),
]
