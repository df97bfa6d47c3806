"""Scenario 4: `kubectl rollout restart` of the socket Deployment under a steady publish stream.

Clients sit on every socket pod (a port-forward each). Draining pods close them with 1012;
they reconnect through the socket Service and resume with `since`. Afterwards every client
holds every acknowledged (HTTP 200) message exactly once, in order.
"""

import asyncio

from client import RESTARTING, Subscriber, assert_exactly_once_in_order
from conftest import unique
from stream import PublishStream

CLIENTS_PER_POD = 2


async def test_rollout_restart_keeps_every_message(api, cluster, forwards, report):
    old_pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3)
    group = unique("s4")
    token = api.token([group], sub="rollout")
    subscribers = []
    for pod in old_pods:
        for i in range(CLIENTS_PER_POD):
            # a port-forward per client: kubectl port-forward exits as a whole when one of its
            # connections ends in a reset (kubernetes#74551), which would cut a client still
            # waiting for its turn in the pod's staggered close before its 1012 came
            forward = forwards(f"pod/{pod}", 8001)
            subscribers.append(Subscriber(f"{pod}#{i}", f"ws://127.0.0.1:{forward.local_port}/ws", token, [group],
                                          reconnect_url=cluster.ws_url))
    await asyncio.gather(*(s.start() for s in subscribers))
    stream = PublishStream(api, group).start()
    try:
        await stream.wait_acked(20, 30)
        deployment = cluster.deployment_name("socket")
        await asyncio.to_thread(cluster.kubectl, "rollout", "restart", f"deployment/{deployment}")
        await asyncio.to_thread(cluster.wait_rollout, "socket", 300)
        new_pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3, 180)
        assert not set(new_pods) & set(old_pods), f"old pods still serving: {set(new_pods) & set(old_pods)}"
        # every client must have been moved off its old pod, then the stream goes on a while
        await asyncio.gather(*(s.wait_for(lambda s=s: s.connects >= 2, 60, "a reconnect") for s in subscribers))
        await stream.wait_acked(40, 60)
    finally:
        await stream.stop()
    try:
        last = stream.acked[-1]
        await asyncio.gather(*(s.wait_for(lambda s=s: last in s.offsets(group), 30, "the last acknowledged message")
                               for s in subscribers))
        for subscriber in subscribers:
            assert RESTARTING in subscriber.closes, f"{subscriber.name} closes: {subscriber.closes}"
            assert_exactly_once_in_order(subscriber, group, stream.acked)
        report.add(
            "4 rollout restart",
            socket_pods=f"{len(old_pods)}->{len(new_pods)}",
            clients=len(subscribers),
            published=stream.sent,
            acked=len(stream.acked),
            outcomes=dict(stream.outcomes),
            received_per_client=sorted({len(s.offsets(group)) for s in subscribers}),
            close_codes=sorted({str(c) for s in subscribers for c in s.closes}),
            reconnects=sum(s.connects - 1 for s in subscribers),
        )
    finally:
        await asyncio.gather(*(s.stop() for s in subscribers))
