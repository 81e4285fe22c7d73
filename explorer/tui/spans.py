"""The timeline's bars: PASID lifetimes, attached domains and outstanding page-request groups, as drawn.

The intervals are the model's (`RecordingIndex.intervals`, filled by the simulator as it replays: see
explorer/intervals.py); this module only lays them out per timeline row for drawing (`TrackSpans`). It also
notes, from the allocation, bind and attach events, who held each PASID (names a filter or a row label uses):
fed the rows the model decodes as it replays a recording (`feed`), or decoding them itself (`update`), which
also follows a live capture. Nothing here imports Textual.
"""

from __future__ import annotations

import threading
from array import array
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..collector import collector_paused
from ..events import R_COMM, R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_PID, Kind, Row, machine_of
from ..index import RecordingIndex
from ..intervals import Interval, IntervalKind

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
    def of(cls, items: list[tuple[int, int, int]] | np.ndarray) -> TrackSpans:
        """Spans from (start, end, style) triples (or an array of them as rows), in any order."""
        if not len(items):
            return NO_SPANS
        a = np.asarray(items, dtype=np.int64)
        lengths = np.maximum(a[:, 1].astype(np.float64) - a[:, 0], 1.0)
        length_class = np.log2(lengths).astype(np.int64)
        order = np.lexsort((a[:, 0], length_class))
        a, length_class, lengths = a[order], length_class[order], lengths[order]
        cuts = [0, *(np.flatnonzero(np.diff(length_class)) + 1).tolist(), len(a)]
        classes = tuple((lo, hi, int(lengths[lo:hi].max()) + 1) for lo, hi in zip(cuts, cuts[1:], strict=False))
        return cls(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].astype(np.int8), classes)

    def rows(self) -> np.ndarray:
        """The spans as (start, end, style) rows, to lay out again with more."""
        return np.column_stack((self.starts, self.ends, self.styles.astype(np.int64)))

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

    def within(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start, end and style of the spans overlapping [t0, t1)."""
        sel = self._overlapping(t0, t1)
        return self.starts[sel], self.ends[sel], self.styles[sel]

    def cover(self, edges: np.ndarray, min_cells: int = 1) -> np.ndarray:
        """Per cell, the style of the span covering it (-1: none). Spans narrower than `min_cells` cells are left
        to the marks, so microsecond-long groups do not paint a zoomed-out screen solid."""
        if not self.classes:
            return np.full(len(edges) - 1, -1, dtype=np.int16)
        return _painted(edges, min_cells, *self.within(int(edges[0]), int(edges[-1])))


def _painted(edges: np.ndarray, min_cells: int, starts: np.ndarray, ends: np.ndarray,
             styles: np.ndarray) -> np.ndarray:
    """Per cell of `edges`, the style of the span covering it (-1: none), of the spans given."""
    cells = len(edges) - 1
    out = np.full(cells, -1, dtype=np.int16)
    if not len(starts):
        return out
    c0 = np.clip(np.searchsorted(edges, starts, side="right") - 1, 0, cells - 1)
    c1 = np.clip(np.searchsorted(edges, ends, side="left"), 1, cells)
    drawn = ((c1 - c0 >= min_cells) | (styles == GROUP_STALE)) & (c1 > c0)
    c0, c1, styles = c0[drawn], c1[drawn], styles[drawn]
    for style in np.unique(styles).tolist():  # in rising order: the later style number wins (groups over
        mine = styles == style  # attachments); the cells its spans cover, counted by a running sum
        covered = np.cumsum(np.bincount(c0[mine], minlength=cells + 1) - np.bincount(c1[mine], minlength=cells + 1))
        out[covered[:cells] > 0] = style
    return out


NO_SPANS = TrackSpans(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8), ())


@dataclass(frozen=True, slots=True)
class RowBars:
    """A row's bars as drawn: the closed ones, laid out once as the model closes them (17 bytes a bar, kept
    nowhere else), and those open now (a few, laid out again as the recording's end moves)."""

    closed: TrackSpans
    open: TrackSpans

    def rows(self) -> np.ndarray:
        """Every bar of the row, closed then open, as (start, end, style) rows."""
        return np.concatenate([self.closed.rows(), self.open.rows()])

    def cover(self, edges: np.ndarray, min_cells: int = 1) -> np.ndarray:
        """As `TrackSpans.cover`, over both parts."""
        if not self.open.classes:
            return self.closed.cover(edges, min_cells)
        t0, t1 = int(edges[0]), int(edges[-1])
        closed, still = self.closed.within(t0, t1), self.open.within(t0, t1)
        return _painted(edges, min_cells, *(np.concatenate(pair) for pair in zip(closed, still, strict=True)))


NO_BARS = RowBars(NO_SPANS, NO_SPANS)


RowKey = tuple[object, object]  # ("pasid", p) for a PASID's lifetime, (device, pasid) for the rest


def lifetime_key(pasid: object, machine: int | None) -> RowKey:
    """The row of a PASID number's lifetimes: ("pasid", p), or ("pasid", (machine, p)) for another machine's
    allocator than the first's (a merged recording's guest)."""
    return ("pasid", (machine, pasid) if machine else pasid)
_NAMING_KINDS = (Kind.PASID_ALLOC, Kind.SVA_BIND, Kind.PASID_ATTACH, Kind.PASID_REPLACE)


def bar_of(iv: Interval) -> tuple[RowKey, int] | None:
    """Where and how an interval is drawn: its timeline row and style; None for one the timeline does not draw
    (a bind shows as the SVA attachment it makes)."""
    if iv.kind == IntervalKind.LIFETIME:
        return lifetime_key(iv.key, iv.machine), LIFETIME
    if iv.kind == IntervalKind.ATTACHMENT:
        return (iv.device, iv.pasid), _ATTACH_STYLE.get(iv.record.domain_type, ATTACHED_OTHER)
    if iv.kind == IntervalKind.GROUP:
        return (iv.device, iv.pasid), GROUP
    return None


@dataclass(slots=True)
class Spans:
    """The bars of an index by row key, and who held each row's PASID. Bars show once the names have been read
    through every event (`done`), so a timeline never draws them half made."""

    index: RecordingIndex
    done: int = 0  # events scanned for names so far
    _closed: dict[RowKey, TrackSpans] = field(default_factory=dict)  # closed bars by row
    _closed_seen: int = 0  # the model's closed intervals laid out so far
    # The bars open now: their numbers by row, and the rows laid out so far (a row only when a frame asks for it:
    # a live capture's every batch moves them, and laying out 200,000 rows took seconds), replaced together
    _open: tuple[dict[RowKey, array[int]], dict[RowKey, TrackSpans]] = field(default_factory=lambda: ({}, {}))
    _laid_at: tuple[int, int, int] = (-1, -1, -1)  # (closed, opened, end of the recording) when laid out
    # The model's worker (`prepare`) and the UI thread (`of`) both lay out: one at a time, so that neither adds the
    # same closed bars twice nor reads the other's half-made layout
    _laying: threading.Lock = field(default_factory=threading.Lock)
    # by row key, ("pasid", p) for the number or (device, p) for one device's use of it: names a filter matches
    owners: defaultdict[RowKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    holders: defaultdict[RowKey, dict[object, str]] = field(  # -> holder -> label
        default_factory=lambda: defaultdict(dict))

    def update(self) -> None:
        """Read the names in the events added since the last call."""
        idx = self.index
        if self.done >= idx.n:
            return
        ids = [k for k in map(idx.kind_id, _NAMING_KINDS) if k is not None]
        kinds = idx.kinds[self.done:]
        with collector_paused():
            for i in (np.flatnonzero(np.isin(kinds, ids)) + self.done).tolist():
                self._owned(idx.row(i))
        self.done = idx.n

    def feed(self, rows: list[Row | None], positions: list[int]) -> None:
        """One chunk's rows as the model replays them (see `RecordingIndex.run_model`), so the names cost no
        decoding of their own; `positions` covers every row of the kinds that name a holder. Fed from the
        recording's first chunk on, chunk after chunk (`done` counts the events seen)."""
        for j in positions:
            row = rows[j]
            if row is not None and row[R_KIND] in _NAMING_KINDS:
                self._owned(row)
        self.done += len(rows)

    def _owned(self, row: Row) -> None:
        """The holder an allocation, bind or attachment names, for filters and labels."""
        pasid = row[R_PASID]
        if pasid is not None:
            f = row[R_FIELDS] or {}
            self._note_owner(lifetime_key(pasid, machine_of(row)), row, f)
            if row[R_DEVICE] is not None:
                self._note_owner((row[R_DEVICE], pasid), row, f)

    def _note_owner(self, key: RowKey, row: Row, f: dict[str, object]) -> None:
        """Names a filter or a label may use for this row: pid, comm, owner text, VM."""
        names = self.owners[key]
        for value in (row[R_PID], row[R_COMM], f.get("owner"), f.get("vm")):
            if value is not None:
                names.add(str(value).lower())
        who = row[R_PID] if row[R_PID] is not None else f.get("owner")
        label = f"vm {f['vm']}" if f.get("vm") else row[R_COMM] or f.get("owner")
        if who is not None and label:
            self.holders[key].setdefault(who, label)  # type: ignore[arg-type]

    def _lay(self, out: array[int], start: int, end: int, style: int, seen: int | None = None) -> None:
        """Append a span as drawn to `out`, as (start, end, style) numbers: a group is amber until it passes the
        stale threshold and red from there on. `seen`: how long an open group has been seen open (a closed
        one: its end)."""
        stale_at = start + self.index.stale_ns
        if style != GROUP or (end if seen is None else seen) <= stale_at:
            out.extend((start, end, style))
        else:
            out.extend((start, stale_at, GROUP, stale_at, end, GROUP_STALE))

    def of(self, row_key: RowKey) -> RowBars:
        """The bars of a row, open ones running to the end (a group open past the stale threshold turns red
        there)."""
        if self.done < self.index.n:
            return NO_BARS
        self._catch_up(wait=False)
        numbers, laid = self._open
        still = laid.get(row_key)
        if still is None:
            held = numbers.get(row_key)
            still = laid[row_key] = NO_SPANS if held is None else TrackSpans.of(
                np.frombuffer(held, np.int64).reshape(-1, 3))
        return RowBars(self._closed.get(row_key, NO_SPANS), still)

    def prepare(self) -> None:
        """Lay out every row's bars now: the model's worker does, so that no frame waits for the first look at
        the bars (a row of a big recording holds thousands)."""
        if self.done >= self.index.n:
            self._catch_up()

    def _catch_up(self, wait: bool = True) -> None:
        """Lay out what the model closed since last asked (each row's closed bars laid out again with the new
        ones: the numbers go through a flat array, no object per bar), and what it holds open now. Without `wait`
        (a frame), while the other thread lays out, the layout it has so far is drawn rather than waited for."""
        if self._laying.acquire(blocking=wait):
            try:
                self._lay_out()
            finally:
                self._laying.release()

    def _lay_out(self) -> None:
        store = self.index.intervals
        version = (store.closed_count, store.opened, self.index.end_ns)
        if self._laid_at == version:
            return
        new: defaultdict[RowKey, array[int]] = defaultdict(lambda: array("q"))
        for iv in store.closed_since(self._closed_seen, version[0]):
            bar = bar_of(iv)
            if bar is not None:
                self._lay(new[bar[0]], iv.start_ns, iv.end_or(0), bar[1])
        self._closed_seen = version[0]
        for key, numbers in new.items():
            added = np.frombuffer(numbers, np.int64).reshape(-1, 3)
            earlier = self._closed.get(key)
            self._closed[key] = TrackSpans.of(added if earlier is None else np.concatenate([earlier.rows(), added]))
        del new
        still: defaultdict[RowKey, array[int]] = defaultdict(lambda: array("q"))
        for iv in store.open_now():
            bar = bar_of(iv)
            if bar is not None:
                self._lay(still[bar[0]], iv.start_ns, int(OPEN_END), bar[1], seen=self.index.end_ns)
        self._open = (dict(still), {})
        self._laid_at = version
