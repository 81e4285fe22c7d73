"""What each timeline cell holds: event count, the most telling kind, the bar under it, anomalies in it.

Counts come from searchsorted over each track's sorted times, so a frame costs O(rows x cells x log n) whatever
the recording's size; a group of many tracks is merged into one sorted array once. Pure numpy, no Textual, so it
is tested and benchmarked on its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..index import RecordingIndex
from .glyphs import priority_table
from .palette import SEVERITY_RANK
from .spans import NO_BARS, RowBars, Spans
from .tracks import TrackRow

MERGE_TRACKS = 16  # a row summing more tracks than this gets one merged array instead of a search per track
_AnomalyKey = tuple[object, ...]


@dataclass(slots=True)
class RowCells:
    counts: np.ndarray  # events per cell
    top: np.ndarray  # highest kind priority per cell (0 where empty)
    bars: np.ndarray  # span style per cell (-1: none)
    anomalies: np.ndarray  # per cell, the gravest anomaly's rank (SEVERITY_RANK; 0: none)


class CellModel:
    """Per-row events and priorities for counting cells (a recording in time order keeps its events' indices, one
    out of order their times), cached; rebuilt when the index grows or the kind filter changes."""

    def __init__(self, index: RecordingIndex, spans: Spans | None) -> None:
        self.index = index
        self.spans = spans
        self._kinds: frozenset[str] = frozenset()
        self.version = 0  # counts resets: cells counted before one are out of date
        self._n = -1  # events when the per-track arrays were made
        self.reset()

    def reset(self, kinds: frozenset[str] | None = None) -> None:
        """Count again: new events arrived, `kinds` now restricts which events count, or new bars or findings
        came. The per-track arrays are made again only for the first two (merging a device's tracks takes a
        second at 10M events, which the first frame after the model's bars waited for)."""
        same = self.index.n == self._n and (kinds is None or kinds == self._kinds)
        if kinds is not None:
            self._kinds = kinds
        self.version += 1
        self._sort_anomalies()
        if same:
            return
        self._n = self.index.n
        self._prio = priority_table(self.index.kind_names)
        if self._kinds:
            keep = np.zeros(256, dtype=bool)
            for k in self._kinds:
                kid = self.index.kind_id(k)
                if kid is not None:
                    keep[kid] = True
            self.keep: np.ndarray | None = keep  # per kind id: counted under the kind filter
        else:
            self.keep = None
        self._tracks: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}
        self._merged: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, bool]] = {}
        self._edges_at: tuple[np.ndarray, np.ndarray] | None = None  # edges, the first event at or after each

    def _sort_anomalies(self) -> None:
        """Anomalies by (device, PASID), again whenever the model (maybe still running) has found more or revised
        one (a late answer changes a finding's severity, so its colour)."""
        self._anomalies_seen = self.index.findings_seen  # (before reading them: one found meanwhile is not missed)
        self._anoms: dict[_AnomalyKey, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        by_pair: defaultdict[tuple[str | None, int | None], list[tuple[int, int, int]]] = defaultdict(list)
        found = self.index.anomalies
        for n, a in enumerate(found):
            by_pair[(a.device, a.pasid)].append((a.ts_ns, SEVERITY_RANK.get(a.severity, 1), n))
        self._anom_pairs = by_pair

    def tracks_with_kinds(self, kinds: frozenset[str]) -> set[int] | None:
        """Tracks holding at least one event of `kinds`, or for the pseudo-kind "anomaly" an anomaly of their
        (device, PASID); None: no kind filter."""
        if not kinds:
            return None
        if self.index.findings_seen != self._anomalies_seen:
            self._sort_anomalies()
        tracks = self.index.tracks
        out = {tid for tid in range(len(tracks)) if len(self._track(tid)[0])} if self.keep is not None else set()
        if "anomaly" in kinds:
            out |= {tid for tid, t in enumerate(tracks) if (t.device, t.pasid) in self._anom_pairs}
        return out

    def _track(self, tid: int) -> tuple[np.ndarray, np.ndarray, bool]:
        got = self._tracks.get(tid)
        if got is None:
            got = self._tracks[tid] = self._searchable(self.index.track_events(tid))
        return got

    def _arrays_of(self, row: TrackRow) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """What to count for a row (see `_searchable`): one per track, or one merged for many."""
        if len(row.tracks) <= MERGE_TRACKS:
            return [self._track(tid) for tid in row.tracks]
        key = tuple(row.tracks)
        got = self._merged.get(key)
        if got is None:
            idx = self.index
            member = np.zeros(len(idx.tracks), dtype=bool)
            member[row.tracks] = True
            got = self._merged[key] = self._searchable(np.flatnonzero(member[idx.track_of]).astype(np.uint32))
        return [got]

    def _searchable(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """The events `ids` (in index order) that the kind filter keeps, as sorted keys to search, their
        priorities, and whether the keys are the events' indices: in a recording in order the first index at
        or after an edge's time tells their counts, at 5 bytes an event where their times took 10 (and a
        track's are a view of the index's own); else their times, sorted."""
        idx = self.index
        kinds = idx.kinds[ids]
        if self.keep is not None:
            sel = self.keep[kinds]
            ids, kinds = ids[sel], kinds[sel]
        prio = self._prio[kinds]
        if idx.in_order:
            return ids, prio, True
        times = idx.ts[ids]
        order = np.argsort(times, kind="stable")
        return times[order], prio[order], False

    def _anomalies(self, key: _AnomalyKey) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times (sorted), severity ranks and indices (into index.anomalies) of the anomalies under `key`:
        ("all",), ("pair", device, pasid) or ("device", device, PASIDs or None for all)."""
        if self.index.findings_seen != self._anomalies_seen:
            self._sort_anomalies()
        got = self._anoms.get(key)
        if got is None:
            if key[0] == "all":
                items = [x for found in self._anom_pairs.values() for x in found]
            elif key[0] == "pair":
                items = list(self._anom_pairs.get((key[1], key[2]), []))  # type: ignore[arg-type]
            else:
                only = key[2]
                items = [x for (dev, pasid), found in self._anom_pairs.items()
                         if dev == key[1] and (only is None or pasid in only) for x in found]  # type: ignore[operator]
            a = np.array(sorted(items), dtype=np.int64).reshape(-1, 3)
            got = self._anoms[key] = (a[:, 0], a[:, 1].astype(np.int8), a[:, 2])
        return got

    @staticmethod
    def anomaly_key(row: TrackRow) -> _AnomalyKey:
        return ("device", row.device, row.only) if row.is_group else ("pair", row.device, row.pasid)

    def _anomaly_ranks(self, key: _AnomalyKey, edges: np.ndarray) -> np.ndarray:
        at, ranks, _ = self._anomalies(key)
        out = np.zeros(len(edges) - 1, dtype=np.int8)
        if len(at):
            pos = np.searchsorted(at, edges, side="left")
            hit = np.flatnonzero(np.diff(pos))
            if len(hit):
                out[hit] = np.maximum.reduceat(ranks[pos[0]:pos[-1]], pos[hit] - pos[0])
        return out

    def axis_anomalies(self, edges: np.ndarray) -> np.ndarray:
        """Per cell, the gravest rank among all anomalies, whichever row they are on (for the time axis)."""
        return self._anomaly_ranks(("all",), edges)

    def anomaly_at(self, row: TrackRow, t0: int, t1: int) -> int | None:
        """The gravest (then earliest) anomaly the row shows in [t0, t1), as an index into index.anomalies."""
        at, ranks, ns = self._anomalies(self.anomaly_key(row))
        lo, hi = np.searchsorted(at, [t0, t1], side="left")
        if lo == hi:
            return None
        return int(ns[lo + int(np.argmax(ranks[lo:hi]))])

    def telling_event(self, row: TrackRow, t0: int, t1: int) -> int | None:
        """The event whose mark a cell [t0, t1) of the row shows: its most telling kind, the latest of those."""
        best: tuple[int, int, int] | None = None
        for tid in row.tracks:
            lo, hi = self.index.track_search(tid, np.array([t0, t1]))
            ids = self.index.track_events(tid)[lo:hi]
            kinds = self.index.kinds[ids]
            if self.keep is not None:
                ids, kinds = ids[self.keep[kinds]], kinds[self.keep[kinds]]
            if len(ids):
                prio = self._prio[kinds]
                j = len(prio) - 1 - int(np.argmax(prio[::-1]))  # the last of the highest priority
                cand = (int(prio[j]), int(self.index.ts[ids[j]]), int(ids[j]))
                best = cand if best is None or cand > best else best
        return None if best is None else best[2]

    def row_cells(self, row: TrackRow, edges: np.ndarray) -> RowCells:
        if self.index.n != self._n:
            self.reset()
        cells = len(edges) - 1
        counts = np.zeros(cells, dtype=np.int64)
        top = np.zeros(cells, dtype=np.int16)
        for keys, prio, by_index in self._arrays_of(row):
            pos = np.searchsorted(keys, self._first_at(edges, keys.dtype) if by_index else edges, side="left")
            c = np.diff(pos)
            if not c.any():
                continue
            counts += c
            nonempty = np.flatnonzero(c)
            first = pos[nonempty]
            best = np.maximum.reduceat(prio[pos[0]:pos[-1]], first - pos[0])
            top[nonempty] = np.maximum(top[nonempty], best)
        bars = self._bars(row).cover(edges, min_cells=2)
        return RowCells(counts, top, bars, self._anomaly_ranks(self.anomaly_key(row), edges))

    def _first_at(self, edges: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """The first event at or after each edge's time, as `dtype` (searched once for a frame's rows, whose
        edges are the same: a search of every event's time costs far more than one of a track's)."""
        got = self._edges_at
        if got is None or got[1].dtype != dtype or not np.array_equal(got[0], edges):
            got = self._edges_at = (edges.copy(), np.searchsorted(self.index.ts, edges, side="left").astype(dtype))
        return got[1]

    def _bars(self, row: TrackRow) -> RowBars:
        if self.spans is None or row.span_key is None:
            return NO_BARS
        return self.spans.of(row.span_key)
