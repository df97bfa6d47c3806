"""skaffold.yaml: valid for skaffold/v4beta13 (with every profile applied) and deployable values."""

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from .manifests import ROOT, SCHEMAS

CONFIG = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
VALIDATOR = jsonschema.Draft7Validator(json.loads((SCHEMAS / "skaffold-v4beta13.json").read_text()))


def apply_patches(config, patches):
    """The JSON-patch `add`/`replace` operations skaffold profiles use (paths of keys and indexes)."""
    config = copy.deepcopy(config)
    for patch in patches:
        assert patch.get("op", "replace") in ("add", "replace"), patch
        *parents, last = patch["path"].lstrip("/").split("/")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = patch["value"]
        else:
            node[last] = patch["value"]
    return config


def test_skaffold_config_is_valid():
    errors = sorted(VALIDATOR.iter_errors(CONFIG), key=str)
    assert not errors, errors[0].message


def test_a_typo_is_caught():
    config = copy.deepcopy(CONFIG)
    config["deploy"]["helm"]["releases"][0]["chartpath"] = "charts/groupcast"
    assert list(VALIDATOR.iter_errors(config))


@pytest.mark.parametrize("profile", [p["name"] for p in CONFIG["profiles"]])
def test_profile_result_is_valid(profile):
    (spec,) = [p for p in CONFIG["profiles"] if p["name"] == profile]
    patched = apply_patches(CONFIG, spec.get("patches", []))
    patched.pop("profiles")
    errors = sorted(VALIDATOR.iter_errors(patched), key=str)
    assert not errors, errors[0].message


def test_builds_the_dockerfile_and_deploys_the_chart():
    (artifact,) = CONFIG["build"]["artifacts"]
    assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    (release,) = CONFIG["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert set(release["setValueTemplates"]) == {"image.repository", "image.tag"}
    assert any(p["name"] == "kind" for p in CONFIG["profiles"])


def test_kind_profile_values_render(render):
    (kind,) = [p for p in CONFIG["profiles"] if p["name"] == "kind"]
    values = {}
    for key, value in apply_patches(CONFIG, kind["patches"])["deploy"]["helm"]["releases"][0]["setValues"].items():
        node = values
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if last.endswith("[0]"):
            node[last[:-3]] = [value]
        else:
            node[last] = value
    docs = render(values)
    assert any(d["kind"] == "Deployment" for d in docs)


def test_offline_profile_matches_image_script():
    (offline,) = [p for p in CONFIG["profiles"] if p["name"] == "offline"]
    base = next(p["value"] for p in offline["patches"] if p["path"].endswith("buildArgs"))["BASE_IMAGE"]
    assert f"PYTHON_IMAGE={base.replace('bookworm', '$DEBIAN_SUITE')}" in Path(ROOT / "hack" / "image.sh").read_text()


def test_podman_profile_builds_with_the_image_script(render):
    (podman,) = [p for p in CONFIG["profiles"] if p["name"] == "podman"]
    patched = apply_patches(CONFIG, podman["patches"])
    (artifact,) = patched["build"]["artifacts"]
    # the same name, so the IMAGE_REPO_/IMAGE_TAG_ templates of the release still apply
    assert artifact["image"] == CONFIG["build"]["artifacts"][0]["image"]
    script = ROOT / artifact["custom"]["buildCommand"]
    assert os.access(script, os.X_OK)
    assert "hack/image.sh" in script.read_text()
    (release,) = patched["deploy"]["helm"]["releases"]
    image = release["overrides"]["redis"]["image"]
    redis = f'{image["repository"]}:{image["tag"]}'
    assert f"REDIS_IMAGE={redis}" in (ROOT / "hack" / "image.sh").read_text()
    assert f"REDIS_IMAGE={redis}" in script.read_text()
    # as skaffold calls helm: overrides as a values file, the templates as --set
    docs = render(release["overrides"], "--set", "image.repository=groupcast", "--set", "image.tag=0123")
    images = {c["image"] for d in docs if d["kind"] == "StatefulSet" for c in d["spec"]["template"]["spec"]["containers"]}
    assert redis in images
