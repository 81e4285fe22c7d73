"""Fleets: Parquet tables that hold every event, finding and interval of a recording, typed and versioned; the
README's DuckDB query over ten recordings gives the tool's own figures; `check` over many recordings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from hostile_files import GOOD, RAW_CONTROLS, write_crafted, write_injecting
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.events import COMMON_FIELDS, Event
from explorer.export import export
from explorer.export.parquet import SCHEMA_VERSION, header_of, read_schema_version
from explorer.intervals import IntervalKind
from explorer.loading import open_index
from explorer.recording import RecordingWriter
from explorer.text import lines
from explorer.workload import generate_rows, workload_header, write_workload

ROOT = Path(__file__).parents[2]
BUNDLED = sorted((ROOT / "recordings").glob("*.pasidrec")) + sorted((ROOT / "recordings" / "lab").glob("*.pasidrec"))


def check_tables(source: Path, folder: Path) -> None:
    """The three tables say what the recording and its model say: every event with every field in its typed
    column (or in `extra`), every finding, every interval with its times and evidence."""
    idx = open_index(source)
    for t in ("events", "anomalies", "intervals"):
        assert read_schema_version(folder / f"{t}.parquet") == SCHEMA_VERSION
    assert header_of(folder / "events.parquet")["source"] == idx.header.source
    events = pq.read_table(folder / "events.parquet").to_pylist()
    assert len(events) == idx.n and [r["event"] for r in events] == list(range(idx.n))
    for r in events:
        ev: Event = idx.event(r["event"])
        assert (r["recording"], r["kernel"]) == (source.name, idx.header.host.get("kernel"))
        assert r["machine"] == idx.header.machine_table[ev.machine].name
        for name in COMMON_FIELDS:
            v = getattr(ev, name if name != "ts_ns" else "ts_ns")
            assert r[name] == (lines(v) if isinstance(v, str) else v), name
        extra = json.loads(r["extra"]) if r["extra"] else {}
        for k, v in ev.fields.items():
            got = r.get(k) if k not in extra else extra[k]
            assert got == (lines(v) if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
                           if isinstance(v, (list, dict)) and k not in extra else v), k
    found = pq.read_table(folder / "anomalies.parquet").to_pylist()
    assert sorted((r["ts_ns"], r["rule"], r["count"]) for r in found) == \
        sorted((a.ts_ns, a.rule, a.count) for a in idx.anomalies)
    rows = pq.read_table(folder / "intervals.parquet").to_pylist()
    ivs = list(idx.intervals)
    assert sorted((r["kind"], r["start_ns"], r["end_ns"], r["opened_by"], r["closed_by"]) for r in rows) == sorted(
        (str(iv.kind), iv.start_ns, iv.end_ns, iv.open_idx if iv.open_idx >= 0 else None,
         iv.close_idx if iv.close_idx is not None and iv.close_idx >= 0 else None) for iv in ivs)


@pytest.mark.parametrize("source", BUNDLED, ids=lambda p: p.name)
def test_each_bundled_recording_round_trips_through_parquet(source: Path, tmp_path: Path) -> None:
    export(str(source), "parquet", str(tmp_path / "t"))
    check_tables(source, tmp_path / "t")


@settings(max_examples=5, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(1, 10_000), n=st.integers(20, 2_000))
def test_generated_recordings_round_trip(seed: int, n: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("gen")
    write_workload(str(d / "g.pasidrec"), n, seed)
    export(str(d / "g.pasidrec"), "parquet", str(d / "t"))
    check_tables(d / "g.pasidrec", d / "t")


def test_values_a_column_cannot_hold_go_to_extra_and_text_is_neutral(tmp_path: Path) -> None:
    src = tmp_path / "odd.pasidrec"
    odd = [4500, "fault", GOOD[2][2], 1, 0, 1, "a", "t", {"addr": -5, "code": (1 << 64) - 1, "mystery": [1, 2]}]
    write_crafted(src, [[*GOOD[:4], odd, *GOOD[4:]]])
    export(str(src), "parquet", str(tmp_path / "t"))
    rows = pq.read_table(tmp_path / "t" / "events.parquet").to_pylist()
    (fault,) = [r for r in rows if r["ts_ns"] == 4500]
    assert fault["addr"] is None and fault["code"] is None
    assert json.loads(fault["extra"]) == {"addr": -5, "code": (1 << 64) - 1, "mystery": [1, 2]}
    inj = write_injecting(tmp_path / "inject.pasidrec")
    export(str(inj), "parquet", str(tmp_path / "i"))
    text = [v for t in ("events", "anomalies", "intervals")
            for r in pq.read_table(tmp_path / "i" / f"{t}.parquet").to_pylist() for v in r.values()
            if isinstance(v, str)]
    assert not any(c in v for v in text for c in RAW_CONTROLS) and any("\\x1b" in v for v in text)


# -- the README's fleet query ------------------------------------------------------------------------------------
KERNELS = ("6.6.0", "6.12.0", "6.18.0")


def write_fleet(folder: Path, n: int = 10, events: int = 3000) -> list[Path]:
    """Ten generated recordings from ten hosts on three kernels."""
    paths = []
    for i in range(n):
        h = workload_header(events, i + 1)
        h.host = {**h.host, "hostname": f"host{i}", "kernel": KERNELS[i % len(KERNELS)]}
        path = folder / f"host{i}.pasidrec"
        with RecordingWriter(path, h) as w:
            for row in generate_rows(events, i + 1):
                w.append_row(row)
        paths.append(path)
    return paths


def readme_block(marker: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\s*```{lang}\n(.*?)```", text, re.S)
    assert m, f"README has no {lang} block after <!-- {marker} -->"
    return m.group(1)


def test_the_readme_fleet_query_gives_the_tools_own_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recordings = write_fleet(tmp_path)
    monkeypatch.chdir(tmp_path)
    for p in recordings:  # as the README's loop does
        export(str(p), "parquet", f"fleet/{p.stem}")
    got = duckdb.sql(readme_block("fleet query", "sql")).fetchall()
    # the tool's own figures: per kernel, the model's page-request groups that a response answered
    durations: dict[str, list[int]] = {}
    for p in recordings:
        idx = open_index(p)
        for iv in idx.intervals.of(IntervalKind.GROUP):
            if iv.close_idx is not None and iv.close_idx >= 0 and idx.event(iv.close_idx).kind == "page_response":
                durations.setdefault(idx.header.host["kernel"], []).append(iv.end_ns - iv.start_ns)
    assert [r[0] for r in got] == sorted(durations) and len(got) == len(KERNELS)
    for kernel, answered, p50, p99, worst in got:
        d = np.array(durations[kernel])
        assert answered == len(d) > 100
        assert p50 == pytest.approx(round(np.quantile(d, 0.5) / 1e3, 1), abs=0.051)
        assert p99 == pytest.approx(round(np.quantile(d, 0.99) / 1e3, 1), abs=0.051)
        assert worst == pytest.approx(round(d.max() / 1e3, 1))


# -- check over a fleet --------------------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_check_over_a_fleet_has_a_row_each_and_a_summary_per_host_and_kernel(tmp_path: Path) -> None:
    recordings = write_fleet(tmp_path, n=3, events=500)
    buggy = tmp_path / "buggy.pasidrec"
    buggy.write_bytes((ROOT / "recordings" / "06-buggy-driver.pasidrec").read_bytes())
    recordings.append(buggy)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "damaged.pasidrec").write_bytes(recordings[0].read_bytes()[:300])
    r = cli("check", str(tmp_path), "--jobs", "2", "--json")
    assert r.returncode == 2, r.stderr  # one unreadable recording: the worst row's status
    report = json.loads(r.stdout)
    rows = {Path(x["file"]).name: x for x in report["recordings"]}
    assert set(rows) == {*(p.name for p in recordings), "damaged.pasidrec"}
    assert rows["damaged.pasidrec"]["status"] == 2 and "file ends inside" in rows["damaged.pasidrec"]["read_error"]
    for p in recordings:  # each row is what `check` of that one recording says
        one = json.loads(cli("check", str(p), "--json").stdout)
        row = rows[p.name]
        assert (row["host"], row["kernel"], row["events"]) == (one["host"].get("hostname"), one["host"]["kernel"],
                                                               one["events"])
        assert sum(row[s] for s in ("error", "warning", "uncertain")) == \
            sum(1 + a["repeats"] for a in one["anomalies"])
    by = {(g["host"], g["kernel"]): g for g in report["summary"]}
    assert by["?", "?"]["unreadable"] == 1 and by["?", "6.18"]["error"] == rows["buggy.pasidrec"]["error"] > 0
    assert set(by) == {("?", "?"), ("?", "6.18"), *((f"host{i}", KERNELS[i]) for i in range(3))}
    text = cli("check", *map(str, recordings), "--jobs", "2")
    assert text.returncode == 1  # the buggy driver's findings; nothing unreadable
    assert "summary: 4 recordings, by host and kernel" in text.stdout
    assert "Traceback" not in text.stderr


def test_check_names_an_empty_directory(tmp_path: Path) -> None:
    r = cli("check", str(tmp_path), str(tmp_path))
    assert r.returncode == 2 and "no .pasidrec recordings" in r.stderr and len(r.stderr.splitlines()) == 1


def test_the_schema_page_names_every_column_with_its_type_and_version() -> None:
    from explorer.export.parquet import SCHEMAS

    doc = (ROOT / "docs" / "parquet-schema.md").read_text()
    assert f"now **{SCHEMA_VERSION}**" in doc
    for table, schema in SCHEMAS.items():
        section = doc.split(f"## {table}.parquet")[1].split("\n## ")[0]
        documented = re.findall(r"^\| `(\w+)` \| ([\w<>:\s]+?) \|", section, re.M)
        assert documented == [(f.name, str(f.type)) for f in schema], table
