"""Every Python source compiles, including those `make test` never imports (the e2e
scenarios, the benchmark, the soak): a syntax error there would surface only in a run of
its own long target."""

import py_compile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_compiles(tmp_path):
    sources = [
        path for folder in ("e2e", "bench", "soak", "devstack", "service")
        for path in (ROOT / folder).rglob("*.py") if ".work" not in path.parts
    ]
    assert len(sources) > 50
    failures = []
    for path in sources:
        try:
            py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
        except py_compile.PyCompileError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)
