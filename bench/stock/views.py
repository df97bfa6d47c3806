"""The publish endpoint: group_send from a synchronous view, as the Channels docs show
("Using Outside Of Consumers")."""

import json

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def publish(request):
    body = json.loads(request.body)
    group = body["group"]
    async_to_sync(get_channel_layer().group_send)(
        group, {"type": "group.message", "group": group, "data": body["data"]}
    )
    return JsonResponse({"group": group})
