"""Requests from the API to every socket process (disconnect a sub, unsubscribe it from
a group), broadcast on pub/sub; each process answers with how many connections it acted
on, and the API adds the answers up."""

import json
import time
import uuid

from service.storage import keys
from service.storage.clients import redis_sync

# How long the API waits for every socket process to answer.
ANSWER_SECONDS = 2.0


def control_request(*, op, sub, **fields):
    """Broadcast one request; the number of connections the socket processes acted on
    (those that answered within ANSWER_SECONDS)."""
    client = redis_sync()
    reply = keys.control_reply(uuid.uuid4().hex)
    request = json.dumps({"op": op, "sub": sub, "reply": reply, **fields})
    publish = client.spublish if keys.clustered() else client.publish
    listeners = publish(keys.control_channel(), request)
    done = 0
    deadline = time.monotonic() + ANSWER_SECONDS
    for _ in range(listeners):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        answer = client.blpop([reply], timeout=left)
        if answer is None:
            break
        done += int(answer[1])
    client.delete(reply)
    return done
