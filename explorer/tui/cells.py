"""What each timeline cell holds: event count, the most telling kind, the bar under it, anomalies in it.

Counts come from searchsorted over each track's sorted times, so a frame costs O(rows x cells x log n) whatever
the recording's size. Pure numpy, no Textual, so it is tested and benchmarked on its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..index import RecordingIndex
from ..simulator import Severity
from .glyphs import priority_table
from .spans import NO_SPANS, Spans, TrackSpans
from .tracks import Row

SEVERITY_RANK = {Severity.UNCERTAIN: 1, Severity.WARNING: 2, Severity.ERROR: 3}


@dataclass(slots=True)
class RowCells:
    counts: np.ndarray  # events per cell
    top: np.ndarray  # highest kind priority per cell (0 where empty)
    bars: np.ndarray  # span style per cell (-1: none)
    anomalies: np.ndarray  # per cell, the gravest anomaly's rank (SEVERITY_RANK; 0: none)


class CellModel:
    """Per-track sorted times and priorities, cached; rebuilt when the index grows or the kind filter changes."""

    def __init__(self, index: RecordingIndex, spans: Spans | None) -> None:
        self.index = index
        self.spans = spans
        self._kinds: frozenset[str] = frozenset()
        self.reset()

    def reset(self, kinds: frozenset[str] | None = None) -> None:
        """Forget cached arrays (new events arrived, or `kinds` now restricts which events count)."""
        if kinds is not None:
            self._kinds = kinds
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
        self._tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._anoms: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}
        by_key: defaultdict[tuple[object, ...], list[tuple[int, int]]] = defaultdict(list)
        for a in self.index.anomalies:
            rank = SEVERITY_RANK.get(a.severity, 1)
            by_key[("pair", a.device, a.pasid)].append((a.ts_ns, rank))
            by_key[("device", a.device)].append((a.ts_ns, rank))
        self._anom_lists = by_key

    def tracks_with_kinds(self) -> set[int] | None:
        """Tracks holding at least one event of the filtered kinds (None: no kind filter)."""
        if self.keep is None:
            return None
        return {tid for tid in range(len(self.index.tracks)) if len(self._track(tid)[0])}

    def _track(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._tracks.get(tid)
        if got is None:
            times = self.index.track_times(tid)
            kinds = self.index.kinds[self.index.track_events(tid)]
            if self.keep is not None:
                sel = self.keep[kinds]
                times, kinds = times[sel], kinds[sel]
            got = (times, self._prio[kinds])
            self._tracks[tid] = got
        return got

    def _anomalies(self, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """Times (sorted) and severity ranks of the anomalies a row shows."""
        key = ("device", row.device) if row.is_group else ("pair", row.device, row.pasid)
        got = self._anoms.get(key)
        if got is None:
            pairs = np.array(sorted(self._anom_lists.get(key, [])), dtype=np.int64).reshape(-1, 2)
            got = self._anoms[key] = (pairs[:, 0], pairs[:, 1].astype(np.int8))
        return got

    def row_cells(self, row: Row, edges: np.ndarray) -> RowCells:
        if self.index.n != self._n:
            self.reset()
        cells = len(edges) - 1
        counts = np.zeros(cells, dtype=np.int64)
        top = np.zeros(cells, dtype=np.int16)
        for tid in row.tracks:
            times, prio = self._track(tid)
            pos = np.searchsorted(times, edges, side="left")
            c = np.diff(pos)
            if not c.any():
                continue
            counts += c
            nonempty = np.flatnonzero(c)
            first = pos[nonempty]
            best = np.maximum.reduceat(prio[pos[0]:pos[-1]], first - pos[0])
            top[nonempty] = np.maximum(top[nonempty], best)
        bars = self._bars(row).cover(edges, min_cells=2)
        at, ranks = self._anomalies(row)
        anomalies = np.zeros(cells, dtype=np.int8)
        if len(at):
            pos = np.searchsorted(at, edges, side="left")
            hit = np.flatnonzero(np.diff(pos))
            if len(hit):
                anomalies[hit] = np.maximum.reduceat(ranks[pos[0]:pos[-1]], pos[hit] - pos[0])
        return RowCells(counts, top, bars, anomalies)

    def _bars(self, row: Row) -> TrackSpans:
        if self.spans is None or row.span_key is None:
            return NO_SPANS
        return self.spans.of(row.span_key)
