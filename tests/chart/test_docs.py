"""docs/deploy.md: every values fragment it shows renders with the chart (schema and checks),
and the whole production example makes valid manifests pointing at the pushed image."""

import re

import pytest
import yaml

from .manifests import CRD_APIS, ROOT, one, pod_specs, validate_manifest

GUIDE = (ROOT / "docs" / "deploy.md").read_text()
FRAGMENTS = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", GUIDE, re.S)]
# the snippets assume a cluster with the APIs they need
APIS = (*CRD_APIS, "--api-versions", "custom.metrics.k8s.io/v1beta1")


def test_the_guide_shows_values_for_every_step():
    keys = set().union(*(fragment.keys() for fragment in FRAGMENTS))
    assert {"image", "imagePullSecrets", "secrets", "ingress", "httpRoute", "monitoring", "socket", "worker"} <= keys


@pytest.mark.parametrize("index", range(len(FRAGMENTS)))
def test_every_values_fragment_renders(render, index):
    docs = render(FRAGMENTS[index], *APIS)
    for doc in docs:
        validate_manifest(doc)


def test_the_production_example(render):
    (example,) = [f for f in FRAGMENTS if "externalRedis" in f and "image" in f]
    docs = render(example)
    images = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]}
    assert images == {"registry.example.com/platform/groupcast:0.1.0"}
    ingress = one(docs, "Ingress", "groupcast")
    assert ingress["spec"]["tls"][0]["secretName"] == "groupcast-tls"
    for doc in docs:
        validate_manifest(doc)
