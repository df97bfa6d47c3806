"""Scenario 8: the chart's Redis Cluster (redis.cluster.enabled), and a master's pod deleted
under publish streams.

The release is upgraded from the single Redis to an in-chart Redis Cluster of 3 masters with a
replica each, formed by the chart's create Job; every role runs on REDIS_URL=redis+cluster://
<every node>, and a publish is acknowledged once a replica has it (config.redisMinReplicas=1).
A second upgrade runs the Job again: it finds the cluster formed and changes nothing.

Three groups, one on each shard, with clients on every socket pod: a publish to each reaches
every client once. Then, under a publish stream per group through one http pod, the pod of the
first group's master is deleted while its node is cordoned (its volume is on that node, so
it cannot come straight back): the replica is promoted after the node timeout. Uncordoned, the
pod returns at a new IP with its nodes.conf, rejoins as the same node, now a replica, and
syncs. Meanwhile the other shards' groups go on being acknowledged, and the first group's
publishes answer 503 with Retry-After (not stored, or not yet on a replica) until its shard has
a replica again, never a false 200 (nor anything but 200 or 503 for any group).
Last, every Redis pod is deleted at once: they all come back at new IPs, find each other by
their names, and the cluster is whole again with the same nodes; publishes to every group
reach every client again. Every client then holds every acknowledged message of
every group exactly once, in order, and a new client replays them all from the start.

It runs last: the release stays on the cluster (the skaffold step after it has its own).
"""

import asyncio
import collections
import json
import time

from redis.crc import key_slot

from client import Api, Subscriber, assert_exactly_once_in_order
from conftest import unique
from stream import PublishStream

COMPONENT = "redis-cluster"
MASTERS = 3
NODE_TIMEOUT_MS = 3000
CLUSTER_VALUES = (
    "--set", "redis.cluster.enabled=true",
    "--set", f"redis.cluster.nodeTimeoutMs={NODE_TIMEOUT_MS}",
    "--set", "config.redisMinReplicas=1",
    "--set", "socket.replicaCount=2",
    # six Redis nodes beside the roles on the one schedulable kind node, and skaffold's
    # release after them: each needs little CPU here
    "--set", "redis.resources.requests.cpu=25m",
)


# --- the cluster as its nodes see it --------------------------------------------------------

def redis_cli(cluster, pod, *args, timeout=30):
    return cluster.exec(pod, "redis-cli", *args, timeout=timeout).replace("\r", "")


def parse_nodes(text):
    """CLUSTER NODES -> {node id: {ip, flags, master, link, slots: [(first, last)]}}."""
    nodes = {}
    for line in text.strip().splitlines():
        fields = line.split()
        node_id, address, flags, master, _, _, _, link = fields[:8]
        slots = []
        for item in fields[8:]:
            if not item.startswith("["):  # slots being migrated: none here
                first, _, last = item.partition("-")
                slots.append((int(first), int(last or first)))
        nodes[node_id] = {
            "ip": address.split(",")[0].split("@")[0].rsplit(":", 1)[0],
            "flags": set(flags.split(",")),
            "master": None if master == "-" else master,
            "link": link,
            "slots": slots,
        }
    return nodes


def topology(cluster, pod):
    """The cluster as the node in `pod` sees it, each node with the pod it runs in."""
    nodes = parse_nodes(redis_cli(cluster, pod, "cluster", "nodes"))
    pods = {ip: name for name, ip in cluster.pod_ips(COMPONENT).items()}
    for node in nodes.values():
        node["pod"] = pods.get(node["ip"])
    return nodes


def masters(nodes):
    return {node_id: node for node_id, node in nodes.items() if "master" in node["flags"] and node["slots"]}


def replicas_of(nodes, master_id):
    return [node_id for node_id, node in nodes.items() if node["master"] == master_id]


def problems(nodes):
    """Why the cluster is not whole and serving, as one node sees it (empty when it is)."""
    found = []
    for node_id, node in nodes.items():
        if node["flags"] & {"fail", "fail?", "handshake", "noaddr"}:
            found.append(f"{node_id[:8]} ({node['pod']}) {','.join(sorted(node['flags']))}")
        elif "myself" not in node["flags"] and node["link"] != "connected":
            found.append(f"{node_id[:8]} ({node['pod']}) {node['link']}")
        if node["pod"] is None:
            found.append(f"{node_id[:8]} at {node['ip']}: no pod has that IP")
    served = masters(nodes)
    if len(served) != MASTERS:
        found.append(f"{len(served)} masters serve slots")
    if sum(last - first + 1 for node in served.values() for first, last in node["slots"]) != 16384:
        found.append("not every slot is served")
    for master_id in served:
        if len(replicas_of(nodes, master_id)) != 1:
            found.append(f"master {master_id[:8]} has {len(replicas_of(nodes, master_id))} replicas")
    return found


async def wait_whole(cluster, timeout):
    """Until every node sees the same whole cluster: 3 masters, a replica each, all linked."""
    deadline = time.monotonic() + timeout
    while True:
        pods = await asyncio.to_thread(cluster.ready_pods, COMPONENT)
        views = {pod: await asyncio.to_thread(topology, cluster, pod) for pod in pods}
        found = {pod: problems(nodes) for pod, nodes in views.items() if problems(nodes)}
        if len(pods) == MASTERS * 2 and not found:
            (nodes, *_) = views.values()
            return nodes
        assert time.monotonic() < deadline, f"cluster not whole after {timeout} s: ready {pods}, {found}"
        await asyncio.sleep(1)


def owner(nodes, slot):
    (master_id,) = [i for i, n in masters(nodes).items() if any(a <= slot <= b for a, b in n["slots"])]
    return master_id


def a_group_on_each_master(nodes):
    """master id -> a new group name whose keys live in that master's slots (a group's keys
    share its hash tag, the group's name)."""
    prefix, wanted, n = unique("s8"), dict.fromkeys(masters(nodes)), 0
    while None in wanted.values():
        n += 1
        group = f"{prefix}.{n}"
        master_id = owner(nodes, key_slot(group.encode()))
        wanted[master_id] = wanted[master_id] or group
    return wanted


def wait_create_job(cluster, timeout=240):
    """The create Job of the release's current revision, once complete: (name, its log)."""
    (current,) = json.loads(cluster.helm("history", cluster.release, "--max", "1", "-o", "json"))
    jobs = cluster.get_json("jobs", "-l", cluster.component_selector("redis-cluster-create"))["items"]
    (name,) = [j["metadata"]["name"] for j in jobs if j["metadata"]["name"].endswith(f"-create-{current['revision']}")]
    cluster.kubectl("wait", "--for=condition=complete", f"job/{name}", f"--timeout={timeout}s", timeout=timeout + 10)
    return name, cluster.kubectl("logs", f"job/{name}")


def wait_held_back(cluster, pod, old_uid, timeout=60):
    """Until the StatefulSet has made `pod` again (a new uid); it must not be scheduled."""
    deadline = time.monotonic() + timeout
    while True:
        found = json.loads(cluster.kubectl("get", "pod", pod, "-o", "json", "--ignore-not-found") or "null")
        if found and found["metadata"]["uid"] != old_uid:
            assert not found["spec"].get("nodeName"), f"{pod} scheduled on {found['spec']['nodeName']} while cordoned"
            return found
        assert time.monotonic() < deadline, f"{pod} not made again within {timeout} s"
        time.sleep(0.5)


# --- the scenario ---------------------------------------------------------------------------

async def test_redis_cluster_master_pod_deleted_under_publish_streams(api, cluster, forwards, report):
    started = time.monotonic()
    await asyncio.to_thread(cluster.upgrade, *CLUSTER_VALUES, timeout=300)
    upgraded_in = time.monotonic() - started
    job, log = await asyncio.to_thread(wait_create_job, cluster)
    assert "creating the cluster" in log and "[OK] All 16384 slots covered." in log, log
    formed_in = time.monotonic() - started
    nodes = await wait_whole(cluster, 120)
    urls = {role: cluster.get_json("deployment", cluster.deployment_name(role))["spec"]["template"]["spec"]
            ["containers"][0]["env"] for role in ("http", "socket", "worker")}
    for role, env in urls.items():
        (url,) = [e["value"] for e in env if e["name"] == "REDIS_URL"]
        assert url.startswith("redis+cluster://") and url.count(":6379") == MASTERS * 2, (role, url)

    # the Job again, as on every upgrade: the cluster is formed, nothing is created
    await asyncio.to_thread(cluster.upgrade, *CLUSTER_VALUES, timeout=300)
    rerun, rerun_log = await asyncio.to_thread(wait_create_job, cluster)
    assert rerun != job and "nothing to create" in rerun_log, rerun_log
    assert not cluster.kubectl("get", "job", job, "--ignore-not-found", "-o", "name").strip()
    again = await wait_whole(cluster, 60)
    assert {i: n["slots"] for i, n in masters(again).items()} == {i: n["slots"] for i, n in masters(nodes).items()}
    assert set(again) == set(nodes)

    # a group on each shard, clients for all three on every socket pod
    groups = a_group_on_each_master(nodes)
    socket_pods = await asyncio.to_thread(cluster.wait_pods, "socket", 2)
    (http_pod,) = await asyncio.to_thread(cluster.wait_pods, "http", 1)
    token = api.token(list(groups.values()), sub="cluster")
    subscribers = []
    for pod in socket_pods:
        forward = forwards(f"pod/{pod}", 8001)
        subscribers.append(Subscriber(pod, f"ws://127.0.0.1:{forward.local_port}/ws", token, list(groups.values()),
                                      reconnect_url=cluster.ws_url))
    await asyncio.gather(*(s.start() for s in subscribers))
    streams = {}
    try:
        for master_id, group in groups.items():
            published = await api.apublish(group, {"hello": "shard"})
            assert published.status == 200, published
            offset = published.body["offset"]
            await asyncio.gather(*(s.wait_for(lambda s=s, g=group, o=offset: o in s.offsets(g), 15, f"{group}'s message")
                                   for s in subscribers))
            # its keys are where its hash tag says, on that shard's master
            slot = key_slot(group.encode())
            held = redis_cli(cluster, nodes[master_id]["pod"], "cluster", "countkeysinslot", str(slot))
            assert int(held) >= 1, f"{group}: no key in slot {slot} on {nodes[master_id]['pod']}"
        for subscriber in subscribers:
            assert all(len(subscriber.offsets(g)) == 1 for g in groups.values()), subscriber.messages

        # the first group's master: its pod deleted, and kept away while its replica takes over
        victim_id, victim_group = next(iter(groups.items()))
        victim = nodes[victim_id]["pod"]
        (replica_id,) = replicas_of(nodes, victim_id)
        replica = nodes[replica_id]["pod"]
        pod = cluster.get_json("pod", victim)
        old_uid, host, old_ip = pod["metadata"]["uid"], pod["spec"]["nodeName"], pod["status"]["podIP"]
        http = forwards(f"pod/{http_pod}", 8000)  # the API straight, whatever its readiness says
        publisher = Api(f"http://127.0.0.1:{http.local_port}", api.api_key)
        streams = {group: PublishStream(publisher, group, interval=0.1).start() for group in groups.values()}
        others = [s for g, s in streams.items() if g != victim_group]
        await asyncio.gather(*(s.wait_acked(10, 30) for s in streams.values()))

        await asyncio.to_thread(cluster.kubectl, "cordon", host)
        try:
            acked_at_delete = {g: len(s.acked) for g, s in streams.items()}
            deleted_at = time.monotonic()
            await asyncio.to_thread(cluster.kubectl, "delete", "pod", victim, "--wait=false")
            # the replica's own word that it is a master now (bounded by the exec's timeout)
            await asyncio.to_thread(
                cluster.exec, replica, "sh", "-c",
                "until [ \"$(redis-cli role | head -n 1)\" = master ]; do sleep 0.1; done", timeout=90)
            promoted_after = time.monotonic() - deleted_at
            acked_others_in_failover = sum(len(s.acked) - acked_at_delete[s.group] for s in others)
            await streams[victim_group].wait_status(503, 30)
            # its volume is on the cordoned node: the new pod waits, unscheduled
            await asyncio.to_thread(wait_held_back, cluster, victim, old_uid)
        finally:
            await asyncio.to_thread(cluster.kubectl, "uncordon", host)
        returned = await asyncio.to_thread(cluster.wait_replaced, victim, old_uid, 180)
        back_after = time.monotonic() - deleted_at
        acked_at_return = len(streams[victim_group].acked)
        await streams[victim_group].wait_acked(20, 60)
        await asyncio.gather(*(s.wait_acked(10, 30) for s in others))
    finally:
        for stream in streams.values():
            await stream.stop()

    try:
        # the same node, now a replica of the one promoted, at the pod's new IP
        after = await wait_whole(cluster, 90)
        assert after[victim_id]["master"] == replica_id and "slave" in after[victim_id]["flags"], after[victim_id]
        assert "master" in after[replica_id]["flags"]
        assert set(after) == set(nodes)
        new_ip = returned["status"]["podIP"]
        assert after[victim_id]["ip"] == new_ip

        # nothing but 200, or 503 with Retry-After; the other shards went on meanwhile
        for group, stream in streams.items():
            assert set(stream.outcomes) <= {200, 503}, (group, dict(stream.outcomes))
            assert not stream.bad_503, f"503 without Retry-After: {stream.bad_503[:3]}"
        assert acked_others_in_failover > 0, {s.group: dict(s.outcomes) for s in others}

        # every client, and a new one replaying from the start, holds every ack once, in order
        for group, stream in streams.items():
            last = stream.acked[-1]
            await asyncio.gather(*(s.wait_for(lambda s=s, g=group: last in s.offsets(g), 60, f"{group}'s last ack")
                                   for s in subscribers))
            for subscriber in subscribers:
                assert_exactly_once_in_order(subscriber, group, [o for o in stream.acked])
        replay = await Subscriber("replay", cluster.ws_url, token, list(groups.values()), since="0-0").start()
        try:
            for group, stream in streams.items():
                last = stream.acked[-1]
                await replay.wait_for(lambda g=group, o=last: o in replay.offsets(g), 30, f"{group} replayed")
                assert_exactly_once_in_order(replay, group, stream.acked)
            stored = {m["data"]["n"] for m in replay.messages if m["group"] == victim_group and "n" in m["data"]}
        finally:
            await replay.stop()

        # every Redis pod deleted at once: all come back at new IPs with their nodes.conf, find
        # each other by name (the readiness probe re-meets moved peers), and the roles follow
        ips = await asyncio.to_thread(cluster.pod_ips, COMPONENT)
        restarted_at = time.monotonic()
        await asyncio.to_thread(cluster.kubectl, "delete", "pod", "-l", cluster.component_selector(COMPONENT),
                                "--wait=true", timeout=120)
        whole = await wait_whole(cluster, 180)
        whole_after = time.monotonic() - restarted_at
        assert set(whole) == set(nodes)
        assert {i: n["slots"] for i, n in masters(whole).items()} == {i: n["slots"] for i, n in masters(after).items()}
        moved = sum(ip != ips.get(pod) for pod, ip in (await asyncio.to_thread(cluster.pod_ips, COMPONENT)).items())
        finals = {}
        for group in groups.values():
            deadline = time.monotonic() + 120
            while (answer := await publisher.apublish(group, {"after": "restart"}, timeout=10)).status != 200:
                assert answer.status == 503 and "Retry-After" in answer.headers, answer
                assert time.monotonic() < deadline, f"{group}: no publish acknowledged 120 s after the restart: {answer.body}"
                await asyncio.sleep(float(answer.headers["Retry-After"]))
            finals[group] = answer.body["offset"]
        roles_back_after = time.monotonic() - restarted_at
        for group, offset in finals.items():
            await asyncio.gather(*(s.wait_for(lambda s=s, g=group, o=offset: o in s.offsets(g), 60, f"{group} after the restart")
                                   for s in subscribers))
            for subscriber in subscribers:
                assert_exactly_once_in_order(subscriber, group, streams[group].acked + [offset])

        victim_stream = streams[victim_group]
        refused = [t for t, status in victim_stream.history if status != 200 and t >= deleted_at]
        # when the victim's group was acknowledged again: the first 200 after its refusals began
        # (publishes answered just after the delete reached the master before it went)
        again = [t for t, status in victim_stream.history if status == 200 and refused and t > refused[0]]
        report.add(
            "8 redis cluster: master pod deleted",
            upgrade_to_cluster_s=round(upgraded_in, 1),
            cluster_formed_s=round(formed_in, 1),
            create_job_rerun="nothing to create",
            groups_on_shards=len(groups),
            clients=len(subscribers),
            victim=f"{victim} ({old_ip} -> {new_ip}), replica {replica} promoted",
            failover_s=round(promoted_after, 1),
            pod_back_and_synced_s=round(back_after, 1),
            victim_group_refused_s=round(refused[-1] - refused[0], 1) if refused else 0,
            victim_group_first_503_after_delete_s=round(refused[0] - deleted_at, 1) if refused else None,
            victim_group_200_again_after_delete_s=round(again[0] - deleted_at, 1) if again else None,
            victim_group_outcomes=dict(victim_stream.outcomes),
            victim_group_refusals=dict(victim_stream.refusals),
            victim_group_acked=len(victim_stream.acked),
            victim_group_acked_after_return=len(victim_stream.acked) - acked_at_return,
            refused_503_but_stored=len([n for n in victim_stream.refused if n in stored]),
            other_groups_acked=sum(len(s.acked) for s in others),
            other_groups_acked_during_failover=acked_others_in_failover,
            other_groups_refused=dict(sum((s.refusals for s in others), collections.Counter())),
            all_pods_deleted_whole_again_s=round(whole_after, 1),
            all_pods_deleted_moved=f"{moved} of {len(ips)} at a new IP",
            all_pods_deleted_publish_again_s=round(roles_back_after, 1),
            received_per_client=sorted({len(s.messages) for s in subscribers}),
            close_codes=sorted({str(c) for s in subscribers for c in s.closes}),
        )
    finally:
        await asyncio.gather(*(s.stop() for s in subscribers))
