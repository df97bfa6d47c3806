#!/usr/bin/env python3
"""Generate the values table of charts/groupcast/README.md from the `# --` comments in values.yaml.

helm-docs conventions: a `# -- text` comment (continued by following `#` lines) documents
the key right below it; a documented mapping covers all of its children. Only the part of
the README between the two markers is rewritten.

    hack/chart-readme.py           rewrite the table
    hack/chart-readme.py --check   exit 1 if the table is stale or a value is undocumented
"""

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "groupcast"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):")


def descriptions(text):
    """Map dotted key path -> description, from the `# --` comments of values.yaml."""
    found, stack, pending = {}, [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            pending = None
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if pending is not None:
            found[".".join(key for _, key in stack)] = " ".join(pending)
            pending = None
    return found


def leaves(values, prefix=""):
    """Dotted paths of every value that is not a non-empty mapping."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path


def lookup(values, path):
    for key in path.split("."):
        values = values[key]
    return values


def kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def table(values, described):
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path in sorted(described, key=lambda p: list(described).index(p)):
        value = lookup(values, path)
        default = json.dumps(value, separators=(",", ":")).replace("|", "\\|")
        rows.append(f"| {path} | {kind(value)} | `{default}` | {described[path]} |")
    return "\n".join(rows)


def undocumented(values, described):
    def covered(path):
        parts = path.split(".")
        return any(".".join(parts[:n]) in described for n in range(1, len(parts) + 1))

    return [path for path in leaves(values) if not covered(path)]


def main():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    described = descriptions(text)
    missing = undocumented(values, described)
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    fresh = f"{head}{START}\n{table(values, described)}\n{END}{tail}"
    if "--check" in sys.argv:
        problems = [f"undocumented value: {path}" for path in missing]
        if fresh != readme:
            problems.append("charts/groupcast/README.md is stale: run hack/chart-readme.py")
        print("\n".join(problems) or "README values table is up to date")
        return 1 if problems else 0
    if missing:
        print("\n".join(f"undocumented value: {path}" for path in missing), file=sys.stderr)
        return 1
    readme_path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
