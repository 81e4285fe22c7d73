"""Intervals the timeline draws as bars: PASID lifetimes, attached domains and outstanding page-request groups.

Built in one forward pass over the few kinds that open or close an interval, and extended incrementally as a
live capture adds events; nothing here imports Textual.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..events import R_COMM, R_DEVICE, R_FIELDS, R_PASID, R_PID, R_TS, Kind
from ..index import RecordingIndex

LIFETIME, ATTACHED_SVA, ATTACHED_PAGING, ATTACHED_NESTED, ATTACHED_OTHER, GROUP, GROUP_STALE = range(7)
SPAN_NAMES = ("PASID allocated", "attached: SVA (a process)", "attached: paging (iommufd IOAS)",
              "attached: nested (a guest)", "attached: other domain", "page-request group outstanding",
              "page-request group past the stale threshold")
_ATTACH_STYLE = {"sva": ATTACHED_SVA, "paging": ATTACHED_PAGING, "nested": ATTACHED_NESTED}
_OPENING = (Kind.SVA_BIND, Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.PASID_ATTACH, Kind.PASID_DETACH, Kind.PASID_REPLACE,
            Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE)
OPEN_END = np.iinfo(np.int64).max  # still open at the end of what has been seen


@dataclass(slots=True)
class TrackSpans:
    """The intervals of one row: parallel arrays of start, end and style."""

    starts: np.ndarray
    ends: np.ndarray
    styles: np.ndarray

    def cover(self, edges: np.ndarray, min_cells: int = 1) -> np.ndarray:
        """Per cell, the style of the span covering it (-1: none). Spans narrower than `min_cells` cells are left
        to the marks, so microsecond-long groups do not paint a zoomed-out screen solid."""
        cells = len(edges) - 1
        out = np.full(cells, -1, dtype=np.int16)
        if not len(self.starts):
            return out
        t0, t1 = edges[0], edges[-1]
        sel = np.flatnonzero((self.starts < t1) & (self.ends > t0))
        if not len(sel):
            return out
        starts, ends, styles = self.starts[sel], self.ends[sel], self.styles[sel]
        c0 = np.clip(np.searchsorted(edges, starts, side="right") - 1, 0, cells - 1)
        c1 = np.clip(np.searchsorted(edges, ends, side="left"), 1, cells)
        wide = (c1 - c0 >= min_cells) | (styles == GROUP_STALE)
        for a, b, s in zip(c0[wide], c1[wide], styles[wide], strict=True):
            np.maximum(out[a:b], s, out=out[a:b])  # the later style number wins: groups over attachments
        return out


NO_SPANS = TrackSpans(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16))


@dataclass(slots=True)
class Spans:
    """All intervals of an index, by row key: ("pasid", p) for lifetimes, (device, pasid) for the rest."""

    index: RecordingIndex
    done: int = 0  # events scanned so far
    _spans: defaultdict[tuple[object, object], list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list))
    _open: dict[tuple[object, ...], tuple[int, int]] = field(default_factory=dict)  # key -> (start, style)
    _arrays: dict[tuple[object, object], TrackSpans] = field(default_factory=dict)
    owners: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))  # PASID -> names to match
    holders: defaultdict[int, dict[object, str]] = field(default_factory=lambda: defaultdict(dict))  # -> labels

    def update(self) -> None:
        """Scan the events added since the last call."""
        idx = self.index
        if self.done >= idx.n:
            return
        ids = [k for k in (idx.kind_id(str(name)) for name in _OPENING) if k is not None]
        kinds = idx.kinds[self.done:]
        was_enabled = gc.isenabled()
        gc.disable()  # decoding chunks makes many acyclic rows; the cyclic collector would only rescan them
        try:
            for i in (np.flatnonzero(np.isin(kinds, ids)) + self.done).tolist():
                self._apply(idx.row(i))
        finally:
            if was_enabled:
                gc.enable()
        self.done = idx.n
        self._arrays.clear()

    def _apply(self, row: list) -> None:  # type: ignore[type-arg]
        kind, ts, dev, pasid, f = row[1], row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS] or {}
        if kind in (Kind.PASID_ALLOC, Kind.SVA_BIND) and pasid is not None:
            self._note_owner(pasid, row, f)
        if kind == Kind.PASID_ALLOC:
            self._start(("pasid", pasid), ("pasid", pasid), ts, LIFETIME)
        elif kind == Kind.PASID_FREE:
            self._end(("pasid", pasid), ts)
        elif kind in (Kind.PASID_ATTACH, Kind.PASID_REPLACE):
            self._end((dev, pasid), ts)
            self._start((dev, pasid), (dev, pasid), ts, _ATTACH_STYLE.get(f.get("domain_type"), ATTACHED_OTHER))
        elif kind == Kind.PASID_DETACH:
            self._end((dev, pasid), ts)
        elif kind == Kind.PAGE_REQUEST:
            key = ("prg", dev, pasid, f.get("prg"))
            if key not in self._open:
                self._start(key, (dev, pasid), ts, GROUP)
        elif kind == Kind.PAGE_RESPONSE:
            key = ("prg", dev, pasid, f.get("prg"))
            start = self._open.get(key)
            if start is not None and ts - start[0] >= self.index.stale_ns:
                self._open[key] = (start[0], GROUP_STALE, start[2])
            self._end(key, ts)

    def _note_owner(self, pasid: int, row: list, f: dict) -> None:  # type: ignore[type-arg]
        """Names a filter or a label may use for this PASID: pid, comm, owner text, VM."""
        names = self.owners[pasid]
        for value in (row[R_PID], row[R_COMM], f.get("owner"), f.get("vm")):
            if value is not None:
                names.add(str(value).lower())
        who = row[R_PID] if row[R_PID] is not None else f.get("owner")
        label = f"vm {f['vm']}" if f.get("vm") else row[R_COMM] or f.get("owner")
        if who is not None and label:
            self.holders[pasid].setdefault(who, label)

    def _start(self, key: tuple[object, ...], row_key: tuple[object, object], ts: int, style: int) -> None:
        self._open[key] = (ts, style, row_key)

    def _end(self, key: tuple[object, ...], ts: int) -> None:
        opened = self._open.pop(key, None)
        if opened is not None:
            self._spans[opened[2]].append((opened[0], ts, opened[1]))

    def of(self, row_key: tuple[object, object]) -> TrackSpans:
        """The spans of a row, open ones running to the end (past the stale threshold they turn stale)."""
        got = self._arrays.get(row_key)
        if got is not None:
            return got
        closed = self._spans.get(row_key, [])
        now = self.index.end_ns
        still = [(s, OPEN_END, GROUP_STALE if st == GROUP and now - s >= self.index.stale_ns else st)
                 for s, st, rk in self._open.values() if rk == row_key]
        items = closed + still
        if not items:
            got = NO_SPANS
        else:
            a = np.array(items, dtype=np.int64)
            got = TrackSpans(a[:, 0], a[:, 1], a[:, 2].astype(np.int16))
        self._arrays[row_key] = got
        return got
