"""One interpreter of events: the model's intervals are the story every view tells (timeline bars, Perfetto
export, `check`, the event panel), and they are exactly the records the model holds at every time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from explorer.cli.main import main
from explorer.events import Kind, make
from explorer.export.chrome_json import write_chrome_json
from explorer.index import RecordingIndex
from explorer.intervals import Interval, IntervalKind
from explorer.loading import open_index
from explorer.recording import DeviceInfo, Header, Recording, write_events
from explorer.tui.event_panel import interval_lines
from explorer.tui.spans import GROUP, GROUP_STALE, Spans
from explorer.workload import write_workload

ROOT = Path(__file__).parents[2]
SCENARIOS = sorted((ROOT / "recordings" / "scenarios").glob("*.yaml"))
DEV = "0000:6a:01.0"


@pytest.fixture
def answered_without_pasid(tmp_path: Path) -> Path:
    """The architecture review's P1: a group whose requests say the response need not carry the PASID, answered
    by a response without one (as the kernel records IOMMU_PASID_INVALID). The kernel's rule
    (drivers/iommu/io-pgfault.c, iommu_page_response() in Linux 6.18: a response matches on the PRG index
    unless the group needs its PASID) answers it; the end marker lies far past the stale threshold."""
    events = [
        make(Kind.PASID_ALLOC, 1_000, pasid=5, path="sva", owner="pid 1 (a)", mm=1),
        make(Kind.PASID_ATTACH, 2_000, device=DEV, pasid=5, domain=7, domain_type="sva"),
        make(Kind.PAGE_REQUEST, 3_000, device=DEV, pasid=5, prg=3, addr=0x1000, perm=1, last=True,
             needs_pasid=False),
        make(Kind.PAGE_RESPONSE, 4_000, device=DEV, prg=3, code=0, by="kernel"),
        make(Kind.MARKER, 900_000_000, text="end"),
    ]
    path = tmp_path / "p1.pasidrec"
    write_events(path, Header(source="test", devices=[DeviceInfo(DEV, pasid_width=20)]), events)
    return path


def test_a_response_matched_by_group_index_alone_closes_the_group_in_every_view(
        answered_without_pasid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = RecordingIndex.build(Recording(answered_without_pasid))
    # the model and its store: answered by event 3, one microsecond after it opened
    assert idx.anomalies == [] and not idx.state_at(idx.end_ns).groups
    (group,) = idx.intervals.of(IntervalKind.GROUP)
    assert (group.start_ns, group.end_ns, group.open_idx, group.close_idx) == (3_000, 4_000, 2, 3)
    # the timeline: a bar from request to response, never red
    spans = Spans(idx)
    spans.update()
    bars = spans.of((DEV, 5))
    groups = [(s, e) for s, e, st in bars.rows().tolist() if st in (GROUP, GROUP_STALE)]
    assert groups == [(3_000, 4_000)] and GROUP_STALE not in bars.rows()[:, 2].tolist()
    # the Perfetto export: the group ends at the response, answered
    out = io.StringIO()
    write_chrome_json(idx, out)
    ends = [e for e in json.loads(out.getvalue())["traceEvents"] if e.get("ph") == "e"]
    assert [(e["ts"], e["args"].get("unanswered"), e["args"]["code"], e["args"]["closed_by"]) for e in ends] == \
        [(3.0, None, 0, 3)]
    # check: clean, and it says no group is outstanding at the end
    assert main(["check", str(answered_without_pasid)]) == 0
    assert "1 page-request group (0 outstanding at the end)" in capsys.readouterr().out
    assert main(["check", str(answered_without_pasid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intervals"]["outstanding_groups"] == []
    # the event panel: the response says which group it closed
    assert interval_lines(idx, 3) == [f"closes PRG 3 on {DEV}, open since #2 1.0 µs earlier"]


def test_check_json_lists_every_group_outstanding_at_the_end_as_strict_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --json` writes the outstanding groups one at a time (a million would not fit as objects): the list is
    still every group the model holds open at the end, in one document that parses, whatever a hostile device name
    or comm holds, a forged placeholder for the list included."""
    hostile = "0000:6a:02.0 \x00deadbeef-0\x00 ]}\x1b]0;x\x07"
    events = [make(Kind.PASID_ALLOC, 1_000, pasid=5, path="sva", owner="pid 1 (\x00a-0\x00)", mm=1)]
    events += [make(Kind.PAGE_REQUEST, 2_000 + i, device=dev, pasid=5, prg=i, addr=0x1000, perm=1, last=True)
               for i, dev in enumerate([DEV, hostile, DEV])]
    path = tmp_path / "open.pasidrec"
    write_events(path, Header(source="test", devices=[DeviceInfo(DEV, pasid_width=20)]), events)
    main(["check", str(path), "--json", "--stale-ms", "1000"])
    report = json.loads(capsys.readouterr().out)
    assert sorted((g["device"], g["prg"], g["since_ns"]) for g in report["intervals"]["outstanding_groups"]) == \
        [(DEV, 0, 2_000), (DEV, 2, 2_002), (hostile, 1, 2_001)]
    assert report["intervals"]["group"] == {"total": 3, "open_at_end": 3}


def _records_at(idx: RecordingIndex, t: int) -> dict[tuple[IntervalKind, object], object]:
    st = idx.state_at(t)
    maps = ((IntervalKind.LIFETIME, st.pasids), (IntervalKind.ATTACHMENT, st.attachments),
            (IntervalKind.BIND, st.binds), (IntervalKind.GROUP, st.groups))
    return {(kind, key): (rec.since_ns, rec.idx) if kind != IntervalKind.GROUP else (rec.first_ns, rec.first_idx)
            for kind, m in maps for key, rec in m.items()}


@pytest.mark.parametrize("source", [*SCENARIOS, "workload"], ids=lambda p: getattr(p, "stem", p))
def test_the_open_intervals_at_any_time_are_the_models_state_there(source: object, tmp_path: Path) -> None:
    """Every interval the store holds open at a time is a record of the model's state at that time, and every
    record is one: whatever rules the simulator follows, the store cannot tell another story."""
    if source == "workload":
        path = tmp_path / "w.pasidrec"
        write_workload(str(path), 20_000, seed=5, slow_every=300, loss_every=500)
        idx = open_index(path)
    else:
        idx = open_index(source)  # type: ignore[arg-type]
    assert len(idx.intervals) > 0
    times = sorted({int(t) for t in idx.ts[:: max(1, idx.n // 60)]} | {idx.end_ns})
    for t in times:
        held = {(iv.kind, iv.key): (iv.start_ns, iv.open_idx) for iv in idx.intervals.at(t)}
        assert held == _records_at(idx, t), t
    for iv in idx.intervals:  # closed ones are rebuilt from the store's columns: each still names its own key
        assert iv.is_open or iv.start_ns <= iv.end_ns  # type: ignore[operator]
        rec = iv.record
        if iv.kind == IntervalKind.LIFETIME:
            assert iv.key == rec.pasid
        elif iv.kind == IntervalKind.GROUP:
            assert iv.key == (rec.device, rec.prg, rec.pasid)
        assert (iv.start_ns, iv.open_idx) == ((rec.first_ns, rec.first_idx) if iv.kind == IntervalKind.GROUP
                                              else (rec.since_ns, rec.idx))
    for kind in IntervalKind:  # and the columns aggregates read are the same closed intervals, in the same order
        cols = idx.intervals.closed_columns(kind)
        closed = [(iv.start_ns, iv.end_ns, iv.open_idx, iv.close_idx) for iv in idx.intervals.closed_since(0)
                  if iv.kind == kind]
        got = zip(*(c.tolist() for c in (cols.start_ns, cols.end_ns, cols.open_idx, cols.close_idx)), strict=True)
        assert list(got) == closed


def test_a_group_s_later_requests_are_known_by_the_request_that_opened_it() -> None:
    """The Perfetto export draws an arrow from every request of a group to its response: the store knows which
    events the later requests were, by the group's opening event, and only those of that group."""
    from explorer.simulator import Simulator

    req = {"device": DEV, "pasid": 5, "addr": 0x1000, "perm": 1}
    sim = Simulator(kernel="6.18").apply_all([
        make(Kind.PASID_ALLOC, 1_000, pasid=5, path="sva", owner="pid 1 (a)", mm=1),
        make(Kind.PASID_ATTACH, 2_000, device=DEV, pasid=5, domain=7, domain_type="sva"),
        make(Kind.PAGE_REQUEST, 3_000, prg=3, last=False, **req),  # 2 opens PRG 3
        make(Kind.PAGE_REQUEST, 3_100, prg=4, last=True, **req),  # 3 opens PRG 4
        make(Kind.PAGE_REQUEST, 3_200, prg=3, last=False, **req),  # 4 joins PRG 3
        make(Kind.PAGE_REQUEST, 3_300, prg=3, last=True, **req),  # 5 joins PRG 3
        make(Kind.PAGE_RESPONSE, 4_000, device=DEV, pasid=5, prg=3, code=0, by="kernel"),
        make(Kind.PAGE_REQUEST, 5_000, prg=3, last=True, **req),  # 7 opens PRG 3 again: a new group
    ])
    assert sim.anomalies == []
    ivs = sim.intervals
    assert ivs is not None
    assert (ivs.later_requests(2), ivs.later_requests(3), ivs.later_requests(7)) == ([4, 5], [], [])
    (answered,) = [iv for iv in ivs.of(IntervalKind.GROUP) if iv.close_idx is not None]
    assert (answered.open_idx, answered.close_idx, answered.record.requests) == (2, 6, 3)


def _every_view(idx: RecordingIndex) -> tuple[object, ...]:
    ivs = idx.intervals

    def fields(got: Iterable[Interval]) -> list[tuple[object, ...]]:
        return [(iv.kind, iv.key, iv.record, iv.start_ns, iv.open_idx, iv.end_ns, iv.close_idx, iv.replaced)
                for iv in got]

    columns = [[c.tolist() for c in (got.start_ns, got.end_ns, got.open_idx, got.close_idx)]
               for got in map(ivs.closed_columns, IntervalKind)]
    evidence = [[(iv.kind, iv.key, iv.start_ns) for iv in ivs.by_event(i)] for i in range(idx.n)]
    return fields(ivs), columns, evidence, ivs.counts(), fields(ivs.closed_since(ivs.closed_count - 100))


def test_closed_intervals_sealed_in_blocks_read_back_as_they_closed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The store seals its closed intervals in blocks of narrow columns: every view reads the same intervals,
    numbers, evidence and counts as from the rows they were closed as (blocks of 64 here, so that thousands
    are sealed, a reader's slices cut across them)."""
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 20_000, seed=7, slow_every=300, loss_every=500)
    first = open_index(path)
    unsealed = _every_view(first)
    named: list[list[tuple[object, ...]]] = [[] for _ in range(first.n)]  # what each event opened or closed
    for iv in first.intervals:
        for i in {iv.open_idx, iv.close_idx} - {None, -1}:
            named[i].append((iv.kind, iv.key, iv.start_ns))  # type: ignore[index]
    assert unsealed[2] == named and sum(map(len, named)) > 1_000
    from explorer import intervals

    monkeypatch.setattr(intervals, "_SLICE", 64)
    monkeypatch.setattr(intervals, "_READ", 5)
    idx = open_index(path)
    assert idx.intervals.closed_count > 64 * 20
    assert _every_view(idx) == unsealed


def test_open_lifetimes_are_listed_in_the_order_their_pasids_were_allocated(tmp_path: Path) -> None:
    """PASIDs allocated out of numerical order, some freed and allocated again: exports and `check --json` list
    the PASIDs still live in the order they became live (the newest allocation last), as the model took them."""
    order = [900_000, 7, 300, 2, 65_000, 1, 5000]
    events = [make(Kind.PASID_ALLOC, 1_000 + i, pasid=p, path="iommufd", owner="pid 1 (a)") for i, p in
              enumerate(order)]
    events += [make(Kind.PASID_FREE, 2_000, pasid=7), make(Kind.PASID_FREE, 2_001, pasid=65_000),
               make(Kind.PASID_ALLOC, 3_000, pasid=7, path="iommufd", owner="pid 2 (b)")]
    path = tmp_path / "o.pasidrec"
    write_events(path, Header(source="test", devices=[DeviceInfo(DEV, pasid_width=20)]), events)
    idx = open_index(path)
    assert [iv.key for iv in idx.intervals.open_now(kind=IntervalKind.LIFETIME)] == [900_000, 300, 2, 1, 5000, 7]
    assert [iv.key for iv in idx.intervals.open_now() if iv.kind == IntervalKind.LIFETIME] == [
        900_000, 300, 2, 1, 5000, 7]
    assert [(iv.key, iv.end_ns) for iv in idx.intervals.closed_since(0)] == [(7, 2_000), (65_000, 2_001)]
    assert not list(idx.intervals.open_now(kind=IntervalKind.GROUP))
