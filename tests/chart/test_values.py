"""values.yaml, values.schema.json and the generated README agree; bad values fail early."""

import json
import subprocess
import sys

import pytest
import yaml

from .manifests import CHART, ROOT, RenderError

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA_ERROR = "values don't meet the specifications of the schema"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"socket": {"replicas": 3}}, "additional properties 'replicas' not allowed"),
        ({"sockets": {"replicaCount": 3}}, "additional properties 'sockets' not allowed"),
        ({"http": {"autoscaling": {"maxReplica": 3}}}, "additional properties 'maxReplica' not allowed"),
        ({"http": {"replicaCount": -1}}, "minimum: got -1"),
        ({"worker": {"replicaCount": "two"}}, "got string, want integer"),
        ({"socket": {"autoscaling": {"targetConnectionsPerPod": -5}}}, "minimum: got -5"),
        ({"ingress": {"enabled": "yes"}}, "got string, want boolean"),
        ({"redis": {"appendfsync": "sometimes"}}, "appendfsync"),
        ({"config": {"logLevel": "TRACE"}}, "logLevel"),
        ({"config": {"allowedOrigins": "https://a.example"}}, "got string, want array"),
        ({"config": {"maxBodyBytes": 10}}, "minimum: got 10"),
        ({"http": {"front": {"headerTimeoutSeconds": 0}}}, "minimum: got 0"),
        ({"http": {"front": {"maxHeaderBytes": 70000}}}, "maximum: got 70,000"),
        ({"http": {"front": {"maxConnection": 10}}}, "additional properties 'maxConnection' not allowed"),
        ({"http": {"resources": {"requests": {"gpu": 1}}}}, "additional properties 'gpu' not allowed"),
        ({"monitoring": {"serviceMonitor": {"interval": 30}}}, "got number, want string"),
        ({"externalRedis": {"url": "http://redis:6379"}}, "externalRedis/url"),
        ({"externalRedis": {"url": "redis+cluster://redis-0"}}, "'redis+cluster://redis-0' does not match pattern"),
        ({"externalRedis": {"url": "redis+cluster://a:6379/3"}}, "'redis+cluster://a:6379/3' does not match"),
        ({"externalRedis": {"url": "redis+cluster://a:6379,,b:6379"}}, "does not match pattern '^rediss?\\\\+cluster://"),
        ({"externalRedis": {"url": "redis+cluster:/a:6379"}}, "externalRedis/url"),
        ({"externalRedis": {"url": "redis-cluster://a:6379"}}, "externalRedis/url"),
        ({"redis": {"cluster": {"masters": 2}}}, "minimum: got 2, want 3"),
        ({"redis": {"cluster": {"replicasPerMaster": -1}}}, "minimum: got -1"),
        ({"redis": {"cluster": {"nodeTimeoutMs": 100}}}, "minimum: got 100"),
        ({"redis": {"cluster": {"replicas": 1}}}, "additional properties 'replicas' not allowed"),
        ({"redis": {"cluster": {"enabled": "yes"}}}, "got string, want boolean"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"worker": {"keda": {"enabled": True, "minReplicas": 0}}}, "minimum: got 0"),
        ({"worker": {"keda": {"serverAddress": "prometheus:9090"}}}, "serverAddress"),
        ({"worker": {"keda": {"threshold": 5}}}, "additional properties 'threshold' not allowed"),
        ({"httpRoute": {"parentRefs": [{"namespace": "gw"}]}}, "missing property 'name'"),
        ({"httpRoute": {"hostnames": ["Groupcast.Example.com"]}}, "hostnames"),
        ({"config": {"subscribeProxyUrl": "app:8000/subscribe"}}, "subscribeProxyUrl"),
        ({"config": {"subscribeProxyTimeout": 60}}, "subscribeProxyTimeout"),
        ({"config": {"subscribeProxyConcurrency": 0}}, "minimum: got 0"),
    ],
)
def test_bad_values_fail_with_a_schema_error(render, values, message):
    with pytest.raises(RenderError) as error:
        render(values)
    assert SCHEMA_ERROR in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "values, extra, message",
    [
        ({"socket": {"terminationGracePeriodSeconds": 15}}, (), "socket.terminationGracePeriodSeconds must exceed"),
        ({"redis": {"enabled": False}}, (), "redis.enabled=false needs externalRedis.url"),
        ({"redis": {"enabled": False}, "externalRedis": {"sentinel": {"hosts": ["s:26379"]}}}, (), "masterName is required"),
        ({"redis": {"enabled": False, "cluster": {"enabled": True}}}, (),
         "redis.cluster.enabled=true runs a Redis Cluster in the chart and needs redis.enabled=true"),
        ({"redis": {"cluster": {"enabled": True}, "persistence": {"enabled": False}}}, (),
         "redis.cluster.enabled=true needs redis.persistence.enabled=true"),
        ({"socket": {"autoscaling": {"enabled": True, "targetConnectionsPerPod": 100}}}, (), "custom metrics adapter"),
        ({"http": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, (), "minReplicas must not exceed"),
        ({"secrets": {"apiKeys": "short"}}, (), "secrets.apiKeys"),
        ({"secrets": {"jwtSecret": "a" * 40 + ",tooshort"}}, (), "secrets.jwtSecret"),
        ({"secrets": {"djangoSecretKey": "tooshort"}}, (), "secrets.djangoSecretKey"),
        # options that need a custom resource, on a cluster that does not serve it
        ({"monitoring": {"serviceMonitor": {"enabled": True}}}, (),
         "monitoring.serviceMonitor.enabled=true needs the ServiceMonitor custom resource (monitoring.coreos.com/v1)"),
        ({"monitoring": {"podMonitor": {"enabled": True}}}, (), "needs the PodMonitor custom resource"),
        ({"monitoring": {"prometheusRule": {"enabled": True}}}, (), "needs the PrometheusRule custom resource"),
        ({"worker": {"keda": {"enabled": True, "serverAddress": "http://p:9090"}}}, (),
         "worker.keda.enabled=true needs the ScaledObject custom resource (keda.sh/v1alpha1)"),
        ({"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}}, (),
         "httpRoute.enabled=true needs the HTTPRoute custom resource (gateway.networking.k8s.io/v1)"),
        # ... and with it, values that cannot work
        ({"httpRoute": {"enabled": True}}, ("--api-versions", "gateway.networking.k8s.io/v1/HTTPRoute"),
         "needs httpRoute.parentRefs"),
        ({"worker": {"keda": {"enabled": True}}}, ("--api-versions", "keda.sh/v1alpha1/ScaledObject"),
         "needs worker.keda.serverAddress"),
        ({"worker": {"keda": {"enabled": True, "serverAddress": "http://p:9090"}, "autoscaling": {"enabled": True}}},
         ("--api-versions", "keda.sh/v1alpha1/ScaledObject"), "enable one"),
        ({"worker": {"keda": {"enabled": True, "serverAddress": "http://p:9090", "minReplicas": 5, "maxReplicas": 2}}},
         ("--api-versions", "keda.sh/v1alpha1/ScaledObject"), "worker.keda.minReplicas must not exceed"),
        ({"secrets": {"webhookSecret": "whsec_dG9vc2hvcnQ="}}, (), "secrets.webhookSecret"),
        ({"secrets": {"webhookSecret": "not a whsec secret at all, not even base64"}}, (), "secrets.webhookSecret"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(render, values, extra, message):
    with pytest.raises(RenderError) as error:
        render(values, *extra)
    assert message in str(error.value)


def test_helm_lint_strict(helm):
    done = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm_lint_strict_with_every_option_on(helm, tmp_path):
    # Not the options that need a custom resource (ServiceMonitor, KEDA, HTTPRoute): helm lint
    # has no --api-versions, so they fail as on a cluster without them (tested below).
    values = {
        "http": {"autoscaling": {"enabled": True}},
        "socket": {"autoscaling": {"enabled": True}},
        "worker": {"autoscaling": {"enabled": True}},
        "ingress": {"enabled": True, "host": "groupcast.example.com"},
        "networkPolicy": {"enabled": True},
        "monitoring": {"dashboard": {"enabled": True}},
    }
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    done = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def resolve(schema):
    while "$ref" in schema:
        node = SCHEMA
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def schema_at(path):
    """The schema of a dotted values path, following $ref and allOf."""
    node = SCHEMA
    for key in path.split("."):
        node = resolve(node)
        candidates = [node] + [resolve(s) for s in node.get("allOf", [])]
        found = [c["properties"][key] for c in candidates if key in c.get("properties", {}) and c["properties"][key] is not True]
        assert found, f"values.schema.json does not describe {path}"
        node = found[0]
    return resolve(node)


def leaves(values, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        schema = schema_at(path)
        # maps (labels, annotations) and Kubernetes objects passed through have no fixed keys
        if isinstance(value, dict) and value and ("properties" in schema or "allOf" in schema):
            yield from leaves(value, path + ".")
        else:
            yield path


def test_schema_describes_every_value():
    for path in leaves(VALUES):
        assert schema_at(path).get("type") or schema_at(path).get("enum") or schema_at(path).get("$ref"), path


# Object schemas that may leave additionalProperties open, and why.
OPEN_OBJECTS = {
    "#/definitions/role": "only used through allOf by http, socket and worker, which each close it",
    "#/definitions/role/properties/extraEnv/items": "a Kubernetes EnvVar, validated by Kubernetes",
}


def test_schema_objects_reject_unknown_keys():
    def walk(node, where):
        if isinstance(node, dict):
            if "properties" in node and where not in OPEN_OBJECTS:
                assert node.get("additionalProperties") is False, f"{where} allows unknown keys"
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(SCHEMA, "#")


def test_default_values_satisfy_the_schema():
    import jsonschema

    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_readme_values_table_is_generated_and_current():
    done = subprocess.run([sys.executable, str(ROOT / "hack" / "chart-readme.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_notes_tell_how_to_connect(helm, tmp_path):
    # NOTES.txt is only rendered by install/upgrade; render it as a template in a copy of the chart.
    import shutil

    chart = tmp_path / "groupcast"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "notes" . | quote }}\n'
    )
    done = subprocess.run([helm, "template", "gc", str(chart), "--show-only", "templates/notes.yaml"],
                          capture_output=True, text=True, check=True)
    text = yaml.safe_load(done.stdout)["data"]["notes"]
    for expected in ("port-forward svc/gc-groupcast-http", "/api/v1/publish", "/api/v1/tokens", "/ws?token=", "helm test gc"):
        assert expected in text
    # The demo page through the forwards: its WebSocket needs the socket forward's URL and its
    # own origin allowed, or the handshake is refused with 403.
    assert ("--set config.wsUrl=ws://127.0.0.1:8001/ws --set 'config.allowedOrigins={http://127.0.0.1:8000}'"
            in " ".join(text.split()))
    # The default image names no registry: say so before pods sit in ImagePullBackOff.
    assert "names no registry" in text and "make push IMAGE=" in text

    def notes(*args):
        done = subprocess.run([helm, "template", "gc", str(chart), "--show-only", "templates/notes.yaml", *args],
                              capture_output=True, text=True, check=True)
        return yaml.safe_load(done.stdout)["data"]["notes"]

    forwarded = notes("--set", "config.wsUrl=ws://127.0.0.1:8001/ws", "--set", "config.allowedOrigins={http://127.0.0.1:8000}",
                      "--set", "image.repository=registry.example.com/groupcast")
    assert "port-forward" in forwarded and "config.allowedOrigins=" not in forwarded
    assert "names no registry" not in forwarded
    routed = notes("--set", "httpRoute.enabled=true", "--set", "httpRoute.parentRefs[0].name=gw",
                   "--set", "httpRoute.hostnames[0]=gc.example.com",
                   "--api-versions", "gateway.networking.k8s.io/v1/HTTPRoute")
    assert "Through the Gateway: http(s)://gc.example.com/" in routed and "port-forward" not in routed
