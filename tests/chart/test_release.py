"""The way to a real cluster: `make push` (any registry), the release workflow (a multi-arch
image and the chart on a tag) and hack/chart-package.py, which points the packaged chart at
the image its release pushed."""

import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

from .manifests import ROOT, pod_specs, validate_manifest

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def versions_env(name):
    return re.search(rf"^{name}=(\S+)", (ROOT / "e2e" / "versions.env").read_text(), re.M).group(1)


def steps_using(job, action):
    return [step for step in job["steps"] if step.get("uses", "").startswith(action + "@")]


def test_release_workflow_pushes_a_multi_arch_image_then_the_chart():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the `on:` key as true
    assert triggers == {"push": {"tags": ["v*.*.*"]}}
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}
    assert workflow["env"]["HELM_VERSION"] == versions_env("HELM_VERSION")
    image, chart = workflow["jobs"]["image"], workflow["jobs"]["chart"]
    (build,) = steps_using(image, "docker/build-push-action")
    assert build["with"]["platforms"].split(",") == ["linux/amd64", "linux/arm64"]
    assert build["with"]["push"] is True and build["with"]["context"] == "."
    assert steps_using(image, "docker/setup-qemu-action") and steps_using(image, "docker/setup-buildx-action")
    (meta,) = steps_using(image, "docker/metadata-action")
    assert meta["with"]["images"] == "ghcr.io/${{ steps.names.outputs.owner }}/groupcast"
    assert "type=semver,pattern={{version}}" in meta["with"]["tags"]
    assert chart["needs"] == "image"
    script = "\n".join(step.get("run", "") for step in chart["steps"])
    # the chart points at the very image the first job pushed, and goes to an OCI registry
    assert 'hack/chart-package.py "$GITHUB_REF_NAME" "ghcr.io/$OWNER/groupcast" dist' in script
    assert 'helm push dist/groupcast-*.tgz "oci://ghcr.io/$OWNER/charts"' in script


def package(tmp_path, version, repository):
    return subprocess.run([sys.executable, str(ROOT / "hack" / "chart-package.py"), version, repository, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)


def test_the_packaged_chart_installs_the_released_image(helm, tmp_path):
    done = package(tmp_path, "v1.4.0", "ghcr.io/acme/groupcast")
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "groupcast-1.4.0.tgz"
    assert done.stdout.strip() == str(archive)
    with tarfile.open(archive) as tar:
        chart = yaml.safe_load(tar.extractfile("groupcast/Chart.yaml"))
        names = tar.getnames()
    assert (chart["version"], chart["appVersion"]) == ("1.4.0", "1.4.0")
    assert chart["annotations"]["artifacthub.io/prerelease"] == "false"
    assert "image: ghcr.io/acme/groupcast:1.4.0" in chart["annotations"]["artifacthub.io/images"]
    assert "groupcast/values.schema.json" in names and "groupcast/ci/public-values.yaml" in names
    rendered = subprocess.run([helm, "template", "gc", str(archive)], capture_output=True, text=True, check=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    images = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]}
    assert images == {"ghcr.io/acme/groupcast:1.4.0", "redis:7.4-alpine"}
    for doc in docs:
        validate_manifest(doc)
    # the source chart is untouched: local clusters keep `make image`'s name
    assert "  repository: groupcast\n" in (ROOT / "charts" / "groupcast" / "values.yaml").read_text()
    rc = package(tmp_path, "1.5.0-rc.1", "ghcr.io/acme/groupcast")
    assert rc.returncode == 0, rc.stderr
    with tarfile.open(tmp_path / "groupcast-1.5.0-rc.1.tgz") as tar:
        assert yaml.safe_load(tar.extractfile("groupcast/Chart.yaml"))["annotations"]["artifacthub.io/prerelease"] == "true"


@pytest.mark.parametrize("version, repository, message", [
    ("latest", "ghcr.io/acme/groupcast", "VERSION must be semantic"),
    ("1.0.0", "groupcast", "IMAGE_REPOSITORY must be <registry>/<path>"),
    ("1.0.0", "ghcr.io/Acme/groupcast", "in lower case"),
])
def test_chart_package_refuses_what_would_not_install(tmp_path, version, repository, message):
    done = package(tmp_path, version, repository)
    assert done.returncode != 0 and message in done.stderr


def test_make_push_builds_tags_and_pushes_with_the_engine_present(tmp_path):
    """With docker the only engine (a stand-in that records its calls), `make push` builds the
    Dockerfile, tags the result as IMAGE and pushes it; a name without a registry is refused."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CONTAINER_ENGINE": "docker"}
    env.pop("MAKEFLAGS", None)
    done = subprocess.run(["make", "-s", "push", "IMAGE=registry.example.com/acme/groupcast:1.0.0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    build, tag, push = calls.read_text().splitlines()
    assert build.startswith("build ") and "-t localhost/groupcast:0.1.0" in build and build.endswith(str(ROOT))
    assert tag == "tag localhost/groupcast:0.1.0 registry.example.com/acme/groupcast:1.0.0"
    assert push == "push registry.example.com/acme/groupcast:1.0.0"
    assert "--set image.repository=registry.example.com/acme/groupcast --set image.tag=1.0.0" in done.stderr
    calls.unlink()
    refused = subprocess.run(["make", "-s", "push", "IMAGE=groupcast:1.0.0"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "IMAGE must be <registry>/<path>:<tag>" in refused.stderr
    assert not calls.exists()  # nothing built or pushed
