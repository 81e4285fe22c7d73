"""Exports carry every event and field, and the Chrome JSON trace obeys the Chrome JSON trace format's rules."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from explorer.events import COMMON_FIELDS, KINDS, Event
from explorer.export import export
from explorer.export.table import COLUMNS
from explorer.importers import import_log
from explorer.intervals import IntervalKind
from explorer.loading import open_index
from explorer.recording import Recording

ROOT = Path(__file__).parents[2]
SCENARIOS = sorted((ROOT / "recordings" / "scenarios").glob("*.yaml"))
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording imported from real logs of all three vendors."""
    d = tmp_path_factory.mktemp("imp")
    import yaml

    logs = []
    for name in ("intel_dmar", "amd_vi", "arm_smmu"):
        for case in yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())["cases"]:
            if case.get("clock") not in ("line", "wall"):
                logs.append(case["log"])
    src = d / "mixed.log"
    src.write_text("".join(logs))
    out = d / "mixed.pasidrec"
    import_log(str(src), out)
    return out


def _events(path: Path) -> list[Event]:
    if path.suffix == ".yaml":
        idx = open_index(path)
        return [idx.event(i) for i in range(idx.n)]
    with Recording(path) as rec:
        return list(rec.iter_events())


@pytest.mark.parametrize("source", ["imported", *SCENARIOS[:3]], ids=lambda p: getattr(p, "name", p))
def test_jsonl_round_trip_names_every_field(source: Any, imported: Path, tmp_path: Path) -> None:
    path = imported if source == "imported" else source
    out = tmp_path / "e.jsonl"
    n = export(str(path), "jsonl", str(out))
    lines = out.read_text().splitlines()
    events = _events(path)
    assert n == len(lines) == len(events) > 0
    for line, ev in zip(lines, events, strict=True):
        assert json.loads(line) == json.loads(json.dumps(ev.as_dict()))


def test_csv_has_a_fixed_column_per_field_and_loses_nothing(imported: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    export(str(imported), "csv", str(out))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == COLUMNS
    assert COLUMNS[:len(COMMON_FIELDS)] == list(COMMON_FIELDS)
    assert {f.name for spec in KINDS.values() for f in spec} <= set(COLUMNS)
    events = _events(imported)
    assert len(rows) == len(events)
    for row, ev in zip(rows, events, strict=True):
        assert int(row["ts_ns"]) == ev.ts_ns and row["kind"] == ev.kind and row["device"] == (ev.device or "")
        for k, v in ev.fields.items():
            assert row[k] == (str(v).lower() if isinstance(v, bool) else str(v)), k  # multi-line raw survives
        # the fixtures' logs come from several boots, each kept as a machine (importers/boots.py): its number is
        # the one value without a column of its own
        assert row["extra"] == (json.dumps({"machine": ev.machine}, separators=(",", ":")) if ev.machine else "")


# -- Perfetto / Chrome JSON trace format ---------------------------------------------------------------------
REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "i": {"name", "ph", "ts", "pid", "tid", "s"},
            "b": {"name", "cat", "ph", "ts", "pid", "id"}, "e": {"name", "cat", "ph", "ts", "pid", "id"},
            "M": {"name", "ph", "pid", "args"}}


def validate_chrome_trace(doc: dict[str, Any]) -> dict[str, Any]:
    """The format's rules (Trace Event Format doc): what each phase needs, numeric times, named tracks, slices
    that nest on their thread, async begin/end pairs that match. Returns facts for further checks."""
    assert isinstance(doc["traceEvents"], list)
    named_pids, named_tids = set(), set()
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    async_open: dict[tuple[str, int], float] = {}
    phases: dict[str, int] = defaultdict(int)
    for ev in doc["traceEvents"]:
        ph = ev["ph"]
        phases[ph] += 1
        assert ph in REQUIRED, ph
        missing = REQUIRED[ph] - ev.keys()
        assert not missing, (missing, ev)
        assert isinstance(ev["pid"], int) and isinstance(ev.get("tid", 0), int)
        if ph == "M":
            assert ev["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
            if ev["name"] == "process_name":
                named_pids.add(ev["pid"])
            if ev["name"] == "thread_name":
                named_tids.add((ev["pid"], ev["tid"]))
            continue
        assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
        if ph == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
            slices[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
        elif ph == "i":
            assert ev["s"] in ("g", "p", "t")
        elif ph == "b":
            key = (ev["cat"], ev["id"])
            assert key not in async_open, f"async slice {key} begun twice"
            async_open[key] = ev["ts"]
        elif ph == "e":
            key = (ev["cat"], ev["id"])
            assert key in async_open and async_open.pop(key) <= ev["ts"], f"async end {key} without begin"
    assert not async_open, f"async slices never ended: {list(async_open)}"
    for track, spans in slices.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[float] = []
        for start, end in spans:  # complete events on one thread nest or follow each other
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1], f"slices overlap without nesting on {track}"
            stack.append(end)
    used = {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["ph"] in "Xi"}
    assert {p for p, _ in used} <= named_pids and used <= named_tids, "every track is named"
    return {"phases": dict(phases), "pids": named_pids}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_chrome_json_trace_of_each_scenario_follows_the_format(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    export(str(scenario), "chrome-json", str(out))
    doc = json.loads(out.read_text())
    facts = validate_chrome_trace(doc)
    idx = open_index(scenario)
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert names == {"PASID allocator", *idx.device_names()}
    anomalies = [e for e in doc["traceEvents"] if e.get("cat", "").startswith("anomaly")]
    assert len(anomalies) == len(idx.anomalies)
    model = sorted((iv.pasid, iv.start_ns) for iv in idx.intervals.of(IntervalKind.LIFETIME))
    lifetimes = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "pasid"]
    tid_pasid = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert sorted((int(tid_pasid[(e["pid"], e["tid"])].split()[1]), e["ts"]) for e in lifetimes) == \
        [(p, (t - idx.start_ns) / 1000) for p, t in model], "one lifetime slice per lifetime the model found"
    assert facts["phases"].get("M")


def test_chrome_json_page_request_groups_span_request_to_response(tmp_path: Path) -> None:
    scenario = next(p for p in SCENARIOS if "page-request" in p.stem)
    out = tmp_path / "t.json"
    export(str(scenario), "chrome-json", str(out))
    doc = json.loads(out.read_text())
    idx = open_index(scenario)
    t0 = idx.start_ns
    requests = [idx.event(i) for i in range(idx.n) if idx.event(i).kind == "page_request"]
    responses = [idx.event(i) for i in range(idx.n) if idx.event(i).kind == "page_response"]
    begins = [e for e in doc["traceEvents"] if e["ph"] == "b"]
    ends = {e["id"]: e for e in doc["traceEvents"] if e["ph"] == "e"}
    first = {}
    for r in requests:
        first.setdefault((r.device, r.pasid, r.get("prg")), r)
    assert len(begins) == len(first) > 0
    answered = {(r.device, r.pasid, r.get("prg")): r for r in responses}
    for b in begins:
        key = next(k for k, r in first.items() if (r.ts_ns - t0) / 1000 == b["ts"])
        end = ends[b["id"]]
        if key in answered:
            assert end["ts"] == (answered[key].ts_ns - t0) / 1000 and end["args"]["code"] == answered[key].get("code")
        else:
            assert end["args"]["unanswered"] is True


def test_chrome_json_trace_of_an_import_shows_faults_per_device(imported: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    export(str(imported), "chrome-json", str(out))
    doc = json.loads(out.read_text())
    validate_chrome_trace(doc)
    faults = [e for e in doc["traceEvents"] if e.get("cat") == "fault"]
    events = _events(imported)
    assert len(faults) == sum(1 for e in events if e.kind == "fault")
    pid_name = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert {pid_name[f["pid"]] for f in faults} == {e.device or "PASID allocator" for e in events}
    assert all(f["name"].startswith("fault: ") and f["args"].get("reason") for f in faults)


def test_export_to_stdout_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.cli.main import main

    scenario = SCENARIOS[0]
    assert main(["export", str(scenario), "--to", "jsonl", "-o", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == open_index(scenario).n and json.loads(out[0])["kind"]
    bad = tmp_path / "notes.txt"
    bad.write_text("not a recording\n")
    target = tmp_path / "keep.csv"
    target.write_text("precious\n")
    assert main(["export", str(bad), "--to", "csv", "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and len(err.splitlines()) == 1
    assert target.read_text() == "precious\n", "a failed export leaves the old file alone"
