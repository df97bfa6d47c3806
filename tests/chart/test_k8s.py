"""k8s/: the kustomize base is the chart's defaults, and both overlays build valid manifests."""

import base64
import shutil
import subprocess
import sys

import pytest
import yaml

from .manifests import ROOT, one, tool, validate_manifest


def test_base_matches_the_chart():
    done = subprocess.run([sys.executable, str(ROOT / "hack" / "chart-k8s.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def kustomize_build(tmp_path_factory):
    kustomize = tool("chart-tools.sh", "kustomize")
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "k8s", tree)
    # production needs its never-committed secrets.env; the example with test values stands in.
    (tree / "overlays" / "production" / "secrets.env").write_text(
        "GROUPCAST_API_KEYS=prod-test-api-key-0123456789\n"
        "GROUPCAST_JWT_SECRET=prod-test-jwt-secret-0123456789abcdef0123\n"
        "DJANGO_SECRET_KEY=prod-test-django-secret-0123456789abcdef0123\n"
    )

    def build(path):
        done = subprocess.run([kustomize, "build", str(tree / path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return build


@pytest.mark.parametrize("path", ["base", "overlays/dev", "overlays/production"])
def test_kustomize_builds_valid_manifests(kustomize_build, path):
    docs = kustomize_build(path)
    assert len(docs) >= 14
    for doc in docs:
        validate_manifest(doc)


def test_dev_overlay_uses_local_images(kustomize_build):
    docs = kustomize_build("overlays/dev")
    socket = one(docs, "Deployment", "groupcast-socket")
    assert socket["metadata"]["namespace"] == "groupcast-dev"
    assert socket["spec"]["replicas"] == 1
    container = socket["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("localhost/groupcast:0.1.0", "Never")
    for container in one(docs, "Deployment", "groupcast-http")["spec"]["template"]["spec"]["containers"]:
        assert (container["image"], container["imagePullPolicy"]) == ("localhost/groupcast:0.1.0", "Never")
    redis = one(docs, "StatefulSet", "groupcast-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["image"] == "localhost/groupcast-redis:7"


def test_production_overlay_replaces_the_placeholder_secrets(kustomize_build):
    docs = kustomize_build("overlays/production")
    secret = one(docs, "Secret", "groupcast")
    assert secret["metadata"]["namespace"] == "groupcast"
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert all(value.startswith("prod-test-") for value in values.values())
    assert one(docs, "Deployment", "groupcast-socket")["spec"]["replicas"] == 3


def test_production_secrets_are_never_committed():
    ignore = (ROOT / "k8s" / "overlays" / "production" / ".gitignore").read_text().split()
    assert "secrets.env" in ignore
    for name in ("DJANGO_SECRET_KEY", "GROUPCAST_API_KEYS", "GROUPCAST_JWT_SECRET", "GROUPCAST_WEBHOOK_SECRET"):
        assert f"{name}=\n" in (ROOT / "k8s" / "overlays" / "production" / "secrets.env.example").read_text()
