"""Checkpoints are the model's changes, not copies of its state: seeking through them gives what a straight replay
gives, and their memory follows the events, not the state's size."""

from __future__ import annotations

import random
import sys
import threading
from bisect import bisect_right
from pathlib import Path
from unittest.mock import patch

import pytest
from core.test_simulator import _comparable, _naive_state
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer import index as index_module
from explorer import live_table
from explorer.events import PASID_SPACE, Kind, make
from explorer.index import RecordingIndex
from explorer.journal import Journal, apply_changes
from explorer.live_table import LiveTable
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter
from explorer.simulator import Simulator
from explorer.simulator.state import _SCALARS
from explorer.workload import generate_rows, workload_header, write_workload

OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "pop", "clear", "mark"]), st.integers(0, 6),
                         st.integers(0, 3)), max_size=60)


@given(OPS)
@settings(max_examples=200)
def test_a_journal_s_changes_bring_a_copy_from_one_mark_to_the_next(ops: list[tuple[str, int, int]]) -> None:
    journal, marked = Journal(), {}
    for op, key, value in ops:
        if op == "set":
            journal[key] = value
        elif op == "del" and key in journal:
            del journal[key]
        elif op == "pop":
            journal.pop(key, None)
        elif op == "clear":
            journal.clear()
        elif op == "mark":
            apply_changes(marked, journal.changes())
            assert marked == journal
    apply_changes(marked, journal.changes())
    assert marked == journal and journal.changes() == ()


# PASIDs in the first page, the next, the last of the space and beyond it (the schema lets PASIDs up to 2^32 through:
# the model reports them beyond the device's width); records as wide as a packed LivePasid's
TABLE_OPS = st.lists(st.tuples(st.sampled_from(["set", "pop", "mark", "thaw"]),
                               st.sampled_from([0, 1, 2, 255, 256, 257, 300, PASID_SPACE - 1, PASID_SPACE,
                                                (1 << 32) - 1]),
                               st.sampled_from([1, 2, 1 << 143, (1 << 143) + 5, (1 << 81) - 1])), max_size=60)


@given(TABLE_OPS, st.sampled_from([1, 2, 64]))
@settings(max_examples=300)
def test_the_live_pasid_table_acts_as_a_dict_in_order_and_its_changes_and_copies_bring_a_copy_along(
        ops: list[tuple[str, int, int]], dense: int) -> None:
    """Lookups, length and the order the PASIDs became live (what exports list) are a dict's, whether a PASID sits
    in a page's slot or, its page not yet crowded enough or out of the pages' range, in the table's dict; a
    checkpoint's changes and a full copy (frozen, then applied to an empty table) each make a table that is the
    same, in the same order."""
    with patch.object(live_table, "_DENSE", dense):
        _table_acts_as_a_dict(ops)


def _table_acts_as_a_dict(ops: list[tuple[str, int, int]]) -> None:
    table, same, marked = LiveTable(), Journal(), LiveTable()
    table.start()
    as_dict: dict[int, int] = {}  # what the model kept before the table: a dict brought along by a Journal's changes
    for op, pasid, value in ops:
        if op == "set":
            table[pasid] = same[pasid] = value
        elif op == "pop":
            assert table.pop(pasid, None) == same.pop(pasid, None)
        elif op == "mark":
            marked.apply(table.changes())
            apply_changes(as_dict, same.changes())
            assert [(p, marked[p]) for p in marked] == list(as_dict.items())
        else:
            copied = LiveTable()
            copied.apply(table.frozen())
            assert list(copied) == list(same) and [copied[p] for p in copied] == list(same.values())
        assert list(table) == list(same) and len(table) == len(same)
        assert [table.get(p) for p in range(300)] == [same.get(p) for p in range(300)]
        assert all((p in table) == (p in same) for p in (0, 1, 255, 256, PASID_SPACE - 1, PASID_SPACE, -1, None))
        assert table.lowest(3) == sorted(same)[:3] and table.lowest(10) == sorted(same)
        for start in (0, 1, 2, 255, 256, 257):
            assert table.first_free(start) == next(p for p in range(start, PASID_SPACE + 1) if p not in same)
    thawed = LiveTable()
    thawed.apply(table.frozen())
    assert list(thawed) == list(same) and [thawed[p] for p in thawed] == list(same.values())


def test_the_live_pasids_are_listed_whole_while_the_model_goes_on_writing() -> None:
    """The timeline lists the open lifetimes (`Intervals.open_now`) on the UI thread while the model's thread may
    still write: each listing is the table at some moment, never an error, never a PASID twice."""
    table = LiveTable()
    for p in range(50_000):
        table[PASID_SPACE + p] = p + 1  # (past the pages: in the table's dict)
    for p in range(0, 64 * 256, 3):
        table[p] = 1  # (pages made as they fill)
    stop = threading.Event()

    def write() -> None:
        k = 0
        while not stop.is_set():
            table[PASID_SPACE + 100_000 + k % 5000] = 1
            table.pop(PASID_SPACE + 100_000 + (k - 2500) % 5000, None)
            table[k % (64 * 256)] = 2
            k += 1

    writer = threading.Thread(target=write)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    writer.start()
    try:
        for _ in range(20):
            listed = list(table)
            assert len(listed) == len(set(listed)) and len(table.frozen()) % 4 == 0
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)


def test_the_lowest_free_pasid_is_found_past_full_pages_and_holes() -> None:
    """What the allocator panel and `explain` call the next PASID iommu_alloc_global_pasid() would hand out."""
    table = LiveTable()
    for p in range(1, 600):
        table[p] = 1
    assert table.first_free(1) == 600 and table.first_free(0) == 0 and table.first_free(700) == 700
    table.pop(300)
    assert table.first_free(1) == 300 and table.first_free(301) == 600


@pytest.mark.parametrize("every, full_after", [(7, 16), (64, 40), (500, 5000)])
def test_seeking_through_changes_and_full_copies_equals_a_straight_replay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, full_after: int) -> None:
    """Checkpoints every few events, full copies rare or frequent, losses and tiny chunks between them."""
    monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", every)
    monkeypatch.setattr(index_module, "FULL_COPY_AFTER", full_after)
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 6000, seed=every, slow_every=40, loss_every=60)
    rows = list(Recording(path).iter_rows())
    idx = RecordingIndex.build(Recording(path))
    kinds = {cp.state is None for cp in idx._checkpoints}  # noqa: SLF001 - both kinds must be exercised
    assert kinds == {True, False}
    rng = random.Random(every)
    for t in [idx.start_ns, idx.end_ns] + [rng.randrange(idx.start_ns, idx.end_ns) for _ in range(30)]:
        assert _comparable(idx.state_at(t)) == _comparable(_naive_state(rows, idx.index_at(t), idx.header, t))


def test_a_long_quiet_capture_s_tiny_chunks_are_checkpointed_and_read_by_a_seek_only_where_it_replays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet capture writes a chunk a second of a few events. A seek replays from the checkpoint before its
    time, reading each chunk it crosses: checkpoints come every CHECKPOINT_CHUNKS chunks too, and a chunk holding
    no row the model replays (DMA maps and unmaps) is not read at all. Seeks still give a straight replay's state."""
    monkeypatch.setattr(index_module, "CHECKPOINT_CHUNKS", 4)
    path = tmp_path / "quiet.pasidrec"
    with RecordingWriter(path, workload_header(3000, 5), chunk_events=3) as w:
        for row in generate_rows(3000, 5, slow_every=40, loss_every=60):
            w.append_row(row)
    rows = list(Recording(path).iter_rows())
    idx = RecordingIndex.build(Recording(path))
    chunks = [bisect_right(idx._chunk_starts, cp.next_index) - 1 for cp in idx._checkpoints]  # noqa: SLF001
    assert max(b - a for a, b in zip(chunks[:-1], chunks[1:], strict=True)) <= 4 and len(chunks) >= 1000 // 4
    assert idx.recording is not None
    reads: list[int] = []
    head = idx.recording.chunk_head
    monkeypatch.setattr(idx.recording, "chunk_head", lambda i: reads.append(i) or head(i))
    rng = random.Random(5)
    for t in [idx.start_ns, idx.end_ns] + [rng.randrange(idx.start_ns, idx.end_ns) for _ in range(30)]:
        reads.clear()
        idx._replayed = None  # noqa: SLF001 - each seek from its checkpoint, not on from the last one
        assert _comparable(idx.state_at(t)) == _comparable(_naive_state(rows, idx.index_at(t), idx.header, t))
        assert len(reads) <= 4 and all(idx._stateful[idx.kinds[idx._chunk_starts[i]:idx._chunk_starts[i] + 3]].any()
                                       for i in reads)  # noqa: SLF001


def _live_pasids(path: Path, n: int) -> Path:
    header = Header(source="test", devices=[DeviceInfo("0000:00:01.0", 20, True, True, "t")])
    with RecordingWriter(path, header) as w:
        for i in range(n):
            w.append_row([i, "pasid_alloc", "0000:00:01.0", i + 1, 0, 1, "a", "t", {"path": "iommufd"}])
    return path


def test_checkpoints_of_a_growing_state_hold_its_changes_not_copies_of_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """40,000 live PASIDs, a checkpoint every 1,000 events: 40 full copies would hold 820,000 entries; changes,
    and a full copy only when the changes since the last one outnumber the state's entries, hold each PASID about
    once (a state that only grows is never copied whole again)."""
    monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", 1000)
    monkeypatch.setattr(index_module, "FULL_COPY_AFTER", 1000)
    idx = RecordingIndex.build(Recording(_live_pasids(tmp_path / "p.pasidrec", 40_000)))
    held = sum(cp.state.size if cp.state is not None else cp.changes.size for cp in idx._checkpoints)  # noqa: SLF001
    assert len(idx._checkpoints) >= 40 and held < 1.1 * 40_000  # noqa: SLF001
    assert len(idx.state_at(idx.ts[-1]).pasids) == 40_000
    assert len(idx.state_at(idx.ts[20_000]).pasids) == 20_001


def test_groups_stuck_after_their_last_request_are_held_once_not_once_a_checkpoint(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    """A hung device: 2,000 page-request groups get their request with Last and never an answer, then 60,000 other
    events cross 60 checkpoints. The Last requests' times (kept whole in every checkpoint, engine.py `_completed`;
    io-pgfault.c awaits a group's answer from its Last, 6.9+) were copied into each: 120,000 entries, growing with
    every checkpoint (a 10M-event file reached gigabytes). Unchanged, they are held once; seeks still see them."""
    monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", 1000)
    dev, path = "0000:00:01.0", tmp_path / "hung.pasidrec"
    header = Header(source="test", host={"kernel": "6.18.0"}, devices=[DeviceInfo(dev, 20, True, True, "t")])
    t = 1_000
    with RecordingWriter(path, header) as w:
        w.append_row([t, "pasid_attach", dev, 1, 0, 1, "q", "t", {"domain": 1, "domain_type": "paging"}])
        for prg in range(2_000):
            for last in (False, True):
                t += 10
                w.append_row([t, "page_request", dev, 1, 0, None, None, "t",
                              {"prg": prg, "addr": 4096 * last, "last": last, "needs_pasid": True}])
        for _ in range(60_000):
            t += 1_000
            w.append_row([t, "map", None, None, 0, None, None, "t", {"iova": 0, "paddr": 0, "size": 4096}])
    idx = RecordingIndex.build(Recording(path))
    k = _SCALARS.index("last_requests")  # (its place among the checkpoints' scalars)
    held = {id(lasts): len(lasts) for cp in idx._checkpoints  # noqa: SLF001
            for lasts in [(cp.state.state if cp.state is not None else cp.changes).scalars[k]] if lasts}
    # (a copy at each checkpoint while they came, 4,000 events over four; then one, which every later one holds)
    assert len(idx._checkpoints) >= 60 and sum(held.values()) <= 4 * 2_000  # noqa: SLF001
    assert len(idx.state_at(idx.ts[-1]).last_requests) == 2_000


def test_a_pasid_reallocated_to_another_mm_then_freed_leaves_no_dangling_evidence() -> None:
    """A valid stream the model once could not apply (it read the evidence of a freed PASID and reported the
    allocation as a malformed event): PASID 5 handed to mm 1, then to mm 2 (a double allocation), freed, and
    mm 1 allocating again."""
    sim = Simulator(kernel="6.18").apply_all([
        make(Kind.PASID_ALLOC, 1, pasid=5, path="sva", mm=1), make(Kind.PASID_ALLOC, 2, pasid=5, path="sva", mm=2),
        make(Kind.PASID_FREE, 3, pasid=5), make(Kind.PASID_ALLOC, 4, pasid=6, path="sva", mm=1),
        make(Kind.SVA_BIND, 5, device="0000:00:01.0", pasid=7, mm=1)])
    assert [a.rule for a in sim.anomalies] == ["double_alloc", "second_sva_pasid", "second_sva_pasid",
                                               "use_unallocated"]
    assert set(sim.state.pasids) == {6, 7}
