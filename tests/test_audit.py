"""Known vulnerabilities in the locked runtime dependencies (what the image ships), by pip-audit.

The audit asks a vulnerability database over the network, and that database changes
without any change here, so it does not run in a plain `make test`; run it (in CI, on a
schedule and before a release) with:

    GROUPCAST_AUDIT=1 .venv/bin/python -m pytest tests/test_audit.py

It fails when a locked package has a known vulnerability, and also when the database
cannot be reached: an audit that did not happen never passes. GROUPCAST_AUDIT_SERVICE
picks the database (`pypi`, the default, or `osv`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"
PROJECT = "groupcast"
# Vulnerability id -> why it does not affect groupcast (reviewed, with a date). Keep it short.
ACCEPTED = {}
SERVICE_URLS = {
    "pypi": "https://pypi.org/pypi/<name>/<version>/json",
    "osv": "https://api.osv.dev/v1/query",
}


def runtime_packages(lock_path=LOCK):
    """{(name, version)} of every locked package the project's runtime dependencies pull in.

    Every environment marker counts (a package locked for any Python or platform the
    project supports is audited), and extras are followed (`redis[hiredis]`).
    """
    lock = tomllib.loads(lock_path.read_text())
    by_name = {}
    for package in lock["package"]:
        by_name.setdefault(package["name"], []).append(package)
    [project] = by_name[PROJECT]

    found, seen = set(), set()
    todo = list(project.get("dependencies", []))
    while todo:
        dep = todo.pop()
        extras = tuple(sorted(dep.get("extra", [])))
        for package in by_name[dep["name"]]:
            if dep.get("version", package["version"]) != package["version"]:
                continue
            if (package["name"], package["version"], extras) in seen:
                continue
            seen.add((package["name"], package["version"], extras))
            found.add((package["name"], package["version"]))
            todo += package.get("dependencies", [])
            for extra in extras:
                todo += package.get("optional-dependencies", {}).get(extra, [])
    return found


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _uv():
    tools = sorted((ROOT / ".cache" / "tools").glob("uv-*/bin/uv"))
    return str(tools[-1]) if tools else shutil.which("uv")


@pytest.mark.skipif(_uv() is None, reason="uv is not installed (make deps installs it)")
def test_the_audited_set_is_what_uv_installs():
    """The lock walk above agrees with `uv export` of the runtime dependencies."""
    exported = subprocess.run(
        [_uv(), "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project",
         "--no-header", "--no-annotate"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_SYSTEM_CERTS": "1"},
    ).stdout
    from_uv = {
        tuple(line.split(";")[0].strip().split("=="))
        for line in exported.splitlines()
        if line.strip() and not line.startswith(("#", " "))
    }
    assert runtime_packages() == from_uv


@pytest.mark.skipif(
    not os.environ.get("GROUPCAST_AUDIT"),
    reason="set GROUPCAST_AUDIT=1 to audit dependencies (needs the vulnerability database online)",
)
def test_locked_runtime_dependencies_have_no_known_vulnerabilities(tmp_path):
    service = os.environ.get("GROUPCAST_AUDIT_SERVICE", "pypi")
    packages = runtime_packages()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in sorted(packages)))
    command = [
        sys.executable, "-m", "pip_audit", "--requirement", str(requirements),
        "--no-deps", "--disable-pip", "--strict", "--vulnerability-service", service,
        "--format", "json", "--progress-spinner", "off", "--cache-dir", str(tmp_path / "cache"),
        "--timeout", "30",
    ]
    for vulnerability in ACCEPTED:
        command += ["--ignore-vuln", vulnerability]
    try:
        audit = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip-audit did not finish in 300 s: is the {service} vulnerability database reachable?")
    report = _json(audit.stdout)
    if report is None:
        pytest.fail(
            f"pip-audit could not audit (exit {audit.returncode}); an audit that did not happen is not "
            f"a pass. Is the {service} vulnerability database reachable "
            f"({SERVICE_URLS.get(service, service)})?\n" + "\n".join(audit.stderr.strip().splitlines()[-12:])
        )

    problems = audit_problems(report, packages)
    assert not problems, "\n".join(problems)
    assert audit.returncode == 0, audit.stderr[-3000:]


def audit_problems(report, packages):
    """What pip-audit's JSON report says is wrong: packages not audited, and vulnerabilities."""
    problems = [
        f"not audited: {d['name']} ({d['skip_reason']})" for d in report["dependencies"] if "skip_reason" in d
    ]
    audited = {(_normal(d["name"]), d["version"]) for d in report["dependencies"] if "skip_reason" not in d}
    missing = {(_normal(n), v) for n, v in packages} - audited
    problems += [f"not in the report: {name} {version}" for name, version in sorted(missing)]
    problems += [
        f"vulnerable: {d['name']} {d['version']}: {v['id']} {' '.join(v.get('aliases', []))} "
        f"(fixed in {', '.join(v.get('fix_versions', [])) or 'no release yet'})"
        for d in report["dependencies"]
        for v in d.get("vulns", [])
    ]
    return problems


def test_an_audit_report_with_findings_or_gaps_is_a_failure():
    """The report reading above, on pip-audit's JSON format (no network needed)."""
    packages = {("Django", "5.2.19"), ("redis", "8.1.0"), ("pyjwt", "2.15.1")}
    clean = {"dependencies": [
        {"name": "django", "version": "5.2.19", "vulns": []},
        {"name": "redis", "version": "8.1.0", "vulns": []},
        {"name": "pyjwt", "version": "2.15.1", "vulns": []},
    ], "fixes": []}
    assert audit_problems(clean, packages) == []
    findings = {"dependencies": [
        {"name": "django", "version": "5.2.19", "vulns": [
            {"id": "PYSEC-0000-1", "fix_versions": ["5.2.20"], "aliases": ["CVE-0000-1"]}]},
        {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ], "fixes": []}
    assert audit_problems(findings, packages) == [
        "not audited: redis (Dependency not found on PyPI and could not be audited)",
        "not in the report: pyjwt 2.15.1",
        "not in the report: redis 8.1.0",
        "vulnerable: django 5.2.19: PYSEC-0000-1 CVE-0000-1 (fixed in 5.2.20)",
    ]
