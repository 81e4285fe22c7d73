"""An import reads its input in blocks: where the blocks fall must never change what it finds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from explorer.importers import import_log, runner
from explorer.recording import Recording

FIXTURES = Path(__file__).parent / "fixtures"


def _all_fixture_logs(fmt: str | None) -> str:
    """Every fixture case of one format, one after another, as one long log."""
    parts = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            if case.get("format") == fmt and case.get("clock") != "line":
                parts.append(case["log"])
    return "".join(parts)


def _rows(path: Path) -> list[list]:
    with Recording(path) as rec:
        return sorted(rec.iter_rows(), key=lambda r: (r[0], r[1], str(r[2]), str(r[8])))


@pytest.mark.parametrize("fmt", [None, "ftrace"])
@pytest.mark.parametrize("block", [1, 7, 64, 333])
def test_block_boundaries_do_not_change_the_events(fmt: str | None, block: int, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "all.log"
    src.write_text(_all_fixture_logs(fmt))
    whole = import_log(str(src), tmp_path / "whole.pasidrec", fmt=fmt)
    monkeypatch.setattr(runner, "BLOCK", block)
    cut = import_log(str(src), tmp_path / "cut.pasidrec", fmt=fmt)
    assert whole.events > 0
    assert cut.footer() == whole.footer()
    assert _rows(tmp_path / "cut.pasidrec") == _rows(tmp_path / "whole.pasidrec")


def test_a_log_without_final_newline_keeps_its_last_line(tmp_path: Path) -> None:
    src = tmp_path / "cut.log"
    src.write_bytes(b"[    1.000000] DMAR: [DMA Write NO_PASID] Request device [00:14.0] fault addr 0x1000 "
                    b"[fault reason 0x05] PTE Write access is not set")
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert (stats.lines, stats.events) == (1, 1)
    with Recording(tmp_path / "out.pasidrec") as rec:
        (ev,) = rec.iter_events()
    assert (ev.device, ev.get("access"), ev.get("code")) == ("0000:00:14.0", "write", 5)
