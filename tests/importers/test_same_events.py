"""Every fixture case imports to the very rows it imported to when golden/fixture_events.jsonl was written: every
field of every event, the footer's import statistics and the device table. test_fixtures checks the fields a case
names; this catches any other change, such as a speed-up of the importers that reads one line differently.

After a deliberate change of what an import makes, rewrite the file (and review its diff):
    PYTHONPATH=. python tests/importers/test_same_events.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from explorer.importers import import_log
from explorer.recording import Recording

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden" / "fixture_events.jsonl"


def _cases() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.stem}: {case['name']}", case) for path in sorted(FIXTURES.glob("*.yaml"))
            for case in yaml.safe_load(path.read_text())["cases"]]


def imported(case: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """What a case imports to, as JSON values."""
    src, out = tmp / "posted.log", tmp / "out.pasidrec"
    src.write_text(case["log"])
    stats = import_log(str(src), out, fmt=case.get("format"))
    with Recording(out) as rec:
        got = {"rows": list(rec.iter_rows()), "import": stats.footer(),
               "devices": sorted([d.name, d.driver] for d in rec.devices)}
    return json.loads(json.dumps(got))


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


if __name__ == "__main__":
    _write()
