"""The scale figures of `python -m bench --cluster` (bench/scaling.py): the per-topology
figures, the 3-shard / 1-shard ratios and the 1-shard cluster's cost bound, computed from
phases shaped like the harness's; and the Redis topologies it starts (bench/topologies.py),
a 1-shard cluster among them, on real redis-servers."""

import pytest
import redis

from bench import scaling
from bench.scenarios import CLUSTER_ROW, CLUSTER_ROW_RATE
from bench.topologies import ClusterRedis, SingleRedis, title, topology

WALL = 2.0


def phase(name, *, published, socket_cpu, redis_by_node, group_size=10):
    """A measured phase as bench/run.py records it: every role's CPU, the redis-servers'
    own figures, `published` messages each delivered to `group_size` clients."""
    delivered = published * group_size
    cpu = {"http": 0.0, "front": 0.0, "socket0": socket_cpu, "worker0": 0.01, **redis_by_node}
    server = sum(cpu.values())
    return {
        "name": name, "published": published, "delivered": delivered,
        "publish_rate": published / WALL, "deliveries_per_s": delivered / WALL,
        "deliveries_per_server_cpu_s": delivered / server, "server_cpu_s": server,
        "server_cpu_by_role_s": cpu, "redis_cpu_by_node_s": dict(redis_by_node),
        "measured_wall_s": WALL, "server_cores": server / WALL, "loadgen_cpu_s": 0.1,
        "other_cpu_s": 0.0, "latency_ms": {"p99": 40.0}, "window": 50, "lost": 0,
    }


def run(redis_key, round_number, *, published, socket_cpu, redis_by_node):
    return {
        "system": "groupcast", "scenario": CLUSTER_ROW[0], "redis": redis_key,
        "round": round_number,
        "idle": {"wall_s": 3.0, "redis_cpu_by_node_s": dict.fromkeys(redis_by_node, 0.0)},
        "phases": [phase(name, published=published, socket_cpu=socket_cpu,
                         redis_by_node=redis_by_node)
                   for name in (CLUSTER_ROW[1], CLUSTER_ROW_RATE[1])],
    }


def results(cluster_socket_cpu=1.1):
    """Two rounds of three topologies: the same publishes, the cluster's socket processes
    spending `cluster_socket_cpu` where one Redis's spend 1.0."""
    out = []
    for round_number in (1, 2):
        out += [
            run("single", round_number, published=1000, socket_cpu=1.0,
                redis_by_node={"redis": 0.06}),
            run("cluster-1", round_number, published=1000, socket_cpu=cluster_socket_cpu,
                redis_by_node={"redis0": 0.06}),
            run("cluster-3", round_number, published=800 + 100 * round_number,
                socket_cpu=cluster_socket_cpu,
                redis_by_node={"redis0": 0.02, "redis1": 0.025, "redis2": 0.015}),
        ]
    return out


def test_figures_per_topology_and_shard():
    summary = scaling.cluster_summary(results())[CLUSTER_ROW_RATE[1]]
    single, three = summary["topologies"]["single"], summary["topologies"]["cluster-3"]
    assert single["publishes_per_s"]["median"] == 500
    assert single["redis_cpu_us_per_publish"]["median"] == pytest.approx(60)
    # each shard's CPU over all the phase's publishes (median of the rounds' 900 and
    # 1,000); the busiest bounds the topology
    assert three["redis_cpu_us_per_publish_by_node"]["redis1"]["median"] == pytest.approx(
        (1e6 * 0.025 / 900 + 1e6 * 0.025 / 1000) / 2)
    assert three["redis_bound_publishes_per_s"]["median"] == pytest.approx(950 / 0.025)
    assert single["redis_bound_publishes_per_s"]["median"] == pytest.approx(1000 / 0.06)
    assert set(single["cpu_us_per_delivery_by_kind"]) == {"socket", "http", "worker", "redis"}


def test_three_over_one_shard_is_the_medians_ratio_with_per_round_range():
    ratios = scaling.cluster_summary(results())[CLUSTER_ROW_RATE[1]]["three_over_one_shard"]
    publishes = ratios["publishes_per_s"]
    assert publishes["ratio"] == pytest.approx(950 / 1000)
    assert publishes["per_round"] == pytest.approx([0.9, 1.0])
    assert (publishes["per_round_min"], publishes["per_round_max"]) == pytest.approx((0.9, 1.0))
    # the busiest of 3 shards spends 0.025 s where the one shard spends 0.06 s
    assert ratios["redis_bound_publishes_per_s"]["ratio"] == pytest.approx(
        (950 / 0.025) / (1000 / 0.06))


@pytest.mark.parametrize(("cluster_socket_cpu", "met"), [(1.1, True), (1.3, False)])
def test_cost_bound_is_judged_at_the_equal_load_and_at_saturation(cluster_socket_cpu, met):
    equal, saturation = scaling.cost_targets(results(cluster_socket_cpu))
    cost = (cluster_socket_cpu + 0.01 + 0.06) / (1.0 + 0.01 + 0.06)
    for target in (equal, saturation):
        assert target["value"] == pytest.approx(cost)
        assert target["met"] is met
        assert target["n"] == 2
    assert CLUSTER_ROW_RATE[1] in equal["target"]
    assert CLUSTER_ROW[1] in saturation["target"]


def test_lines_and_tables_name_every_topology():
    lines = "\n".join(scaling.cluster_lines(results()))
    table = "\n".join(scaling.cluster_markdown(results()))
    for name in ("single Redis", "1-shard cluster", "3-shard cluster"):
        assert name in lines and name in table
    assert "3 shards / 1 shard" in lines


def test_topologies_by_key(tmp_path):
    assert isinstance(topology("single", tmp_path, None), SingleRedis)
    three = topology("cluster-3", tmp_path, None)
    assert isinstance(three, ClusterRedis)
    assert (three.cluster.masters, three.cluster.replicas) == (3, 0)
    assert [title(key) for key in (None, "single", "cluster-1", "cluster-3")] == [
        "the run's Redis", "single Redis", "1-shard cluster", "3-shard cluster"]
    with pytest.raises(ValueError):
        topology("sentinel", tmp_path, None)


@pytest.mark.timeout(60)
def test_one_shard_cluster_serves_every_slot(tmp_path):
    """`redis-cli --cluster create` refuses fewer than 3 masters; the topology assembles
    one with the cluster commands, and a cluster client finds every slot on it."""
    one = ClusterRedis(tmp_path, masters=1)
    one.start()
    try:
        (port,) = one.cluster.ports
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=port)
        try:
            for group in ("{a}", "{b}", "{news}"):
                client.set(f"gc:stream:{group}", group)
                assert client.get(f"gc:stream:{group}") == group.encode()
        finally:
            client.close()
        assert one.cluster.command(port, "CLUSTER", "INFO").count("cluster_slots_ok:16384") == 1
        assert set(one.processes()) == {"redis0"}
        assert one.cpu_seconds()["redis0"] > 0
    finally:
        one.stop()
