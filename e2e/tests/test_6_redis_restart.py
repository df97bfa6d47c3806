"""Scenario 6: the Redis pod deleted; it comes back from its StatefulSet with the AOF on its PVC.

Twice under a steady publish stream: `kubectl delete pod` (the StatefulSet replaces the pod
within seconds), then a longer outage (the StatefulSet scaled to 0, which deletes the pod,
and back to 1). While Redis is away a publish answers 503 with Retry-After, never a false
200. Once it is back nothing acknowledged is lost (a fresh client replays the whole group
from the start), and the clients connected all along are subscribed again: they hold every
acknowledged message, including those published after the return, exactly once, in order.
"""

import asyncio

from client import Api, Subscriber, assert_exactly_once_in_order
from conftest import unique
from stream import PublishStream


async def test_redis_pod_deleted(api, cluster, forwards, report):
    group = unique("s6")
    token = api.token([group], sub="redis")
    socket_pods = await asyncio.to_thread(cluster.ready_pods, "socket")
    subscribers = []
    for pod in socket_pods:
        forward = forwards(f"pod/{pod}", 8001)
        subscribers.append(Subscriber(pod, f"ws://127.0.0.1:{forward.local_port}/ws", token, [group],
                                      reconnect_url=cluster.ws_url))
    await asyncio.gather(*(s.start() for s in subscribers))

    # publish straight to one http pod: its readiness drops while Redis is away, which would
    # take it out of the Service, and the point is what the API answers meanwhile
    (http_pod, *_) = await asyncio.to_thread(cluster.ready_pods, "http")
    http = forwards(f"pod/{http_pod}", 8000)
    stream = PublishStream(Api(f"http://127.0.0.1:{http.local_port}", api.api_key), group, interval=0.1).start()
    (redis_pod,) = await asyncio.to_thread(cluster.all_pods, "redis")
    old_uid = cluster.get_json("pod", redis_pod)["metadata"]["uid"]
    statefulset = cluster.get_json("statefulset", "-l", cluster.component_selector("redis"))["items"][0]["metadata"]["name"]
    try:
        await stream.wait_acked(10, 30)
        acked_before = len(stream.acked)

        # a: the pod deleted, replaced by the StatefulSet at once
        await asyncio.to_thread(cluster.kubectl, "delete", "pod", redis_pod, "--wait=false")
        replaced = await asyncio.to_thread(cluster.wait_replaced, redis_pod, old_uid, 180)
        await stream.wait_acked(20, 60)
        answers_a = dict(stream.outcomes)

        # b: the pod deleted and kept away for a while
        refused = stream.outcomes[503]
        await asyncio.to_thread(cluster.kubectl, "scale", f"statefulset/{statefulset}", "--replicas=0")
        await stream.wait_status(503, 60, count=refused + 1)
        await asyncio.to_thread(cluster.kubectl, "wait", "--for=delete", f"pod/{redis_pod}", "--timeout=120s",
                                timeout=130)
        await stream.wait_status(503, 60, count=stream.outcomes[503] + 10)  # ten more with the pod gone
        await asyncio.to_thread(cluster.kubectl, "scale", f"statefulset/{statefulset}", "--replicas=1")
        await asyncio.to_thread(cluster.wait_replaced, redis_pod, replaced["metadata"]["uid"], 180)
        acked_at_return = len(stream.acked)
        await stream.wait_acked(30, 90)
    finally:
        await stream.stop()
        await asyncio.to_thread(cluster.kubectl, "scale", f"statefulset/{statefulset}", "--replicas=1")

    try:
        statuses = {k: v for k, v in stream.outcomes.items()}
        assert not [s for s in statuses if isinstance(s, int) and s not in (200, 503)], statuses
        assert not stream.bad_503, f"503 without Retry-After: {stream.bad_503[:3]}"

        # nothing acknowledged was lost: a new client replays the group from its very start
        replay = await Subscriber("replay", cluster.ws_url, token, [group], since="0-0").start()
        try:
            last = stream.acked[-1]
            await replay.wait_for(lambda: last in replay.offsets(group), 30, "the replay up to the last ack")
            assert_exactly_once_in_order(replay, group, stream.acked)
            # a 503 says "nothing was stored": a refused message that is in the stream anyway
            # comes twice to a client that retries it without an Idempotency-Key
            stored = {m["data"]["n"] for m in replay.messages}
            refused_but_stored = sorted(n for n in stream.refused if n in stored)
            unanswered_but_stored = sorted(n for n in stream.unanswered if n in stored)
        finally:
            await replay.stop()

        # the clients connected all along were resubscribed and missed nothing
        await asyncio.gather(*(s.wait_for(lambda s=s: last in s.offsets(group), 60, "the last acknowledged message")
                               for s in subscribers))
        for subscriber in subscribers:
            assert_exactly_once_in_order(subscriber, group, stream.acked)
        report.add(
            "6 redis pod deleted",
            published=stream.sent,
            outcomes_after_delete=answers_a,
            outcomes=statuses,
            acked_before_delete=acked_before,
            acked_after_return=len(stream.acked) - acked_at_return,
            acked=len(stream.acked),
            replayed=len(replay.offsets(group)),
            refused_503_but_stored=len(refused_but_stored),
            unanswered_but_stored=len(unanswered_but_stored),
            clients=len(subscribers),
            received_per_client=sorted({len(s.offsets(group)) for s in subscribers}),
            close_codes=sorted({str(c) for s in subscribers for c in s.closes}),
            subscribe_retries=sum(s.retries for s in subscribers),
        )
    finally:
        await asyncio.gather(*(s.stop() for s in subscribers))
