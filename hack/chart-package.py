#!/usr/bin/env python3
"""Package the chart for a release, pointing it at the image that release pushed.

    hack/chart-package.py VERSION IMAGE_REPOSITORY [OUTDIR]
    hack/chart-package.py 1.2.0 ghcr.io/acme/groupcast dist/     # -> dist/groupcast-1.2.0.tgz

In a copy of charts/groupcast: Chart.yaml's version and appVersion become VERSION, values.yaml's
image.repository becomes IMAGE_REPOSITORY (the tag defaults to appVersion), and the Artifact
Hub annotations follow (the image, prerelease for a version with a suffix). The source chart
keeps `groupcast`, the name `make image` builds, for local clusters. The release workflow
(.github/workflows/release.yml) runs this, then `helm push`.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "groupcast"
SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
REPOSITORY = re.compile(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+")


def substitute(text, pattern, replacement, path):
    """Replace the one line matching `pattern`; fail if there is not exactly one."""
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        sys.exit(f"chart-package: expected one line matching {pattern!r} in {path}, found {count}")
    return new


def rewrite(chart, version, repository):
    chart_yaml = chart / "Chart.yaml"
    text = chart_yaml.read_text()
    text = substitute(text, r"^version: .*$", f"version: {version}", chart_yaml)
    text = substitute(text, r'^appVersion: .*$', f'appVersion: "{version}"', chart_yaml)
    text = substitute(text, r"^(\s+image: )\S*groupcast:\S+$", rf"\g<1>{repository}:{version}", chart_yaml)
    prerelease = "true" if "-" in version.split("+")[0] else "false"
    text = substitute(text, r'^(\s+artifacthub\.io/prerelease: ).*$', rf'\g<1>"{prerelease}"', chart_yaml)
    chart_yaml.write_text(text)
    values = chart / "values.yaml"
    # image.repository: the first `repository:` of values.yaml, at two spaces under `image:`
    text = values.read_text()
    text = substitute(text, r"^(image:\n(?:  #.*\n)*  repository: )groupcast$", rf"\g<1>{repository}", values)
    values.write_text(text)


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    version, repository = argv[1].removeprefix("v"), argv[2]
    outdir = Path(argv[3] if len(argv) == 4 else ".").resolve()
    if not SEMVER.fullmatch(version):
        sys.exit(f"chart-package: VERSION must be semantic (1.2.0, 1.2.0-rc.1), got {argv[1]!r}")
    if not REPOSITORY.fullmatch(repository):
        sys.exit(f"chart-package: IMAGE_REPOSITORY must be <registry>/<path> in lower case, got {repository!r}")
    helm = subprocess.run([ROOT / "hack" / "helm.sh"], check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        chart = Path(work) / "groupcast"
        shutil.copytree(CHART, chart)
        rewrite(chart, version, repository)
        subprocess.run([helm, "lint", "--strict", str(chart)], check=True, stdout=subprocess.DEVNULL)
        outdir.mkdir(parents=True, exist_ok=True)
        subprocess.run([helm, "package", str(chart), "--destination", str(outdir)], check=True,
                       stdout=subprocess.DEVNULL)
    print(outdir / f"groupcast-{version}.tgz")


if __name__ == "__main__":
    main(sys.argv)
