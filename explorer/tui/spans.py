"""Intervals the timeline draws as bars: PASID lifetimes, attached domains and outstanding page-request groups.

Built in one forward pass over the few kinds that open or close an interval: fed the rows the model decodes as it
replays a recording (`feed`), or decoding them itself (`update`), which also extends them as a live capture adds
events; nothing here imports Textual.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..collector import collector_paused
from ..events import R_COMM, R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_PID, R_TS, Kind
from ..index import RecordingIndex

LIFETIME, ATTACHED_SVA, ATTACHED_PAGING, ATTACHED_NESTED, ATTACHED_OTHER, GROUP, GROUP_STALE = range(7)
SPAN_NAMES = ("PASID allocated", "attached: SVA (a process)", "attached: paging (iommufd IOAS)",
              "attached: nested (a guest)", "attached: other domain", "page-request group outstanding",
              "page-request group past the stale threshold")
_ATTACH_STYLE = {"sva": ATTACHED_SVA, "paging": ATTACHED_PAGING, "nested": ATTACHED_NESTED}
OPEN_END = np.iinfo(np.int64).max  # still open at the end of what has been seen


@dataclass(slots=True)
class TrackSpans:
    """The intervals of one row: parallel arrays of start, end and style, grouped by length class (log2 of the
    duration) and sorted by start within a class, so a frame finds the spans it shows by binary search."""

    starts: np.ndarray
    ends: np.ndarray
    styles: np.ndarray
    classes: tuple[tuple[int, int, int], ...]  # (first, end, longest duration) of each class's slice

    @classmethod
    def of(cls, items: list[tuple[int, int, int]]) -> TrackSpans:
        """Spans from (start, end, style) triples, in any order."""
        if not items:
            return NO_SPANS
        a = np.array(items, dtype=np.int64)
        lengths = np.maximum(a[:, 1].astype(np.float64) - a[:, 0], 1.0)
        length_class = np.log2(lengths).astype(np.int64)
        order = np.lexsort((a[:, 0], length_class))
        a, length_class, lengths = a[order], length_class[order], lengths[order]
        cuts = [0, *(np.flatnonzero(np.diff(length_class)) + 1).tolist(), len(a)]
        classes = tuple((lo, hi, int(lengths[lo:hi].max()) + 1) for lo, hi in zip(cuts, cuts[1:], strict=False))
        return cls(a[:, 0], a[:, 1], a[:, 2].astype(np.int16), classes)

    def _overlapping(self, t0: int, t1: int) -> np.ndarray:
        """Indices of the spans overlapping [t0, t1): in each class only spans starting less than its longest
        duration before t0 can reach t0, so the cost follows what is on screen, not the row's history."""
        picks = []
        floor = int(np.iinfo(np.int64).min)
        for lo, hi, longest in self.classes:
            starts = self.starts[lo:hi]
            a = lo + int(np.searchsorted(starts, max(t0 - longest, floor), side="left"))
            b = lo + int(np.searchsorted(starts, t1, side="left"))
            if a < b:
                picks.append(np.arange(a, b))
        if not picks:
            return np.zeros(0, dtype=np.int64)
        sel = np.concatenate(picks)
        return sel[self.ends[sel] > t0]

    def cover(self, edges: np.ndarray, min_cells: int = 1) -> np.ndarray:
        """Per cell, the style of the span covering it (-1: none). Spans narrower than `min_cells` cells are left
        to the marks, so microsecond-long groups do not paint a zoomed-out screen solid."""
        cells = len(edges) - 1
        out = np.full(cells, -1, dtype=np.int16)
        sel = self._overlapping(int(edges[0]), int(edges[-1]))
        if not len(sel):
            return out
        starts, ends, styles = self.starts[sel], self.ends[sel], self.styles[sel]
        c0 = np.clip(np.searchsorted(edges, starts, side="right") - 1, 0, cells - 1)
        c1 = np.clip(np.searchsorted(edges, ends, side="left"), 1, cells)
        wide = (c1 - c0 >= min_cells) | (styles == GROUP_STALE)
        for a, b, s in zip(c0[wide], c1[wide], styles[wide], strict=True):
            np.maximum(out[a:b], s, out=out[a:b])  # the later style number wins: groups over attachments
        return out


NO_SPANS = TrackSpans(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16), ())


@dataclass(slots=True)
class Spans:
    """All intervals of an index, by row key: ("pasid", p) for lifetimes, (device, pasid) for the rest."""

    index: RecordingIndex
    done: int = 0  # events scanned so far
    _spans: defaultdict[tuple[object, object], list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list))
    # key -> (start, style, row key)
    _open: dict[tuple[object, ...], tuple[int, int, tuple[object, object]]] = field(default_factory=dict)
    _arrays: dict[tuple[object, object], TrackSpans] = field(default_factory=dict)
    # by row key, ("pasid", p) for the number or (device, p) for one device's use of it: names a filter matches
    owners: defaultdict[tuple[object, object], set[str]] = field(default_factory=lambda: defaultdict(set))
    holders: defaultdict[tuple[object, object], dict[object, str]] = field(  # -> holder -> label
        default_factory=lambda: defaultdict(dict))

    def update(self) -> None:
        """Scan the events added since the last call."""
        idx = self.index
        if self.done >= idx.n:
            return
        handlers = self._table()
        ids = [k for k in map(idx.kind_id, handlers) if k is not None]
        kinds = idx.kinds[self.done:]
        with collector_paused():
            for i in (np.flatnonzero(np.isin(kinds, ids)) + self.done).tolist():
                row = idx.row(i)
                handlers[row[R_KIND]](row)
        self.done = idx.n
        self._arrays.clear()

    def feed(self, rows: list[list | None], positions: list[int]) -> None:  # type: ignore[type-arg]
        """One chunk's rows as the model replays them (see `RecordingIndex.run_model`), so the bars cost no
        decoding of their own; `positions` covers every row of the kinds that open or close a bar. Fed from the
        recording's first chunk on, chunk after chunk (`done` counts the events seen)."""
        handlers = self._table()
        for j in positions:
            row = rows[j]
            if row is not None and (handle := handlers.get(row[R_KIND])) is not None:
                handle(row)
        self.done += len(rows)

    def _table(self) -> dict[str, Callable[[list], None]]:  # type: ignore[type-arg]
        """What each kind that opens or closes a bar does (a table: the model's pass calls it for every page
        request and response)."""
        return {Kind.PAGE_REQUEST: self._request, Kind.PAGE_RESPONSE: self._response, Kind.PASID_ALLOC: self._alloc,
                Kind.PASID_FREE: self._free, Kind.PASID_ATTACH: self._attach, Kind.PASID_REPLACE: self._attach,
                Kind.PASID_DETACH: self._detach, Kind.SVA_BIND: self._owned}

    def _request(self, row: list) -> None:  # type: ignore[type-arg]
        key = ("prg", row[R_DEVICE], row[R_PASID], (row[R_FIELDS] or {}).get("prg"))
        if key not in self._open:
            self._start(key, (row[R_DEVICE], row[R_PASID]), row[R_TS], GROUP)

    def _response(self, row: list) -> None:  # type: ignore[type-arg]
        self._end(("prg", row[R_DEVICE], row[R_PASID], (row[R_FIELDS] or {}).get("prg")), row[R_TS])

    def _owned(self, row: list) -> None:  # type: ignore[type-arg]
        """The holder an allocation, bind or attachment names, for filters and labels."""
        pasid = row[R_PASID]
        if pasid is not None:
            f = row[R_FIELDS] or {}
            self._note_owner(("pasid", pasid), row, f)
            if row[R_DEVICE] is not None:
                self._note_owner((row[R_DEVICE], pasid), row, f)

    def _alloc(self, row: list) -> None:  # type: ignore[type-arg]
        self._owned(row)
        pasid = row[R_PASID]
        self._start(("pasid", pasid), ("pasid", pasid), row[R_TS], LIFETIME)

    def _free(self, row: list) -> None:  # type: ignore[type-arg]
        self._end(("pasid", row[R_PASID]), row[R_TS])

    def _attach(self, row: list) -> None:  # type: ignore[type-arg]
        self._owned(row)
        key, ts = (row[R_DEVICE], row[R_PASID]), row[R_TS]
        self._end(key, ts)
        self._start(key, key, ts, _ATTACH_STYLE.get((row[R_FIELDS] or {}).get("domain_type"), ATTACHED_OTHER))

    def _detach(self, row: list) -> None:  # type: ignore[type-arg]
        self._end((row[R_DEVICE], row[R_PASID]), row[R_TS])

    def _note_owner(self, key: tuple[object, object], row: list, f: dict) -> None:  # type: ignore[type-arg]
        """Names a filter or a label may use for this row: pid, comm, owner text, VM."""
        names = self.owners[key]
        for value in (row[R_PID], row[R_COMM], f.get("owner"), f.get("vm")):
            if value is not None:
                names.add(str(value).lower())
        who = row[R_PID] if row[R_PID] is not None else f.get("owner")
        label = f"vm {f['vm']}" if f.get("vm") else row[R_COMM] or f.get("owner")
        if who is not None and label:
            self.holders[key].setdefault(who, label)

    def _start(self, key: tuple[object, ...], row_key: tuple[object, object], ts: int, style: int) -> None:
        self._open[key] = (ts, style, row_key)

    def _end(self, key: tuple[object, ...], ts: int) -> None:
        opened = self._open.pop(key, None)
        if opened is not None:
            self._spans[opened[2]] += self._pieces(opened[0], ts, opened[1])

    def _pieces(self, start: int, end: int, style: int, seen: int | None = None) -> list[tuple[int, int, int]]:
        """A span as drawn: a group is amber until it passes the stale threshold and red from there on. `seen`:
        how long an open group has been seen open (a closed one: its end)."""
        stale_at = start + self.index.stale_ns
        if style != GROUP or (end if seen is None else seen) <= stale_at:
            return [(start, end, style)]
        return [(start, stale_at, GROUP), (stale_at, end, GROUP_STALE)]

    def of(self, row_key: tuple[object, object]) -> TrackSpans:
        """The spans of a row, open ones running to the end (a group open past the stale threshold turns red
        there)."""
        got = self._arrays.get(row_key)
        if got is not None:
            return got
        items = list(self._spans.get(row_key, []))
        for s, st, rk in self._open.values():
            if rk == row_key:
                items += self._pieces(s, OPEN_END, st, seen=self.index.end_ns)
        got = self._arrays[row_key] = TrackSpans.of(items)
        return got
