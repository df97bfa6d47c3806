"""Helpers for reading and validating rendered manifests."""

import functools
import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "groupcast"
SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSION = "1.32"
RELEASE = "groupcast"
# Long enough for the chart's checks; fixed so renders are comparable.
TEST_SECRETS = {
    "apiKeys": "test-api-key-0123456789",
    "jwtSecret": "test-jwt-secret-0123456789abcdef0123456789",
    "djangoSecretKey": "test-django-secret-0123456789abcdef0123456789",
}



class RenderError(Exception):
    """helm template refused the values; the message is helm's stderr."""


# kubernetes_validate re-reads its large schema files for every manifest; read each once.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


# Custom resources the chart may render: Kubernetes' OpenAPI does not cover them, so each
# apiVersion has a vendored subset of its CRD's schema (schemas/<apiVersion>.json).
CRD_SCHEMAS = {
    "monitoring.coreos.com/v1": "monitoring.coreos.com-v1.json",
    "keda.sh/v1alpha1": "keda.sh-v1alpha1.json",
    "gateway.networking.k8s.io/v1": "gateway.networking.k8s.io-v1.json",
}
# `helm template` flags declaring those APIs, as a cluster with the operators installed would.
CRD_APIS = (
    "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions", "monitoring.coreos.com/v1/PodMonitor",
    "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
    "--api-versions", "keda.sh/v1alpha1/ScaledObject",
    "--api-versions", "gateway.networking.k8s.io/v1/HTTPRoute",
)


@functools.lru_cache(maxsize=None)
def _crd_validator(api_version):
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[api_version]).read_text())
    return jsonschema.Draft7Validator(schema)


def validate_manifest(doc):
    """Strict schema validation: Kubernetes 1.32 OpenAPI, or the CRD's vendored subset."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc["apiVersion"] in CRD_SCHEMAS:
        errors = sorted(_crd_validator(doc["apiVersion"]).iter_errors(doc), key=str)
        assert not errors, f"{where}: {errors[0].message}"
        return
    try:
        version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{where} is invalid for Kubernetes {KUBERNETES_VERSION}: {error.message}", pytrace=False)
    assert version == KUBERNETES_VERSION


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs):
    """(name, pod spec) of every workload, Job and bare Pod."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def tool(script, *args):
    """Path of a pinned tool from a hack/ script, failing the test with the reason if it can't be had."""
    command = [str(ROOT / "hack" / script), *args]
    try:
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1200)
    except subprocess.CalledProcessError as error:
        pytest.fail(f"{' '.join(command)} failed (exit {error.returncode}); it builds or installs a "
                    f"pinned tool (needs Go and the module proxy, or PyPI):\n{error.stderr[-3000:]}",
                    pytrace=False)
    return done.stdout.strip()
