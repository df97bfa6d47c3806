"""redis.cluster.enabled: the in-chart Redis Cluster (StatefulSet, headless Service, create
Job, PodDisruptionBudget, NetworkPolicy) and the REDIS_URL the roles get; externalRedis.url
with a cluster URL. The scripts themselves run in test_redis_cluster_scripts.py."""

import json
import subprocess

import pytest

from .manifests import CHART, env_of, find, one, pod_specs, validate_manifest

CLUSTER = {"redis": {"cluster": {"enabled": True}}}
# each node's stable DNS name, fully qualified: a name a client is given (CLUSTER SLOTS,
# MOVED) must resolve from any namespace
NODE = "groupcast-redis-cluster-{}.groupcast-redis-cluster-headless.groupcast.svc:6379"
SEEDS = [NODE.format(i) for i in range(6)]
ROLES = ("http", "socket", "worker")


def arg(args, flag):
    return args[args.index(flag) + 1]


def redis_urls(docs):
    """REDIS_URL of every groupcast container (the roles and the `helm test` pod)."""
    urls = {}
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            if "REDIS_URL" in env_of(container):
                urls[f"{name}/{container['name']}"] = env_of(container)["REDIS_URL"]["value"]
    return urls


def test_the_cluster_replaces_the_single_redis(render):
    docs = render(CLUSTER)
    for doc in docs:
        validate_manifest(doc)
    assert not find(docs, "StatefulSet", "groupcast-redis")
    assert not find(docs, "Service", "groupcast-redis") and not find(docs, "Service", "groupcast-redis-headless")

    statefulset = one(docs, "StatefulSet", "groupcast-redis-cluster")
    spec = statefulset["spec"]
    assert spec["replicas"] == 6
    assert spec["podManagementPolicy"] == "Parallel"  # Ready needs a cluster, which needs every node
    assert spec["serviceName"] == "groupcast-redis-cluster-headless"
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "redis-cluster"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"

    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "redis:7.4-alpine"  # the same pinned image as the single Redis
    args = container["args"]
    assert arg(args, "--cluster-enabled") == "yes"
    assert arg(args, "--cluster-config-file") == "/data/nodes.conf"  # on the volume
    assert arg(args, "--dir") == "/data"
    assert (arg(args, "--appendonly"), arg(args, "--appendfsync")) == ("yes", "always")
    assert arg(args, "--cluster-node-timeout") == "5000"
    assert arg(args, "--cluster-require-full-coverage") == "no"  # a shard down stops only its groups
    # the pod IP from the downward API, expanded by the kubelet
    assert arg(args, "--cluster-announce-ip") == "$(POD_IP)"
    assert env_of(container)["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env_of(container)["REDIS_CLUSTER_NODES"]["value"] == " ".join(SEEDS)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"redis": 6379, "cluster-bus": 16379}
    # to clients each node is its stable name, not the pod IP that changes with every pod
    assert arg(args, "--cluster-announce-hostname") == "$(POD_NAME).groupcast-redis-cluster-headless.groupcast.svc"
    assert arg(args, "--cluster-preferred-endpoint-type") == "hostname"
    assert env_of(container)["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # ready.sh, its comments left out (test_redis_cluster_scripts.py runs it)
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"] and "cluster meet" in probe[2] and "\n#" not in probe[2]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}

    headless = one(docs, "Service", "groupcast-redis-cluster-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True  # names resolve before Ready
    assert headless["spec"]["selector"] == spec["selector"]["matchLabels"]

    budget = one(docs, "PodDisruptionBudget", "groupcast-redis-cluster")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == spec["selector"]


def test_every_role_gets_every_node_as_a_seed(render):
    from service.storage.urls import is_cluster, parse_cluster_url

    urls = redis_urls(render(CLUSTER))
    assert set(urls) == {"groupcast-http/http", "groupcast-socket/socket", "groupcast-worker/worker",
                         "groupcast-test/roundtrip"}
    (url,) = set(urls.values())
    assert url == "redis+cluster://" + ",".join(SEEDS)
    # as the service reads it
    assert is_cluster(url)
    address = parse_cluster_url(url)
    assert address.seeds == [(seed.split(":")[0], 6379) for seed in SEEDS]
    assert not address.tls and address.password is None


def test_the_create_job_knows_every_node_and_is_named_after_the_revision(render):
    docs = render(CLUSTER)
    (job,) = find(docs, "Job")
    # a new Job on every install and upgrade (a Job's pod template cannot change in place)
    assert job["metadata"]["name"] == "groupcast-redis-cluster-create-1"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})  # see the template: --wait
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] > 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "redis:7.4-alpine"
    assert container["command"][:2] == ["sh", "-c"] and "redis-cli --cluster create" in container["command"][2]
    env = {name: e["value"] for name, e in env_of(container).items()}
    assert env == {"REDIS_CLUSTER_NODES": " ".join(SEEDS), "REDIS_CLUSTER_REPLICAS": "1"}
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "redis-cluster-create"


def test_cluster_shape_and_timeout_come_from_the_values(render):
    docs = render({"redis": {"cluster": {"enabled": True, "masters": 5, "replicasPerMaster": 2, "nodeTimeoutMs": 3000,
                                         "podDisruptionBudget": {"enabled": False}}}})
    statefulset = one(docs, "StatefulSet", "groupcast-redis-cluster")
    assert statefulset["spec"]["replicas"] == 15
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert arg(args, "--cluster-node-timeout") == "3000"
    (url,) = set(redis_urls(docs).values())
    assert url == "redis+cluster://" + ",".join(NODE.format(i) for i in range(15))
    (job,) = find(docs, "Job")
    assert env_of(job["spec"]["template"]["spec"]["containers"][0])["REDIS_CLUSTER_REPLICAS"]["value"] == "2"
    assert not find(docs, "PodDisruptionBudget", "groupcast-redis-cluster")


def test_long_release_names_stay_within_kubernetes_limits(render, helm):
    release = "a-release-name-long-enough-to-need-names-truncated-xy"  # 53, helm's most
    done = subprocess.run([helm, "template", release, str(CHART), "--set", "redis.cluster.enabled=true"],
                          capture_output=True, text=True, check=True)
    import yaml

    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    (statefulset,) = find(docs, "StatefulSet")
    # the controller labels pods <name>-<10-character hash>: 63 characters at most
    assert len(statefulset["metadata"]["name"]) <= 52
    assert statefulset["metadata"]["name"].endswith("-redis-cluster")
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        validate_manifest(doc)


def test_network_policy_covers_the_cluster_bus_between_nodes_only(render):
    docs = render({**CLUSTER, "networkPolicy": {"enabled": True}})
    assert not find(docs, "NetworkPolicy", "groupcast-redis")
    policy = one(docs, "NetworkPolicy", "groupcast-redis-cluster")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis-cluster"
    clients, nodes = policy["spec"]["ingress"]
    components = next(e for e in clients["from"][0]["podSelector"]["matchExpressions"]
                      if e["key"] == "app.kubernetes.io/component")
    assert components["values"] == ["http", "socket", "worker", "test", "redis-cluster-create"]
    assert clients["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert nodes["from"] == [{"podSelector": {"matchLabels": policy["spec"]["podSelector"]["matchLabels"]}}]
    assert nodes["ports"] == [{"port": 6379, "protocol": "TCP"}, {"port": 16379, "protocol": "TCP"}]


@pytest.mark.parametrize("url", [
    "redis+cluster://redis-0.example.com:6379",
    "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000/",
    "rediss+cluster://default:s3cret@clustercfg.example.cache.amazonaws.com:6379/0",
    "rediss+cluster://:s3cret@[fd00::1]:6380,[fd00::2]:6380",
])
def test_an_external_cluster_url_reaches_every_role(render, url):
    from service.storage.urls import parse_cluster_url

    docs = render({"redis": {"enabled": False}, "externalRedis": {"url": url}})
    assert not find(docs, "StatefulSet") and not find(docs, "Job")
    assert set(redis_urls(docs).values()) == {url}
    assert parse_cluster_url(url).seeds  # and the service takes it


def test_the_cluster_is_off_by_default(render):
    docs = render()
    assert not find(docs, "StatefulSet", "groupcast-redis-cluster") and not find(docs, "Job")
    assert set(redis_urls(docs).values()) == {"redis://groupcast-redis:6379/0"}


def test_helm_lint_strict_with_the_cluster(helm, tmp_path):
    path = tmp_path / "values.json"
    path.write_text(json.dumps({**CLUSTER, "networkPolicy": {"enabled": True}}))
    done = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
