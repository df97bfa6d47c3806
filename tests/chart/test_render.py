"""Render the chart over a matrix of values and validate every manifest strictly."""

import base64
import json
import re

import pytest

from .manifests import CRD_APIS, ROOT, TEST_SECRETS, env_of, find, one, pod_specs, validate_manifest

CUSTOM_METRICS = ("--api-versions", "custom.metrics.k8s.io/v1beta1")

MATRIX = {
    "defaults": ({}, ()),
    "autoscaling": (
        {
            "http": {"autoscaling": {"enabled": True}},
            "socket": {"autoscaling": {"enabled": True, "targetConnectionsPerPod": 5000}},
            "worker": {"autoscaling": {"enabled": True}},
        },
        CUSTOM_METRICS,
    ),
    "external-redis": ({"redis": {"enabled": False}, "externalRedis": {"url": "rediss://redis.example.com:6380/1"}}, ()),
    "external-redis-secret": ({"redis": {"enabled": False}, "externalRedis": {"existingSecret": "redis-url"}}, ()),
    "sentinel": (
        {
            "redis": {"enabled": False},
            "externalRedis": {"sentinel": {"hosts": ["s-0.sentinel:26379", "s-1.sentinel:26379"], "masterName": "mymaster", "db": 2}},
        },
        (),
    ),
    "redis-cluster": (
        {"redis": {"cluster": {"enabled": True}}, "networkPolicy": {"enabled": True}, "config": {"redisMinReplicas": 1}},
        (),
    ),
    "external-redis-cluster": (
        {"redis": {"enabled": False},
         "externalRedis": {"url": "rediss+cluster://redis-0.example.com:6380,redis-1.example.com:6380"}},
        (),
    ),
    "ingress": (
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "groupcast.example.com",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
                "tls": [{"hosts": ["groupcast.example.com"], "secretName": "groupcast-tls"}],
            },
            "config": {"allowedOrigins": ["https://groupcast.example.com"], "wsUrl": "wss://groupcast.example.com/ws"},
        },
        (),
    ),
    "monitoring": (
        {
            "monitoring": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            }
        },
        CRD_APIS,
    ),
    "gateway": (
        {
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
                "hostnames": ["groupcast.example.com"],
                "labels": {"gateway": "public"},
                "annotations": {"example.com/owner": "realtime"},
            },
            "config": {"allowedOrigins": ["https://groupcast.example.com"]},
        },
        CRD_APIS,
    ),
    "keda": (
        {
            "worker": {"keda": {"enabled": True, "serverAddress": "http://prometheus-operated.monitoring:9090",
                                "jobsPerWorker": 25, "maxReplicas": 8}},
            "monitoring": {"serviceMonitor": {"enabled": True}},
        },
        CRD_APIS,
    ),
    "kubernetes-1.29": ({}, ("--kube-version", "1.29.0")),
    "existing-secrets": ({"secrets": {"existingSecret": "groupcast-secrets"}}, ()),
    "network-policy": ({"networkPolicy": {"enabled": True}}, ()),
    "fixed-secrets-and-overrides": (
        {
            "secrets": TEST_SECRETS,
            "imagePullSecrets": [{"name": "regcred"}],
            "socket": {
                "image": {"repository": "registry.example.com/groupcast-socket", "tag": "canary"},
                "nodeSelector": {"pool": "sockets"},
                "tolerations": [{"key": "sockets", "operator": "Exists", "effect": "NoSchedule"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}],
                "extraEnv": [{"name": "GROUPCAST_LOG_LEVEL", "value": "DEBUG"}],
                "podAnnotations": {"example.com/team": "realtime"},
                "drainSeconds": 30,
                "terminationGracePeriodSeconds": 45,
            },
            "redis": {"persistence": {"enabled": False}},
        },
        (),
    ),
}


@pytest.fixture(params=sorted(MATRIX), scope="module")
def case(request, render):
    values, extra = MATRIX[request.param]
    return request.param, render(values, *extra)


def test_every_manifest_is_valid_for_kubernetes_1_32(case):
    _, docs = case
    assert docs
    for doc in docs:
        validate_manifest(doc)


def test_every_pod_is_locked_down(case):
    _, docs = case
    for name, spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "resources" in container and container["resources"]["requests"], name


def test_every_role_serves_metrics_and_probes_on_the_metrics_port(case):
    _, docs = case
    ports = {"http": 8000, "socket": 8001, "worker": 9102}
    for role, port in ports.items():
        deployment = one(docs, "Deployment", f"groupcast-{role}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == role
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert containers[0]["args"] == [role]
        # http: the front owns the pod's port and answers for gunicorn behind it.
        (container,) = [c for c in containers if "ports" in c]
        assert container["args"] == (["http-front"] if role == "http" else [role])
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        if role != "http":
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        service = one(docs, "Service", f"groupcast-{role}")
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_http_pods_reach_gunicorn_only_through_the_front(render):
    docs = render({"http": {"front": {"maxConnections": 2048, "headerTimeoutSeconds": 3, "maxHeaderBytes": 16384}},
                   "config": {"maxBodyBytes": 131072}})
    spec = one(docs, "Deployment", "groupcast-http")["spec"]["template"]["spec"]
    gunicorn, front = spec["containers"]
    assert (gunicorn["name"], front["name"]) == ("http", "front")
    assert front["image"] == gunicorn["image"] == "groupcast:0.1.0"
    assert "ports" not in gunicorn
    assert env_of(gunicorn)["GUNICORN_BIND"]["value"] == env_of(front)["GROUPCAST_FRONT_UPSTREAM"]["value"] == "127.0.0.1:8080"
    assert env_of(front)["GROUPCAST_FRONT_BIND"]["value"] == "0.0.0.0:8000"
    front_env = {name: e["value"] for name, e in env_of(front).items()}
    assert front_env["GROUPCAST_HTTP_MAX_CONNECTIONS"] == "2048"
    assert front_env["GROUPCAST_HTTP_HEADER_TIMEOUT"] == "3"
    assert front_env["GROUPCAST_HTTP_BODY_TIMEOUT"] == "5"
    assert front_env["GROUPCAST_HTTP_KEEPALIVE_TIMEOUT"] == "15"
    assert front_env["GROUPCAST_MAX_HEADER_BYTES"] == "16384"
    # GROUPCAST_MAX_BODY_BYTES comes from the ConfigMap, the same value Django reads; no Secret.
    assert front["envFrom"] == [{"configMapRef": {"name": "groupcast"}}]
    assert one(docs, "ConfigMap", "groupcast")["data"]["GROUPCAST_MAX_BODY_BYTES"] == "131072"
    assert "REDIS_URL" not in front_env
    # gunicorn's own probes go to it on loopback: a busy or restarting front restarts nothing else.
    for probe in ("livenessProbe", "startupProbe"):
        assert "http://127.0.0.1:8080/healthz" in " ".join(gunicorn[probe]["exec"]["command"])
    assert front["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert {m["mountPath"] for m in front["volumeMounts"]} == {"/tmp"}
    assert front["lifecycle"] == gunicorn["lifecycle"]


def test_every_resource_has_component_labels(case):
    _, docs = case
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "groupcast"
        assert labels["app.kubernetes.io/component"]


def test_a_long_image_tag_still_makes_valid_labels(render):
    """skaffold deploys a local build as <name>:<64-hex image id>; a label value holds 63 characters."""
    tag = "85f14e9624f8eb825da98aa6f49e5ddef695a44bc4b577e682d633072f91f1e1"
    docs = render({"image": {"tag": tag}})
    assert {doc["metadata"]["labels"]["app.kubernetes.io/version"] for doc in docs} == {tag[:63]}
    assert {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"] if "redis" not in c["image"]} == {f"groupcast:{tag}"}


def test_socket_pods_outlast_their_drain(case):
    _, docs = case
    spec = one(docs, "Deployment", "groupcast-socket")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    drain = float(env_of(container)["GROUPCAST_DRAIN_SECONDS"]["value"])
    sleep = prestop_seconds(container)
    assert sleep > 0
    assert spec["terminationGracePeriodSeconds"] > sleep + drain + 5


def prestop_seconds(container):
    """The preStop wait: the sleep action (Kubernetes 1.30+) or `sleep N` before it."""
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return pre_stop["sleep"]["seconds"]
    assert pre_stop["exec"]["command"][0] == "sleep"
    return int(pre_stop["exec"]["command"][1])


def test_prestop_uses_the_sleep_action_where_the_cluster_has_it(render):
    for version, native in (("1.29.0", False), ("1.30.0", True), ("1.34.0", True)):
        docs = render({"worker": {"preStopSleepSeconds": 3}}, "--kube-version", version)
        for role, seconds in (("http", 5), ("socket", 5), ("worker", 3)):
            for container in one(docs, "Deployment", f"groupcast-{role}")["spec"]["template"]["spec"]["containers"]:
                pre_stop = container["lifecycle"]["preStop"]
                if native:
                    assert pre_stop == {"sleep": {"seconds": seconds}}, (version, role)
                else:
                    assert pre_stop == {"exec": {"command": ["sleep", str(seconds)]}}, (version, role)
    # 0 means no wait at all (the workers' default)
    worker = one(render(), "Deployment", "groupcast-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in worker


def test_defaults(render):
    docs = render()
    assert {d["kind"] for d in docs} == {
        "ServiceAccount", "Secret", "ConfigMap", "Service", "Deployment", "StatefulSet",
        "PodDisruptionBudget", "Pod",
    }
    assert not find(docs, "HorizontalPodAutoscaler")
    redis = one(docs, "StatefulSet", "groupcast-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    for role in ("http", "socket", "worker"):
        container = one(docs, "Deployment", f"groupcast-{role}")["spec"]["template"]["spec"]["containers"][0]
        assert env_of(container)["REDIS_URL"]["value"] == "redis://groupcast-redis:6379/0"
        assert container["image"] == "groupcast:0.1.0"
    secret = one(docs, "Secret", "groupcast")
    assert set(secret["data"]) == {"GROUPCAST_API_KEYS", "GROUPCAST_JWT_SECRET", "DJANGO_SECRET_KEY", "GROUPCAST_WEBHOOK_SECRET"}


def test_the_generated_webhook_secret_is_one_the_service_takes(render):
    from service.environment import Environment

    secret = one(render(), "Secret", "groupcast")
    value = base64.b64decode(secret["data"]["GROUPCAST_WEBHOOK_SECRET"]).decode()
    environment = Environment({"GROUPCAST_WEBHOOK_SECRET": value})
    [key] = environment.keys("GROUPCAST_WEBHOOK_SECRET", prefix="whsec_", min_bytes=24, max_bytes=64)
    assert value.startswith("whsec_") and len(key) == 32 and not environment.problems


def test_webhook_and_subscribe_proxy_settings_reach_the_configmap(render):
    docs = render({"config": {
        "webhookUrl": "https://app.example.com/hooks/groupcast",
        "subscribeProxyUrl": "http://app.app.svc:8000/groupcast/subscribe",
        "subscribeProxyTimeout": 0.5,
        "subscribeProxyConcurrency": 100,
    }})
    data = one(docs, "ConfigMap", "groupcast")["data"]
    assert data["GROUPCAST_WEBHOOK_URL"] == "https://app.example.com/hooks/groupcast"
    assert data["GROUPCAST_SUBSCRIBE_PROXY_URL"] == "http://app.app.svc:8000/groupcast/subscribe"
    assert (data["GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT"], data["GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY"]) == ("0.5", "100")


def test_helm_test_pod_runs_the_roundtrip(render):
    pod = one(render(), "Pod", "groupcast-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "groupcast:0.1.0"
    assert container["args"] == [
        "groupcast_check", "--roundtrip",
        "--http-url", "http://groupcast-http:8000",
        "--ws-url", "ws://groupcast-socket:8001/ws",
    ]
    assert {"secretRef": {"name": "groupcast"}} in container["envFrom"]
    assert "REDIS_URL" in env_of(container)


def test_socket_autoscaling_targets_the_socket_deployment(render):
    docs = render({"socket": {"autoscaling": {"enabled": True}}})
    hpa = one(docs, "HorizontalPodAutoscaler", "groupcast-socket")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "groupcast-socket"}
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert "replicas" not in one(docs, "Deployment", "groupcast-socket")["spec"]
    assert one(docs, "Deployment", "groupcast-http")["spec"]["replicas"] == 2
    assert len(find(docs, "HorizontalPodAutoscaler")) == 1


def test_autoscaling_on_connections(render):
    values, extra = MATRIX["autoscaling"]
    docs = render(values, *extra)
    assert len(find(docs, "HorizontalPodAutoscaler")) == 3
    metrics = one(docs, "HorizontalPodAutoscaler", "groupcast-socket")["spec"]["metrics"]
    assert metrics[1] == {
        "type": "Pods",
        "pods": {"metric": {"name": "groupcast_connections"}, "target": {"type": "AverageValue", "averageValue": "5000"}},
    }


def redis_urls(docs):
    return {
        role: env_of(one(docs, "Deployment", f"groupcast-{role}")["spec"]["template"]["spec"]["containers"][0])["REDIS_URL"]
        for role in ("http", "socket", "worker")
    }


def test_external_redis(render):
    values, extra = MATRIX["external-redis"]
    docs = render(values, *extra)
    assert not find(docs, "StatefulSet") and not find(docs, "Service", "groupcast-redis")
    assert {u["value"] for u in redis_urls(docs).values()} == {"rediss://redis.example.com:6380/1"}


def test_external_redis_from_a_secret(render):
    values, extra = MATRIX["external-redis-secret"]
    for url in redis_urls(render(values, *extra)).values():
        assert url["valueFrom"] == {"secretKeyRef": {"name": "redis-url", "key": "REDIS_URL"}}


def test_sentinel(render):
    values, extra = MATRIX["sentinel"]
    urls = {u["value"] for u in redis_urls(render(values, *extra)).values()}
    assert urls == {"redis+sentinel://s-0.sentinel:26379,s-1.sentinel:26379/mymaster/2"}


def test_ingress_routes_ws_and_sse_to_socket_and_the_rest_to_http(render):
    values, extra = MATRIX["ingress"]
    ingress = one(render(values, *extra), "Ingress", "groupcast")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "groupcast.example.com"
    routes = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert routes == {
        "/ws": {"name": "groupcast-socket", "port": {"number": 8001}},
        "/sse": {"name": "groupcast-socket", "port": {"number": 8001}},
        "/": {"name": "groupcast-http", "port": {"number": 8000}},
    }


def test_monitoring(render):
    values, extra = MATRIX["monitoring"]
    docs = render(values, *extra)
    monitor = one(docs, "ServiceMonitor", "groupcast")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "ws", "metrics"}
    assert one(docs, "PodMonitor", "groupcast")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    rule = one(docs, "PrometheusRule", "groupcast")
    assert rule["spec"]["groups"][0]["rules"]
    dashboard = one(docs, "ConfigMap", "groupcast-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["groupcast.json"])["panels"]


def test_httproute_routes_ws_and_sse_to_socket_and_the_rest_to_http(render):
    values, extra = MATRIX["gateway"]
    docs = render(values, *extra)
    route = one(docs, "HTTPRoute", "groupcast")
    assert route["metadata"]["labels"]["gateway"] == "public"
    assert route["metadata"]["annotations"] == {"example.com/owner": "realtime"}
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert spec["hostnames"] == ["groupcast.example.com"]
    routes = {
        match["path"]["value"]: (match["path"]["type"], rule["backendRefs"])
        for rule in spec["rules"] for match in rule["matches"]
    }
    socket = [{"name": "groupcast-socket", "port": 8001}]
    assert routes == {"/ws": ("PathPrefix", socket), "/sse": ("PathPrefix", socket),
                      "/": ("PathPrefix", [{"name": "groupcast-http", "port": 8000}])}
    assert not find(docs, "Ingress")  # beside the Ingress, not instead: only what is enabled
    both = render({**values, "ingress": {"enabled": True}}, *extra)
    assert find(both, "Ingress") and find(both, "HTTPRoute")


def test_keda_scales_the_workers_on_the_job_queue(render):
    values, extra = MATRIX["keda"]
    docs = render(values, *extra)
    scaled = one(docs, "ScaledObject", "groupcast-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "groupcast-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    metadata = trigger["metadata"]
    assert metadata["serverAddress"] == "http://prometheus-operated.monitoring:9090"
    assert metadata["threshold"] == "25"
    # every worker reports the whole queue: the largest of this release's workers, by pod name
    assert metadata["query"] == (
        'max(groupcast_job_queue_depth{namespace="groupcast", pod=~"groupcast-worker-[a-z0-9]+-[a-z0-9]+"})'
    )
    assert re.fullmatch(r"groupcast-worker-[a-z0-9]+-[a-z0-9]+", "groupcast-worker-7d9f8b6c5-x2k4p")
    # KEDA's HPA owns the worker count; the chart's CPU HPA is not made
    assert "replicas" not in one(docs, "Deployment", "groupcast-worker")["spec"]
    assert not find(docs, "HorizontalPodAutoscaler")
    custom = render({"worker": {"keda": {**values["worker"]["keda"], "query": "sum(my_queue)"}}}, *extra)
    assert one(custom, "ScaledObject", "groupcast-worker")["spec"]["triggers"][0]["metadata"]["query"] == "sum(my_queue)"


def test_prometheus_adapter_rule_serves_the_socket_hpa_metric(render):
    """docs/prometheus-adapter-values.yaml gives prometheus-adapter the per-pod metric the
    socket HPA asks custom.metrics.k8s.io for."""
    import yaml

    adapter = yaml.safe_load((ROOT / "docs" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    values, extra = MATRIX["autoscaling"]
    metrics = one(render(values, *extra), "HorizontalPodAutoscaler", "groupcast-socket")["spec"]["metrics"]
    wanted = metrics[1]["pods"]["metric"]["name"]
    assert rule["name"]["as"] == wanted == "groupcast_connections"
    assert rule["seriesQuery"].startswith("groupcast_connections{")
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]


def test_monitoring_is_off_by_default(render):
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not find(render(), "ConfigMap", "groupcast-dashboard")


def test_existing_secret(render):
    values, extra = MATRIX["existing-secrets"]
    docs = render(values, *extra)
    assert not find(docs, "Secret")
    for _, spec in pod_specs(docs):
        if "envFrom" in spec["containers"][0]:
            assert {"secretRef": {"name": "groupcast-secrets"}} in spec["containers"][0]["envFrom"]


def test_network_policy_lets_only_the_roles_reach_redis(render):
    values, extra = MATRIX["network-policy"]
    policy = one(render(values, *extra), "NetworkPolicy", "groupcast-redis")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    (rule,) = policy["spec"]["ingress"]
    components = next(e for e in rule["from"][0]["podSelector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component")
    assert components["values"] == ["http", "socket", "worker", "test"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_overrides_reach_the_socket_pods(render):
    values, extra = MATRIX["fixed-secrets-and-overrides"]
    docs = render(values, *extra)
    spec = one(docs, "Deployment", "groupcast-socket")["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "registry.example.com/groupcast-socket:canary"
    assert one(docs, "Deployment", "groupcast-http")["spec"]["template"]["spec"]["containers"][0]["image"] == "groupcast:0.1.0"
    assert spec["nodeSelector"] == {"pool": "sockets"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "socket"
    assert env_of(spec["containers"][0])["GROUPCAST_LOG_LEVEL"]["value"] == "DEBUG"
    redis = one(docs, "StatefulSet", "groupcast-redis")
    assert "volumeClaimTemplates" not in redis["spec"]
    secret = one(docs, "Secret", "groupcast")
    assert base64.b64decode(secret["data"]["GROUPCAST_API_KEYS"]).decode() == TEST_SECRETS["apiKeys"]


# Settings the chart leaves at the service's default, and why.
UNSET_SETTINGS = {
    "GROUPCAST_METRICS_HOST": "0.0.0.0 by default, which is what a pod wants",
    "GROUPCAST_FRONT_DIR": "/tmp/groupcast-front by default, in the pod's /tmp emptyDir",
}


def test_chart_sets_every_setting_the_service_reads(render):
    read = set()
    for module in ("settings.py", "front/config.py"):
        read |= set(re.findall(r'env\.\w+\(\s*"([A-Z0-9_]+)"', (ROOT / "service" / module).read_text()))
    docs = render()
    given = set(one(docs, "ConfigMap", "groupcast")["data"]) | set(one(docs, "Secret", "groupcast")["data"])
    for role in ("http", "socket", "worker"):
        for container in one(docs, "Deployment", f"groupcast-{role}")["spec"]["template"]["spec"]["containers"]:
            given |= set(env_of(container))
    assert read - given - set(UNSET_SETTINGS) == set()


def test_configmap_integers_render_as_plain_digits(render):
    # YAML numbers are floats: 1048576 must not become "1.048576e+06" (the service refuses it).
    docs = render({"config": {"sendQueueBytes": 1048576, "historyTtl": 2592000}})
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and "GROUPCAST_SEND_QUEUE_BYTES" in d["data"])
    assert configmap["data"]["GROUPCAST_SEND_QUEUE_BYTES"] == "1048576"
    assert configmap["data"]["GROUPCAST_HISTORY_TTL"] == "2592000"
    for name, value in configmap["data"].items():
        assert "e+" not in value, (name, value)
