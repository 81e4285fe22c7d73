"""The timeline's arithmetic on a synthetic index, without a terminal: binning dense map/unmap traffic into cells,
the density glyphs, the window and its axis, and the bars (spans) a frame looks up."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.events import Kind
from explorer.index import RecordingIndex
from explorer.recording import DeviceInfo, Header
from explorer.tui.cells import MERGE_TRACKS, CellModel
from explorer.tui.glyphs import DENSITY, MARKS, density_glyph, mark_of_priority
from explorer.tui.spans import GROUP, GROUP_STALE, Spans, TrackSpans, bar_of
from explorer.tui.timescale import Window
from explorer.tui.tracks import build_rows

DEV = "0000:6a:01.0"
MS = 1_000_000


def synthetic(pasids: int = 2, maps: int = 10_000, late: bool = False) -> RecordingIndex:
    """One device; PASIDs bound at 1 ms intervals; a burst of map/unmap traffic on PASID 1 between 10 and 20 ms;
    one page request on PASID 1 at 30 ms answered at 250 ms (past the 100 ms stale threshold). `late`: the last
    PASID's allocation arrives last, out of time order (as a capture's may)."""
    rows: list[list[object]] = []
    for p in range(1, pasids + 1):
        rows.append([p * MS, str(Kind.PASID_ALLOC), DEV, p, 0, 100 + p, f"proc-{p}", "test", {"path": "sva"}])
    step = 10 * MS // maps
    for k in range(maps):
        kind = Kind.MAP if k % 2 == 0 else Kind.UNMAP
        rows.append([10 * MS + k * step, str(kind), DEV, 1, 0, None, None, "test", {"iova": k * 4096}])
    request = {"prg": 1, "addr": 4096, "last": True}
    rows.append([30 * MS, str(Kind.PAGE_REQUEST), DEV, 1, 0, None, None, "test", request])
    rows.append([250 * MS, str(Kind.PAGE_RESPONSE), DEV, 1, 0, None, None, "test", {"prg": 1, "code": 0}])
    rows.sort(key=lambda r: r[0])  # type: ignore[arg-type, return-value]
    if late:
        rows.append(rows.pop(next(i for i, r in enumerate(rows) if r[3] == pasids)))
    index = RecordingIndex(Header(source="test", devices=[DeviceInfo(DEV, 20, True, True, "idxd")]))
    index.add_rows(rows)
    index.finish()
    return index


def test_dense_map_traffic_is_counted_per_cell_and_drawn_as_a_density_bar() -> None:
    index = synthetic()
    spans = Spans(index)
    spans.update()
    model = CellModel(index, spans)
    row = next(c for r in build_rows(index, spans) for c in r.children if (c.device, c.pasid) == (DEV, 1))
    window = Window(10 * MS, 20 * MS, index.start_ns, index.end_ns)
    cells = model.row_cells(row, window.edges(100))
    assert cells.counts.sum() == 10_000 and set(cells.counts.tolist()) == {100}
    assert {mark_of_priority(int(p)).glyph for p in cells.top} == {MARKS[Kind.UNMAP].glyph}
    assert density_glyph(100) == DENSITY[3]  # log2(100) = 6.6: the fourth bar
    whole = model.row_cells(row, Window.whole(index.start_ns, index.end_ns).edges(50))
    assert whole.counts.sum() == 10_000 + 3  # the allocation, the request and the response too
    assert mark_of_priority(int(whole.top.max())).glyph == MARKS[Kind.PASID_ALLOC].glyph  # the most telling


def test_density_glyphs_grow_with_log2_of_the_count_and_saturate() -> None:
    levels = [DENSITY.index(density_glyph(4 ** k)) for k in range(10)]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == len(DENSITY) - 1
    assert density_glyph(0) == density_glyph(1) == DENSITY[0]


def test_a_device_of_many_pasids_counts_the_same_merged_as_track_by_track() -> None:
    index = synthetic(pasids=MERGE_TRACKS * 2)
    model = CellModel(index, None)
    device = next(r for r in build_rows(index) if r.device == DEV)
    assert len(device.tracks) > MERGE_TRACKS
    edges = Window.whole(index.start_ns, index.end_ns).edges(77)
    merged = model.row_cells(device, edges)
    summed = sum(model.row_cells(c, edges).counts for c in device.children)
    assert (merged.counts == summed).all()
    last_alloc = max(i for i in range(index.n) if index.event(i).kind == Kind.PASID_ALLOC)
    assert model.telling_event(device, int(edges[0]), int(edges[-1])) == last_alloc  # the latest of the most telling


@pytest.mark.parametrize("late", [False, True], ids=["in order", "an event out of order"])
@pytest.mark.parametrize("kinds", [frozenset(), frozenset({str(Kind.UNMAP), str(Kind.PASID_ALLOC)})],
                         ids=["every kind", "a kind filter"])
def test_a_merged_row_shows_what_its_tracks_show_together(late: bool, kinds: frozenset[str]) -> None:
    index = synthetic(pasids=MERGE_TRACKS * 2, maps=1_000, late=late)
    model = CellModel(index, None)
    model.reset(kinds)
    device = next(r for r in build_rows(index) if r.device == DEV)
    for t0, t1, cells in [(index.start_ns, index.end_ns, 77), (0, 40 * MS, 160), (9 * MS, 11 * MS, 50)]:
        edges = Window(t0, t1, index.start_ns, index.end_ns).edges(cells)
        merged = model.row_cells(device, edges)
        alone = [model.row_cells(c, edges) for c in device.children]
        assert merged.counts.tolist() == sum(c.counts for c in alone).tolist()
        assert merged.top.tolist() == np.max([c.top for c in alone], axis=0).tolist()
    assert model.row_cells(device, Window.whole(index.start_ns, index.end_ns).edges(77)).counts.sum() == \
        (2 * MERGE_TRACKS + 1_000 + 2 if not kinds else 2 * MERGE_TRACKS + 500)


def test_the_window_zooms_around_a_time_pans_and_shows_the_cursor() -> None:
    w = Window.whole(0, 100 * MS)
    w.zoom(0.5, 50 * MS)
    assert w.span == pytest.approx(51 * MS, rel=0.01) and w.t0 < 50 * MS < w.t1
    t0 = w.t0
    w.pan(0.25)
    assert w.t0 - t0 == w.span // 4
    w.show(2 * MS)
    assert w.t0 <= 2 * MS < w.t1
    assert w.cell_of(w.t0, 10) == 0 and w.cell_of(w.t1 - 1, 10) == 9 and w.cell_of(w.t1, 10) is None


def test_a_group_is_amber_until_the_stale_threshold_and_red_after() -> None:
    index = synthetic()
    spans = Spans(index)
    spans.update()
    bars = spans.of((DEV, 1))
    groups = sorted(map(tuple, bars.rows().tolist()))
    assert groups == [(30 * MS, 130 * MS, GROUP), (130 * MS, 250 * MS, GROUP_STALE)]
    edges = np.arange(0, 300 * MS + 1, 10 * MS)
    cover = bars.cover(edges).tolist()
    assert cover[3:13] == [GROUP] * 10 and cover[13:25] == [GROUP_STALE] * 12 and cover[25] == -1


def test_spans_found_by_search_match_a_scan_of_every_span() -> None:
    rng = np.random.default_rng(7)
    starts = rng.integers(0, 10**9, 3000)
    lengths = np.concatenate([rng.integers(1, 10**4, 2900), rng.integers(10**6, 10**9, 100)])
    items = [(int(s), int(s + n), int(rng.integers(0, 7))) for s, n in zip(starts, lengths, strict=True)]
    items.append((5 * 10**8, np.iinfo(np.int64).max, GROUP))  # still open
    bars = TrackSpans.of(items)
    for t0, t1 in [(0, 10**9), (4 * 10**8, 4 * 10**8 + 10**5), (6 * 10**8, 7 * 10**8), (2 * 10**9, 3 * 10**9)]:
        edges = np.linspace(t0, t1, 81).astype(np.int64)
        expected = np.full(80, -1, dtype=np.int16)
        for s, e, st in items:
            if s < t1 and e > t0:
                a = min(max(int(np.searchsorted(edges, s, side="right")) - 1, 0), 79)
                b = min(max(int(np.searchsorted(edges, e, side="left")), 1), 80)
                expected[a:b] = np.maximum(expected[a:b], st)
        assert (bars.cover(edges) == expected).all()


def test_bars_and_names_fed_from_the_models_rows_equal_those_decoded_on_their_own(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from explorer.recording import Recording
    from explorer.workload import write_workload

    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=12, slow_every=200, loss_every=400)
    alone = Spans(RecordingIndex.build(Recording(path)))
    alone.update()
    later = RecordingIndex.build(Recording(path), model=False)
    fed = Spans(later)
    later.run_model(observe=fed.feed)
    assert fed.done == alone.done == later.n
    keys = {bar[0] for iv in alone.index.intervals if (bar := bar_of(iv)) is not None}
    assert len(keys) > 20 and keys == {bar[0] for iv in later.intervals if (bar := bar_of(iv)) is not None}
    for key in keys:
        a, b = alone.of(key), fed.of(key)
        assert a.rows().tolist() == b.rows().tolist(), key
    assert fed.owners == alone.owners and fed.holders == alone.holders


@pytest.mark.parametrize("late", [False, True], ids=["in order", "an event out of order"])
def test_a_tracks_times_are_searched_as_a_search_of_them_would(late: bool) -> None:
    whole = synthetic(pasids=MERGE_TRACKS * 2, maps=1_000, late=late)
    rows = [whole.row(i) for i in range(whole.n)]
    index = RecordingIndex(whole.header)
    for k in range(0, len(rows), 150):  # batch after batch, so that a track's events lie in several runs
        index.add_rows(rows[k:k + 150])
        assert index.ts[-1] == rows[min(k + 150, len(rows)) - 1][0]
    assert index.in_order is not late  # (an event out of order is noticed: a track is then searched over its times)
    if late:
        return  # (out of order that search is np.searchsorted over the gathered times itself: nothing to compare)
    probes = np.unique(np.concatenate([index.ts, index.ts - 1, index.ts + 1, [-(10 ** 12), 10 ** 12]]))
    for t in range(len(index.tracks)):
        times = index.ts[index.track_events(t)]
        for side in ("left", "right"):
            assert index.track_search(t, probes, side).tolist() == np.searchsorted(times, probes, side).tolist()
