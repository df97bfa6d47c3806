"""Chart tests: render charts/groupcast with the pinned helm (hack/helm.sh) and validate the
manifests strictly against the Kubernetes 1.32 OpenAPI schemas.

Nothing is skipped: a tool that cannot be built or installed fails the test that needs it.
"""

import functools
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import CHART, RELEASE, RenderError, tool


@pytest.fixture(scope="session")
def helm():
    return tool("helm.sh")


@pytest.fixture(scope="session")
def render(helm, tmp_path_factory):
    """render(values=None, *extra_args) -> list of manifests (dicts), cached per arguments."""
    directory = tmp_path_factory.mktemp("values")

    @functools.lru_cache(maxsize=None)
    def cached(values_json, extra):
        args = [helm, "template", RELEASE, str(CHART), "--namespace", "groupcast", *extra]
        if values_json:
            path = directory / f"values-{abs(hash(values_json))}.json"
            path.write_text(values_json)
            args += ["-f", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RenderError(done.stderr)
        return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)

    def run(values=None, *extra):
        docs = cached(json.dumps(values, sort_keys=True) if values else "", tuple(extra))
        return [json.loads(json.dumps(doc)) for doc in docs]  # a private copy for each test

    return run




# The first test to need helm, kustomize or checkov builds or installs it (cached in .cache/tools
# afterwards): minutes on a cold machine, past the suite's default per-test timeout.
TOOL_BUILD_TIMEOUT = 1200


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.timeout(TOOL_BUILD_TIMEOUT))
