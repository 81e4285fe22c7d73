"""Untrusted text (process names, device names, log lines, titles) never reaches the terminal or a spreadsheet as
control sequences or formulas, and JSON stays JSON: what the audit of issue 16 injected through `comm`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hostile_files import ESCAPES, GOOD, RAW_CONTROLS, write_crafted, write_injecting

from explorer.cli.main import main
from explorer.events import Event
from explorer.export.table import COLUMNS


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["check"], ["check", "--json"],
                                     ["export", "--to", "csv", "-o", "-"], ["export", "--to", "jsonl", "-o", "-"],
                                     ["export", "--to", "chrome-json", "-o", "-"]])
def test_no_control_character_from_the_input_reaches_stdout_or_stderr(tmp_path: Path, command: list[str],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_injecting(tmp_path / "inject.pasidrec")
    status, out, err = run([command[0], str(path), *command[1:]], capsys)
    assert status in (0, 1), err
    for c in RAW_CONTROLS:
        assert c not in out and c not in err, (command, c)
    if command == ["check"]:
        assert "\\x1b]0;pwned\\x07" in out  # shown escaped, not dropped: the reader sees what the process did


def test_a_csv_export_neutralises_formulas_and_controls_and_keeps_every_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_injecting(tmp_path / "inject.pasidrec")
    out = tmp_path / "out.csv"
    assert run(["export", str(path), "--to", "csv", "-o", str(out)], capsys)[0] == 0
    data = out.read_bytes().decode()
    assert not any(c in data for c in RAW_CONTROLS)
    cells = [c for row in csv.reader(io.StringIO(data)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@") or (c.startswith("-") and not c.lstrip("-").isdigit())]
    assert "'" + ESCAPES["formula"] in cells  # quoted, not lost


def test_a_field_named_like_a_common_one_neither_overrides_it_nor_vanishes(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    row = [9000, "newer_kind", None, None, None, None, None, "t", {"kind": "fake", "device": "d9", "extra": 1,
                                                                 "ratio": float("nan"), "inf": float("inf")}]
    path = write_crafted(tmp_path / "clash.pasidrec", [GOOD + [row]])
    _, out, _ = run(["export", str(path), "--to", "jsonl", "-o", "-"], capsys)
    last = json.loads(out.splitlines()[-1], parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert last["kind"] == "newer_kind" and last["device"] is None
    assert last["extra"] == {"kind": "fake", "device": "d9", "extra": 1}
    assert last["ratio"] == "nan" and last["inf"] == "inf"
    _, out, _ = run(["export", str(path), "--to", "csv", "-o", "-"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[-1]["kind"] == "newer_kind" and json.loads(rows[-1]["extra"])["kind"] == "fake"
    assert list(rows[-1]) == COLUMNS
    assert Event.from_row(row).as_dict()["extra"]["device"] == "d9"
