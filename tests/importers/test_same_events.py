"""Every fixture case imports to the very rows it imported to when golden/fixture_events.jsonl was written: every
field of every event, the footer's import statistics and the device table. test_fixtures checks the fields a case
names; this catches any other change, such as a speed-up of the importers that reads one line differently. The
import benchmark's mixed log (its generator: the fixtures' records re-stamped among other kernel lines, as LF and as
CRLF) is held to golden/mixed_log.json's digest of the same, since its records follow one another as no single
case's do.

After a deliberate change of what an import makes, rewrite the file (and review its diff):
    PYTHONPATH=. python tests/importers/test_same_events.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from explorer.importers import import_log
from explorer.recording import Recording

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden" / "fixture_events.jsonl"
MIXED = Path(__file__).parent / "golden" / "mixed_log.json"
BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "import.py"
MIXED_LINES = 40_000


def _cases() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.stem}: {case['name']}", case) for path in sorted(FIXTURES.glob("*.yaml"))
            for case in yaml.safe_load(path.read_text())["cases"]]


def imported(case: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """What a case imports to, as JSON values."""
    src = tmp / "posted.log"
    src.write_text(case["log"])
    return imported_file(src, tmp, case.get("format"))


def imported_file(src: Path, tmp: Path, fmt: str | None = None) -> dict[str, Any]:
    """What a log file imports to, as JSON values."""
    out = tmp / "out.pasidrec"
    stats = import_log(str(src), out, fmt=fmt)
    with Recording(out) as rec:
        got = {"rows": list(rec.iter_rows()), "import": stats.footer(),
               "devices": sorted([d.name, d.driver] for d in rec.devices)}
    return json.loads(json.dumps(got))


def mixed_digests(tmp: Path) -> dict[str, Any]:
    """The benchmark's mixed log, LF and CRLF: its size and a digest of what each imports to."""
    spec = importlib.util.spec_from_file_location("import_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARK.parent))  # (its helpers lie beside it)
    try:
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    lf, crlf = tmp / "mixed.log", tmp / "mixed-crlf.log"
    lines, _ = bench.generate(lf, MIXED_LINES, 0.3, seed=1)
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    digests: dict[str, Any] = {"lines": lines, "bytes": lf.stat().st_size}
    for src in (lf, crlf):
        got = imported_file(src, tmp)
        digests[src.name] = {"events": len(got["rows"]), "unknown": got["import"]["unknown"],
                             "sha256": hashlib.sha256(json.dumps(got, sort_keys=True).encode()).hexdigest()}
    return digests


def _golden() -> dict[str, Any]:
    return {entry["case"]: entry for entry in map(json.loads, GOLDEN.read_text().splitlines())}


@pytest.mark.parametrize(("name", "case"), _cases(), ids=[name for name, _ in _cases()])
def test_a_fixture_imports_to_the_same_rows_as_before(name: str, case: dict[str, Any], tmp_path: Path) -> None:
    want = _golden().get(name)
    assert want is not None, f"{name} is not in {GOLDEN.name}: rewrite it (see this module's docstring)"
    got = imported(case, tmp_path)
    assert got["rows"] == want["rows"]
    assert got["import"] == want["import"]
    assert got["devices"] == want["devices"]


def test_the_benchmarks_mixed_log_imports_to_the_same_rows_as_before(tmp_path: Path) -> None:
    want = json.loads(MIXED.read_text())
    got = mixed_digests(tmp_path)
    assert got["lines"] == want["lines"] and got["bytes"] == want["bytes"], \
        "the benchmark now generates another log: rewrite the golden file (see this module's docstring)"
    assert got == want


def test_an_import_is_stored_as_compressed_columns(tmp_path: Path) -> None:
    """Every chunk of an import is compressed columns, not rows: kinds reach the writer as plain strings (a
    Kind member in a chunk's keys made it store the chunk as rows, about 20 times the size)."""
    src, out = tmp_path / "all.log", tmp_path / "all.pasidrec"
    src.write_text("".join(case["log"] for _, case in _cases() if case.get("format") is None) * 40)
    stats = import_log(str(src), out)
    with Recording(out) as rec:
        chunks = range(len(rec.footer["chunks"]))
        kinds = {row[1] for i in chunks for row in rec.chunk_rows(i)}
        assert stats.events > 4096 and len(chunks) > 1
        assert {"fault", "page_request", "page_response"} <= kinds
        assert all(rec.chunk_head(i).packed is not None for i in chunks)


def _write() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, GOLDEN.open("w") as f:
        for name, case in _cases():
            f.write(json.dumps({"case": name, **imported(case, Path(tmp))}, sort_keys=True) + "\n")
        MIXED.write_text(json.dumps(mixed_digests(Path(tmp)), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _write()
