"""Page-request groups settled a batch at a time from a packed chunk's columns (explorer/simulator/pages.py) leave
exactly what the handlers leave: the same findings (text, order, evidence), the same checkpoints (every map in the
same order), the same intervals, later requests and states at any seek, on the bundled recordings, generated
workloads (with losses and slow answers) and random mixes of requests, responses, attaches, detaches, unbinds,
failures, losses and rows of odd shapes. So does a model pass whose chunks a helper process read ahead
(explorer/read_ahead.py), against the same pass read here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from core.model_replay import replay
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer import index as index_module
from explorer.index import RecordingIndex
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter
from explorer.simulator import pages
from explorer.workload import write_workload

BUNDLED = sorted((Path(__file__).parents[2] / "recordings").glob("*.pasidrec"))
DEVICES = ("0000:00:01.0", "0000:00:02.0")


def _same_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Settled and handled alike, and read ahead and here alike; the chunks read ahead."""
    settled, handled = replay(path, "settled", monkeypatch), replay(path, "handled", monkeypatch)
    here, ahead = replay(path, "here", monkeypatch), replay(path, "ahead", monkeypatch)
    read_ahead = ahead.pop("read ahead")
    for part in handled:
        assert settled[part] == handled[part], part
        assert part == "read ahead" or here[part] == ahead[part], part
    return read_ahead


def _settles_some(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many groups the settling took (so that a test cannot pass by settling nothing)."""
    took = [0]
    fresh = pages._Batch.fresh  # noqa: SLF001 (called once a batch, when every group was asked)

    def counting(self: Any) -> None:
        fresh(self)
        took[0] += int(self.ok.sum()) if self.n else 0

    with monkeypatch.context() as m:
        m.setattr(pages._Batch, "fresh", counting)  # noqa: SLF001
        RecordingIndex.build(Recording(path))
    return took[0]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_a_bundled_recording_models_the_same_with_groups_settled(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "_FEW", 1)
    _same_both_ways(path, monkeypatch)


@pytest.mark.parametrize("seed, slow_every, loss_every", [(1, 0, 0), (2, 30, 0), (3, 200, 40), (4, 7, 9)])
def test_a_generated_workload_models_the_same_with_groups_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, slow_every: int, loss_every: int) -> None:
    monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", 700)
    monkeypatch.setattr(index_module, "FULL_COPY_AFTER", 900)
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=seed, slow_every=slow_every, loss_every=loss_every)
    assert _settles_some(path, monkeypatch) > 100
    assert _same_both_ways(path, monkeypatch) == len(Recording(path).chunks) - 1  # (the first read as it starts)


def test_answers_fill_their_generations_as_the_handlers_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answers remembered to tell a duplicate response from a stray one (`SimState.answered`, two generations of
    ANSWERS_KEPT keys) are written a run of settled groups at a time: the generation fills and turns at the same key
    as when the handlers write them one by one, held keys written in place (a few dozen kept here: a batch's answers
    turn it many times over, recurring keys among them)."""
    from explorer.simulator import engine

    for module in (pages, engine):
        monkeypatch.setattr(module, "ANSWERS_KEPT", 37)
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=5, slow_every=50)
    assert _settles_some(path, monkeypatch) > 100
    _same_both_ways(path, monkeypatch)


OPS = st.lists(st.tuples(
    st.sampled_from(["request", "request", "response", "pair", "pair", "pair", "pair", "attach", "detach", "lost",
                     "group_add", "odd_request", "odd_response", "unbind", "uapi", "uapi", "uapi"]),
    st.integers(0, 1), st.integers(1, 2), st.integers(0, 1), st.integers(0, 2), st.integers(1, 400)),
    min_size=20, max_size=200)


_CMD = 15237
CALLS: tuple[dict[str, Any], ...] = (  # iommufd calls: only counted, or making or ending an object (the handler's)
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": 0, "args": {"iova": 1 << 40, "size": 40}},
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": 0, "args": {"iova": 4096, "size": 40}},
    {"cmd": _CMD, "name": "IOMMU_IOAS_UNMAP", "ret": -1},
    {"cmd": _CMD, "name": "IOMMU_IOAS_ALLOC", "ret": 0, "args": {"out_ioas_id": 2}},
    {"cmd": _CMD, "name": "IOMMU_IOAS_ALLOC", "ret": -22, "args": {"out_ioas_id": 2}},
    {"cmd": _CMD, "name": "IOMMU_DESTROY", "ret": 0, "args": {"id": 2}},
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "fd": 3},  # no return value: counted as 0
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": None, "args": {"iova": [1, "x"]}},  # nil; a list in the args
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": (1 << 64) - 1},  # past an int64
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": 0, "args": {"path": "\u00e9t\u00e9"}},  # text not ASCII
    {"cmd": _CMD, "name": 7, "ret": 0},  # a name that is no text: refused, a loss
    {"cmd": _CMD, "name": "IOMMU_IOAS_MAP", "ret": 0, "args": {1: 2}},  # args named by a number: refused
)


def _mix(path: Path, ops: list[tuple[str, int, int, int, int, int]]) -> None:
    """Requests (Last or not), responses (success, invalid, failure), attaches and detaches (which drain), unbinds,
    losses, re-probes, iommufd calls of several processes (`CALLS`), and rows of odd shapes (no PASID, needs_pasid
    off, a PRG index that is a bool, text where a number goes), some answered late; in chunks of 37 rows."""
    header = Header(source="test", devices=[DeviceInfo(d, 20, True, True, "t") for d in DEVICES])
    ts = 1_000
    pending: list[list[Any]] = []
    with RecordingWriter(path, header, chunk_events=37) as w:
        for d, pasid in ((0, 1), (0, 2), (1, 1), (1, 2)):  # (every pair attached at first: most groups settle)
            w.append_row([ts, "pasid_attach", DEVICES[d], pasid, 0, 1, "q", "t",
                          {"domain": 3, "domain_type": "sva" if pasid == 1 else "nested"}])
        for op, d, pasid, prg, n, gap in ops:
            ts += gap * (1_000_000 if gap > 390 else 1_000)  # (now and then past the 100 ms threshold)
            dev = DEVICES[d]
            row: list[Any] = [ts, "page_request", dev, pasid, 0, None, None, "t",
                              {"prg": prg, "addr": 4096, "perm": 1, "last": n != 1, "needs_pasid": True}]
            if op == "pair":  # a request, and its answer after the next row
                w.append_row(row)
                pending.append([ts + 1, "page_response", dev, pasid, 0, None, None, "t",
                                {"prg": prg, "code": n, "by": "kernel"}])
                continue
            if op == "response":
                row = [ts, "page_response", dev, pasid, 0, None, None, "t", {"prg": prg, "code": n, "by": "user"}]
            elif op == "attach":
                row = [ts, "pasid_attach", dev, pasid, 0, 1, "q", "t",
                       {"domain": 3, "domain_type": ("sva", "paging", "nested")[n]}]
            elif op == "detach":
                row = [ts, "pasid_detach", dev, pasid, 0, 1, "q", "t", {}]
            elif op == "unbind":
                row = [ts, "sva_unbind", dev, pasid, 0, 1, "q", "t", {"mm": 7}]
            elif op == "lost":
                row = [ts, "lost", None, None, 0, None, None, "t", {"count": 1}]
            elif op == "group_add":
                row = [ts, "group_add", dev, None, 0, None, None, "t", {"group": 1}]
            elif op == "uapi":
                row = [ts, "uapi", None, None, 0, 4 + pasid, "q", "t", CALLS[d * 6 + prg * 3 + n]]
            elif op == "odd_request":
                row = [ts, "page_request", dev, (None, pasid, pasid)[n], 0, None, None, "t",
                       {"prg": (True, prg, "x")[n], "addr": 0, "needs_pasid": n != 2}]
            elif op == "odd_response":
                row = [ts, "page_response", dev, (None, pasid, pasid)[n], 0, None, None, "t",
                       {"prg": prg, "code": (0, "x", 1.5)[n]}]
            w.append_row(row)
            while pending:
                late = pending.pop(0)
                late[0] = ts = ts + 1
                w.append_row(late)


@given(OPS, st.booleans())
@settings(max_examples=120)
def test_a_random_mix_models_the_same_with_groups_settled(ops: list[tuple[str, int, int, int, int, int]],
                                                          coarse: bool) -> None:
    """`coarse`: any detach or unbind between a group's rows fails it (as with many of both in a batch)."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(pages, "_FEW", 1)
        monkeypatch.setattr(pages, "_PAIRS_COMPARED", 0 if coarse else pages._PAIRS_COMPARED)  # noqa: SLF001
        monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", 24)
        monkeypatch.setattr(index_module, "FULL_COPY_AFTER", 30)
        monkeypatch.setattr("explorer.recording.fieldmaps.MIN_GROUP", 2)
        path = Path(tmp) / "mix.pasidrec"
        _mix(path, ops)
        _same_both_ways(path, monkeypatch)


def test_a_settled_group_still_lowers_the_aging_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group settled early in a batch that spans the threshold, and another answered by the handlers later: the
    aging at the batch's end scans the groups as the handlers' bound says it must (the state's bound after it is
    part of every checkpoint)."""
    monkeypatch.setattr(pages, "_FEW", 1)
    monkeypatch.setattr("explorer.recording.fieldmaps.MIN_GROUP", 2)
    path = tmp_path / "bound.pasidrec"
    header = Header(source="test", devices=[DeviceInfo(d, 20, True, True, "t") for d in DEVICES])
    ms = 1_000_000
    with RecordingWriter(path, header, chunk_events=6) as w:
        w.append_row([ms, "pasid_attach", DEVICES[0], 1, 0, 1, "q", "t", {"domain": 3, "domain_type": "sva"}])
        for at, dev, pasid in ((2 * ms, DEVICES[0], 1), (3 * ms, DEVICES[1], 5), (130 * ms, DEVICES[0], 1),
                               (260 * ms, DEVICES[1], 5)):  # (the first two the devices' first; the last unattached)
            w.append_row([at, "page_request", dev, pasid, 0, None, None, "t", {"prg": 1, "addr": 0, "last": True}])
            w.append_row([at + 1, "page_response", dev, pasid, 0, None, None, "t", {"prg": 1, "code": 0}])
            if at == 3 * ms:
                w.append_row([120 * ms, "lost", None, None, 0, None, None, "t", {"count": 1}])  # (chunk one ends)
        w.append_row([270 * ms, "lost", None, None, 0, None, None, "t", {"count": 1}])
    assert _settles_some(path, monkeypatch) == 1
    _same_both_ways(path, monkeypatch)


def test_a_group_settled_after_one_refused_is_noted_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group on a PASID with no domain is refused when asked, and the handlers run its rows in their place;
    a group settled after it opened after it too, so the state notes it after the refused one, and both open
    again later: a seek lists the open groups in the order the model holds them (found by review)."""
    path = tmp_path / "order.pasidrec"
    dev = DEVICES[0]
    with RecordingWriter(path, Header(source="test", devices=[DeviceInfo(dev, 20, True, True, "t")]),
                         chunk_events=40) as w:
        rows: list[tuple[str, int | None, dict[str, Any]]] = [
            ("pasid_attach", 1, {"domain": 3, "domain_type": "sva"}),
            ("page_request", 1, {"prg": 9, "addr": 0, "last": True}), ("page_response", 1, {"prg": 9, "code": 0}),
            *[("map", None, {"iova": 0, "paddr": 0, "size": 4096})] * 37]
        for prg in range(10, 18):  # plain groups: enough page rows in the chunk to settle
            rows += [("page_request", 1, {"prg": prg, "addr": 0, "last": True}),
                     ("page_response", 1, {"prg": prg, "code": 0})]
        rows += [("page_request", 3, {"prg": 1, "addr": 0, "last": True}),  # PASID 3 has no domain: refused
                 ("page_request", 1, {"prg": 2, "addr": 0, "last": True}),  # settled
                 ("page_response", 1, {"prg": 2, "code": 0}),
                 ("page_response", 3, {"prg": 1, "code": 1, "by": "kernel"}),
                 ("pasid_attach", 2, {"domain": 3, "domain_type": "sva"}),  # a handler's row: the groups asked here
                 *[("map", None, {"iova": 0, "paddr": 0, "size": 4096})] * 18,
                 ("page_request", 3, {"prg": 1, "addr": 0, "last": True}),  # both keys open again, unanswered
                 ("page_request", 1, {"prg": 2, "addr": 0, "last": True}),
                 *[("map", None, {"iova": 0, "paddr": 0, "size": 4096})] * 1320]
        for n, (kind, pasid, fields) in enumerate(rows):
            w.append_row([2000 + 1000 * n, kind, dev, pasid, 0, None, None, "t", fields])
    assert _settles_some(path, monkeypatch) > 0
    _same_both_ways(path, monkeypatch)
    idx = RecordingIndex.build(Recording(path))
    assert [(g.prg, g.pasid) for g in idx.state_at(idx.end_ns).groups.values()] == [(1, 3), (2, 1)]


def test_a_batch_past_four_billion_events_links_its_later_requests_to_their_events(tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch
                                                                                    ) -> None:
    """The index numbers events up to 2^40 (IDX_BITS), while a chunk's positions are uint32: the links from a settled
    group's later requests to their events were summed in uint32, an OverflowError past 2^32 (and wrong numbers
    near it), where the handlers count in Python ints."""
    import numpy as np

    from explorer.read_ahead import read_pages
    from explorer.recording import fieldmaps
    from explorer.simulator.engine import Simulator

    monkeypatch.setattr(pages, "_FEW", 1)
    monkeypatch.setattr(fieldmaps, "MIN_GROUP", 2)  # (so few rows get a layout of their own: read as columns)
    dev, path = "0000:00:01.0", tmp_path / "g.pasidrec"
    rows: list[list[Any]] = [[1000, "pasid_attach", dev, 1, 0, 1, "q", "t", {"domain": 3, "domain_type": "sva"}]]
    for prg in range(1, 30):  # groups of two requests, answered at once
        t = 2000 + 30 * prg
        rows += [[t, "page_request", dev, 1, 0, None, None, "t", {"prg": prg, "addr": 0, "last": False}],
                 [t + 10, "page_request", dev, 1, 0, None, None, "t", {"prg": prg, "addr": 4096, "last": True}],
                 [t + 20, "page_response", dev, 1, 0, None, None, "t", {"prg": prg, "code": 0}]]
    header = Header(source="test", devices=[DeviceInfo(dev, 20, True, True, "t")])
    with RecordingWriter(path, header) as w:
        for row in rows:
            w.append_row(row)
    stateful = np.arange(len(rows), dtype=np.uint32)
    sim = Simulator(header.devices)
    sim.apply_row(rows[0], 0)
    for row in ([1100, "page_request", dev, 1, 0, None, None, "t", {"prg": 500, "addr": 0, "last": True}],
                [1200, "page_response", dev, 1, 0, None, None, "t", {"prg": 500, "code": 0}]):
        sim.apply_row(row, 0)  # (a group's answer before the batch: the device has a code in the state's table)
    found = read_pages(Recording(path).chunk_head(0), stateful, pages.Settling.of(sim, 8192)).found[0]
    cols = pages.PageColumns(np.array([r[0] for r in rows], np.int64), stateful, [found], lambda at: None)
    base = (1 << 32) + 7
    batch = pages._Batch(sim, base, cols, lambda att: "kernel", found)  # noqa: SLF001
    assert batch.j_pairs[:4].tolist() == [base + 2, base + 1, base + 5, base + 4]  # (a later request, its opener)


_PLAIN = ("page_request", {"prg": 1, "addr": 0, "last": True}), ("page_response", {"prg": 1, "code": 0})
# A row that drains the groups pending on (DEVICES[0], PASID 1) (engine.py `_drain`) by its scope to a settled group
# (pages.py `_DRAIN_*`), what comes first for it to drain there, and the kernel whose rules the model follows: the
# pair's detach or replace; an unbind naming only its device (the bind says the PASID); where no probe sees an
# unbind (before 6.2: kernel_facts `unbind.blind`), the exit of the bound mm or the free of its PASID, naming no device
_BIND = [("pasid_alloc", None, 1, {"path": "sva", "mm": 7}), ("sva_bind", DEVICES[0], 1, {"mm": 7})]
DRAINS: dict[str, tuple[str, list[tuple[str, str | None, int | None, dict[str, Any]]],
                        tuple[str, str | None, int | None, dict[str, Any]]]] = {
    "detach": ("6.8", [("pasid_attach", DEVICES[0], 1, {"domain": 3, "domain_type": "paging"})],
               ("pasid_detach", DEVICES[0], 1, {})),
    "replace": ("6.8", [("pasid_attach", DEVICES[0], 1, {"domain": 3, "domain_type": "paging"})],
                ("pasid_replace", DEVICES[0], 1, {"domain": 4, "domain_type": "paging"})),
    "unbind": ("6.8", _BIND, ("sva_unbind", DEVICES[0], None, {"mm": 7})),
    "exit": ("5.15", _BIND, ("mm_exit", None, None, {"mm": 7})),
    "free": ("5.15", _BIND, ("pasid_free", None, 1, {"owner": "t"})),
}


@pytest.mark.parametrize("place", ["mid batch", "batch's first", "batch's last"])
@pytest.mark.parametrize("last_after", [False, True], ids=["one request", "Last after it"])
@pytest.mark.parametrize("drain", list(DRAINS))
def test_a_group_with_one_row_between_that_drains_it_is_the_handlers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drain: str, last_after: bool, place: str) -> None:
    """The kernel answers the groups pending on a (device, PASID) itself when it is detached or replaced, or its
    SVA bind's last unbind detaches it (iommufd_auto_response_faults(), drivers/iommu/iommufd/fault.c, 6.11+; VT-d
    intel_iommu_drain_pasid_prq()): the model closes such a group there and takes the next response to it for the
    kernel's answer, keeping no answer of it, so a second response is a stray one (but where a request with Last
    came after the drain, it opened a group of its own: the first response answers that one, the second is the
    kernel's). Exactly one such row lies between a group's first request (at its time) and its response, in a batch
    whose other groups, on another pair, settle (the group's first row the batch's first, or its response the
    batch's last row): that group is the handlers'. (Counting such rows one short in pages.py `_groups`, or not at
    all, settled it, and the tests above still passed; it left an answer, a duplicate response where a stray one
    was, and a group closed at its response.)"""
    monkeypatch.setattr(pages, "_FEW", 1)
    monkeypatch.setattr("explorer.recording.fieldmaps.MIN_GROUP", 2)
    kernel, setup, row = DRAINS[drain]
    first = [*setup, ("pasid_attach", DEVICES[1], 2, {"domain": 5, "domain_type": "paging"})]
    # (the devices' first groups, in a chunk of their own: the handlers', as the state knows no such device yet)
    first += [(kind, dev, pasid, f) for dev, pasid in ((DEVICES[0], 1), (DEVICES[1], 2)) for kind, f in _PLAIN]
    plain = [(kind, DEVICES[1], 2, f) for kind, f in _PLAIN] * 3
    group = [("page_request", DEVICES[0], 1, {"prg": 5, "addr": 0, "last": not last_after}), row]
    if last_after:
        group.append(("page_request", DEVICES[0], 1, {"prg": 5, "addr": 4096, "last": True}))
    group.append(("page_response", DEVICES[0], 1, {"prg": 5, "code": 0}))
    chunks = {"mid batch": [first, [*plain, *group, *plain, group[-1]]],
              "batch's first": [first, plain, [*group, *plain, group[-1]]],
              "batch's last": [first, [*plain, *group], [*plain, group[-1]]]}[place]
    path = tmp_path / "drain.pasidrec"
    devices = [DeviceInfo(d, 20, True, True, "t") for d in DEVICES]
    with RecordingWriter(path, Header(source="test", host={"kernel": kernel}, devices=devices)) as w:
        ts = 1_000
        for rows in chunks:
            for kind, dev, pasid, f in rows:
                ts += 0 if kind == row[0] else 1_000  # (the drain at its group's first request's time)
                w.append_row([ts, kind, dev, pasid, 0, 4, "q", "t", f])
            w.flush()
    assert _settles_some(path, monkeypatch) == 6
    _same_both_ways(path, monkeypatch)
    idx = RecordingIndex.build(Recording(path))
    assert [a.rule for a in idx.anomalies] == ([] if last_after else ["response_without_group"])
