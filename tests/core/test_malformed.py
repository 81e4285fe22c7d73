"""Recordings whose frames are intact but whose events are not (a writer's bug, a hand-edited file), and output
paths that cannot be written: every command answers with what it could read and one line per problem, never a
traceback, and never loses the good events."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest
from test_cli import SCENARIOS, cli

from explorer.recording import DeviceInfo, Header, RecordingWriter
from explorer.recording.framing import TAG_CHUNK, frame

GOOD_FIRST = [1000, "pasid_alloc", "d0", 1, 0, 1, "a", "t", {"path": "iommufd", "owner": "x"}]
GOOD_LAST = [3000, "pasid_free", None, 1, None, None, None, "t", {}]


def write_raw(path: Path, rows: list[Any]) -> None:
    """A recording with exactly these rows in one chunk, as a buggy writer would leave them (no checks)."""
    w = RecordingWriter(path, Header(source="test", devices=[DeviceInfo("d0", pasid_width=20)]))
    payload = msgpack.packb({"seq": 0, "t0": 0, "t1": 0, "n": len(rows), "counts": {}, "events": rows},
                            use_bin_type=True)
    w._index.append([w._offset, len(payload), 0, 0, len(rows)])
    w._write(frame(TAG_CHUNK, payload))
    w.events_written += len(rows)
    w.close()


def no_traceback(r: Any) -> None:
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("bad, problem", [
    (["x", "marker", None, None, None, None, None, "t", {}], "ts_ns is 'x'"),
    ([2000, "fault", [1], None, None, None, None, "t", {}], "device is [1]"),
    ([2000, 5, None, None, None, None, None, "t", {}], "kind is 5"),
    ([2000, "fault"], "not an event row"),
    (5, "not an event row"),
    ([1 << 63, "fault", None, None, None, None, None, "t", {}], "does not fit in 64 bits"),
])
def test_a_malformed_row_is_one_lost_event_named_by_place(tmp_path: Path, bad: Any, problem: str) -> None:
    path = tmp_path / "bad.pasidrec"
    write_raw(path, [GOOD_FIRST, bad, GOOD_LAST])
    r = cli("check", str(path), "--json")
    no_traceback(r)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert [a["kind"] for a in report["anomalies"]] == ["events_lost"]
    damage = " ".join(report["damage"])
    assert "chunk 0, event 1" in damage and problem in damage and "byte " in damage
    info = json.loads(cli("info", str(path), "--json").stdout)
    assert info["events"] == 3 and info["by_kind"]["pasid_alloc"] == 1 and info["by_kind"]["pasid_free"] == 1
    for to in ("jsonl", "csv", "perfetto", "chrome-json"):
        out = tmp_path / f"out.{to}"
        e = cli("export", str(path), "--to", to, "-o", str(out))
        no_traceback(e)
        assert e.returncode == 0 and out.stat().st_size > 0


def test_an_event_missing_a_field_the_model_needs_is_refused_where_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "noprg.pasidrec"
    request = [2000, "page_request", "d0", 1, None, None, None, "t", {"addr": 4096}]
    list_fields = [2500, "page_response", "d0", 1, None, None, None, "t", [1, 2]]
    write_raw(path, [GOOD_FIRST, request, list_fields, GOOD_LAST])
    r = cli("check", str(path), "--json")
    no_traceback(r)
    report = json.loads(r.stdout)
    found = report["anomalies"]
    assert [a["kind"] for a in found] == ["events_lost", "events_lost"]
    assert "page_request lacks its field 'prg'" in found[0]["explanation"]
    assert "state is uncertain" in found[0]["explanation"] and found[1]["severity"] == "uncertain"
    assert "byte 141: chunk 0, event 2: fields is [1, 2], a list; read as one lost event" in report["damage"]
    e = cli("export", str(path), "--to", "jsonl", "-o", "-")
    no_traceback(e)
    kinds = [json.loads(line)["kind"] for line in e.stdout.splitlines()]
    assert kinds == ["pasid_alloc", "lost", "lost", "pasid_free"]  # refused rows are losses at their place
    assert "chunk 0, event 2: fields is [1, 2], a list; read as one lost event" in e.stderr
    for to, extra in (("csv", ["--anomalies"]), ("jsonl", ["--anomalies"]), ("perfetto", []), ("chrome-json", [])):
        e = cli("export", str(path), "--to", to, "-o", str(tmp_path / f"out.{to}"), *extra)
        no_traceback(e)  # every format and source refuses the row the same way
        assert e.returncode == 0 and "chunk 0, event 2: fields is [1, 2], a list" in e.stderr, (to, e.stderr)


@pytest.mark.parametrize("command", ["export", "simulate", "generate"])
def test_unwritable_outputs_are_one_line_errors(tmp_path: Path, command: str) -> None:
    src = str(SCENARIOS["01-two-processes-one-device"].recording_path)
    yaml = str(SCENARIOS["01-two-processes-one-device"].yaml_path)
    args = {"export": ["export", src, "--to", "jsonl", "-o"], "simulate": ["simulate", yaml, "-o"],
            "generate": ["generate", "--events", "10", "-o"]}[command]
    for out, words in ((tmp_path, "directory"), (tmp_path / "missing" / "x", "no such folder")):
        r = cli(*args, str(out))
        no_traceback(r)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert str(out) in r.stderr and words.lower() in r.stderr.lower()
    assert not (tmp_path / "missing").exists()  # a missing folder is reported, not made


def test_export_to_a_device_writes_to_it_and_leaves_it_a_device() -> None:
    r = cli("export", str(SCENARIOS["01-two-processes-one-device"].recording_path), "--to", "jsonl", "-o", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)


def test_check_of_a_recording_with_nothing_readable_is_exit_2_not_clean(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pasidrec"
    cut.write_bytes(SCENARIOS["04-page-request-groups"].recording_path.read_bytes()[:2000])  # inside chunk 0
    r = cli("check", str(cut))
    no_traceback(r)
    assert r.returncode == 2 and "nothing readable" in r.stdout and "clean" not in r.stdout
    assert "cut short" in r.stderr


def test_a_malformed_key_is_repaired_every_time_it_comes_not_only_the_first() -> None:
    from explorer.index import RecordingIndex

    idx = RecordingIndex(Header(source="test", devices=[DeviceInfo("d0", pasid_width=20)]))
    bad = [2000, 7, None, None, None, None, None, "t", {}]
    idx.add_rows([GOOD_FIRST, bad])
    idx.add_rows([[2500, *bad[1:]], GOOD_LAST])
    assert idx.damage == ["live batch, event 1: kind is 7, a int; read as one lost event",
                          "live batch, event 2: kind is 7, a int; read as one lost event"]
    assert [idx.kind_names[k] for k in idx.kinds.tolist()] == ["pasid_alloc", "lost", "lost", "pasid_free"]
