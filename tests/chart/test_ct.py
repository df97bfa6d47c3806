"""chart-testing's `ct lint` (ct.yaml at the root): Chart.yaml against ct's schema, yamllint
over the chart's YAML, and `helm lint` with the defaults and each ci/*-values.yaml."""

import os
import subprocess
from pathlib import Path

from .manifests import ROOT, tool


def test_ct_lint_passes(helm):
    ct = Path(tool("chart-tools.sh", "ct"))
    # ct runs helm, yamllint and yamale from PATH: the pinned helm and ct's own venv.
    path = os.pathsep.join([str(ct.parent / "venv" / "bin"), str(Path(helm).parent), os.environ["PATH"]])
    done = subprocess.run(
        [str(ct), "lint", "--config", str(ROOT / "ct.yaml"),
         "--lint-conf", str(ct.parent / "etc" / "lintconf.yaml"),
         "--chart-yaml-schema", str(ct.parent / "etc" / "chart_schema.yaml")],
        cwd=ROOT, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "All charts linted successfully" in output
    # the ci/ values files were linted too, not only the defaults
    for values in sorted((ROOT / "charts" / "groupcast" / "ci").glob("*-values.yaml")):
        assert values.name in output, f"{values.name} was not linted:\n{output[-2000:]}"
