"""Scenario 3: socket pods 1 -> 3, by `kubectl scale` and by the chart's HPA values.

With clients on every socket pod (a port-forward to each pod), one publish reaches each
subscriber exactly once, and GET /api/v1/groups/<g> counts all of them. Then one user,
connected on all three pods, is thrown out by one API call; and 300 clients that all landed
on one pod spread over three after a scale-up.
"""

import asyncio
import time
import urllib.request

from client import Subscriber, assert_exactly_once_in_order
from conftest import unique
from stream import PublishStream

CLIENTS_PER_POD = 2


async def fan_out_to_every_pod(api, pods, forwards, label):
    group = unique("s3")
    token = api.token([group], sub=label)
    subscribers = []
    try:
        for pod in pods:
            forward = forwards(f"pod/{pod}", 8001)
            for i in range(CLIENTS_PER_POD):
                subscribers.append(Subscriber(f"{pod}#{i}", f"ws://127.0.0.1:{forward.local_port}/ws", token, [group]))
        await asyncio.gather(*(s.start() for s in subscribers))

        # presence is mirrored to Redis on a heartbeat: wait for the count, bounded
        deadline = time.monotonic() + 20
        while (counted := api.group(group)["subscribers"]) != len(subscribers):
            assert time.monotonic() < deadline, f"GET /groups counts {counted}, {len(subscribers)} connected"
            await asyncio.sleep(0.5)

        first = await api.apublish(group, {"n": 1})
        assert first.status == 200, first
        # a second message as a fence: once it is in, any duplicate of the first would be too
        fence = await api.apublish(group, {"n": 2})
        assert fence.status == 200, fence
        want = [first.body["offset"], fence.body["offset"]]
        await asyncio.gather(*(s.wait_for(lambda s=s: fence.body["offset"] in s.offsets(group), 15, "the fence")
                               for s in subscribers))
        for subscriber in subscribers:
            assert subscriber.offsets(group) == want, f"{subscriber.name} holds {subscriber.offsets(group)}"
        return {"pods": len(pods), "subscribers": len(subscribers), "counted": counted, "published": 2,
                "received": sum(len(s.offsets(group)) for s in subscribers)}
    finally:
        await asyncio.gather(*(s.stop() for s in subscribers))


async def test_scale_with_kubectl(api, cluster, forwards, report):
    deployment = cluster.deployment_name("socket")
    assert len(cluster.wait_pods("socket", 1)) == 1
    cluster.kubectl("scale", f"deployment/{deployment}", "--replicas=3")
    pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3)
    numbers = await fan_out_to_every_pod(api, pods, forwards, "kubectl-scale")
    report.add("3 scale 1->3 (kubectl scale)", **numbers)


async def test_scale_with_hpa_values(api, cluster, forwards, report):
    deployment = cluster.deployment_name("socket")
    cluster.kubectl("scale", f"deployment/{deployment}", "--replicas=1")
    await asyncio.to_thread(cluster.wait_pods, "socket", 1)
    # the HPA's minReplicas brings the Deployment to 3 (no metrics server is needed for that)
    await asyncio.to_thread(
        cluster.upgrade,
        "--set", "socket.autoscaling.enabled=true",
        "--set", "socket.autoscaling.minReplicas=3",
        "--set", "socket.autoscaling.maxReplicas=3",
    )
    hpa = cluster.get_json("hpa", "-l", cluster.component_selector("socket"))["items"]
    assert len(hpa) == 1 and hpa[0]["spec"]["minReplicas"] == 3
    pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3)
    numbers = await fan_out_to_every_pod(api, pods, forwards, "hpa")
    report.add("3 scale 1->3 (helm values, HPA)", **numbers)


async def test_disconnect_a_user_across_three_socket_pods(api, cluster, forwards, report):
    pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3)
    group = unique("s3d")
    banned, bystanders = [], []
    for pod in pods:
        url = f"ws://127.0.0.1:{forwards(f'pod/{pod}', 8001).local_port}/ws"
        banned.append(Subscriber(f"banned@{pod}", url, api.token([group], sub="banned"), [group]))
        bystanders.append(Subscriber(f"other@{pod}", url, api.token([group], sub="other"), [group]))
    try:
        await asyncio.gather(*(s.start() for s in banned + bystanders))
        disconnected = await asyncio.to_thread(api.disconnect, "banned")
        assert disconnected == len(pods)
        for subscriber in banned:
            await subscriber.wait_for(lambda s=subscriber: 4009 in s.closes, 15, "the 4009 close")
        published = await api.apublish(group, {"after": "disconnect"})
        assert published.status == 200, published
        for subscriber in bystanders:
            await subscriber.wait_for(lambda s=subscriber: published.body["offset"] in s.offsets(group), 15, "the message")
        assert all(s.offsets(group) == [] for s in banned)
        report.add("3 disconnect a user on 3 socket pods", pods=len(pods), disconnected=disconnected,
                   closed_4009=sum(4009 in s.closes for s in banned),
                   bystanders_received=sum(len(s.offsets(group)) for s in bystanders))
    finally:
        await asyncio.gather(*(s.stop() for s in banned + bystanders))


async def test_connections_rebalance_after_a_scale_up(api, cluster, forwards, report):
    """300 clients through the socket Service on one pod; scale to 3: within 2 minutes each
    pod holds 100 ± 25, and every client gets every acknowledged message once, in order."""
    deployment = cluster.deployment_name("socket")
    await asyncio.to_thread(cluster.upgrade, "--set", "socket.autoscaling.enabled=false",
                            "--set", "socket.replicaCount=1")
    cluster.kubectl("scale", f"deployment/{deployment}", "--replicas=1")
    await asyncio.to_thread(cluster.wait_pods, "socket", 1)
    group = unique("s3r")
    token = api.token([group], sub="rebalance")
    clients = [Subscriber(f"c{i}", cluster.ws_url, token, [group]) for i in range(300)]
    stream = None
    try:
        for start in range(0, len(clients), 50):  # in waves, as users arrive
            await asyncio.gather(*(c.start(timeout=60) for c in clients[start:start + 50]))
        stream = PublishStream(api, group, interval=0.1).start()
        await stream.wait_acked(5, 30)
        started = time.monotonic()
        cluster.kubectl("scale", f"deployment/{deployment}", "--replicas=3")
        pods = await asyncio.to_thread(cluster.wait_pods, "socket", 3)
        ports = {pod: forwards(f"pod/{pod}", 8001).local_port for pod in pods}
        while True:
            counts = {pod: await asyncio.to_thread(pod_connections, port) for pod, port in ports.items()}
            if all(75 <= n <= 125 for n in counts.values()):
                break
            assert time.monotonic() - started < 120, f"not rebalanced within 2 minutes: {counts}"
            await asyncio.sleep(2)
        balanced_in = round(time.monotonic() - started)
        await stream.wait_acked(5, 30)
        await stream.stop()
        for client in clients:
            await client.wait_for(lambda c=client: set(stream.acked) <= set(c.offsets(group)), 60, "every acked message")
            assert_exactly_once_in_order(client, group, stream.acked)
        report.add("3 rebalance after scale-up 1->3 (through the Service)", clients=len(clients),
                   per_pod=sorted(counts.values()), seconds=balanced_in, acked=len(stream.acked),
                   reconnects=sum(c.connects - 1 for c in clients))
    finally:
        if stream is not None and not stream._stop.is_set():
            await stream.stop()
        await asyncio.gather(*(c.stop() for c in clients))


def pod_connections(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("groupcast_connections "):
                return float(line.split()[1])
    return 0.0
