"""What a stretch of a recording holds, counted: events per kind, faults per (device, PASID), and page-request
latency per device, as a timeline tool measures between two markers.

Everything is numpy over the index's columns and the model's closed intervals (`Intervals.closed_columns`), never
a Python step per event or per group. A long range costs no more than a short one: counts are kept at every
BLOCK-th event (and every GROUP_BLOCK-th group), so a range is the difference of two of them plus the few events at
its ends, and a percentile is searched for among sorted blocks (`DeviceGroups`) rather than partitioned out of every
group in the range. A latency is
the model's own interval of a page-request group, from its first request to the response that closed it: a group
the kernel answered itself at a detach (no response event) or one still waiting has no latency, and is counted
apart rather than given one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import numpy as np

from .events import Kind
from .index import RecordingIndex
from .intervals import IntervalKind, Intervals
from .track_table import TrackKey

# Latency histogram bucket edges: 1-2-5 steps from 100 ns to 5 s; the first bucket holds everything below 100 ns,
# the last everything from 5 s on.
LATENCY_EDGES: tuple[int, ...] = tuple(m * 10 ** e for e in range(2, 10) for m in (1, 2, 5))
PERCENTILES = (50, 99)


@dataclass(frozen=True, slots=True)
class DeviceLatency:
    """One device's page-request groups that opened in the range."""

    device: str
    answered: int  # closed by a response event: these have a latency
    p50_ns: int  # nearest rank: always the latency of a real group
    p99_ns: int
    max_ns: int
    buckets: tuple[int, ...]  # answered groups per bucket: below LATENCY_EDGES[0], then one per edge
    drained: int  # closed by a detach, replace or unbind: the kernel answered them itself, no response seen
    unanswered: int  # still waiting at the model's latest event (the recording's end, once modelled)


@dataclass(frozen=True, slots=True)
class RangeStats:
    """The events in [t0, t1), and the page-request groups whose first request lies there."""

    t0: int
    t1: int
    events: int
    kinds: list[tuple[str, int]]  # most first
    faults: list[tuple[TrackKey, int]]  # most first
    latency: list[DeviceLatency] | None  # None until the model has replayed the whole recording


@dataclass(frozen=True, slots=True)
class Columns:
    """An index's columns as they are at one moment: taken on the thread that feeds the index (live rows arrive
    on the UI's), counted on any other."""

    n: int
    ts: np.ndarray
    ts_max: np.ndarray  # the running maximum of ts: searchable even where times go back
    kinds: np.ndarray
    track_of: np.ndarray
    tracks: Sequence[TrackKey]  # the index's own table (it only grows)
    kind_names: list[str]
    model_done: bool

    @classmethod
    def of(cls, index: RecordingIndex) -> Columns:
        return cls(index.n, index.ts, index.ts_max, index.kinds, index.track_of, index.tracks, index.kind_names,
                   index.model_done)

    @property
    def ordered(self) -> bool:
        """Whether times never go back (then a range is a slice of the columns)."""
        return self.ts_max is self.ts or bool(np.array_equal(self.ts, self.ts_max))

    def kind_id(self, kind: str) -> int | None:
        return self.kind_names.index(kind) if kind in self.kind_names else None


def range_stats(index: RecordingIndex, t0: int, t1: int, columns: Columns | None = None) -> RangeStats:
    """Count what lies in [t0, t1) (of `columns`, taken from `index` now when not given). Latencies need the
    model to have replayed the recording (a group opened in the range may be answered after it), so until then
    `latency` is None."""
    c = Columns.of(index) if columns is None else columns
    lo, hi = (int(i) for i in np.searchsorted(c.ts_max, (t0, t1), side="left"))  # nothing before lo is in range
    table = count_table(index, c)
    if table is not None:  # ordered: a range is a slice of the columns, counted by blocks
        per_kind, per_track = table.count(c, lo, hi)
    elif c.ordered:
        per_kind, per_track = _count(c, slice(lo, hi))
    else:
        per_kind, per_track = _count(c, np.flatnonzero((c.ts[lo:] >= t0) & (c.ts[lo:] < t1)) + lo)
    names = c.kind_names
    by_kind = sorted(((names[k], int(m)) for k, m in enumerate(per_kind.tolist()) if m), key=lambda x: (-x[1], x[0]))
    faults = sorted(((c.tracks[t], int(per_track[t])) for t in np.flatnonzero(per_track).tolist()),
                    key=lambda x: (-x[1], str(x[0].device), -1 if x[0].pasid is None else x[0].pasid))
    latency = group_latency(group_table(index, c), t0, t1) if c.model_done else None
    return RangeStats(t0, t1, int(per_kind.sum()), by_kind, faults, latency)


def _count(c: Columns, inside: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Events per kind and faults per track among the events `inside` (a slice or positions)."""
    kinds = c.kinds[inside]
    per_kind = np.bincount(kinds, minlength=len(c.kind_names))
    fault_id = c.kind_id(str(Kind.FAULT))
    faults = c.track_of[inside][kinds == fault_id] if fault_id is not None else np.zeros(0, np.int64)
    return per_kind, np.bincount(faults, minlength=len(c.tracks))


BLOCK = 1 << 16  # events between two rows of a CountTable
GROUP_BLOCK = 1 << 14  # page-request groups of a device between two sorted blocks of DeviceGroups


@dataclass(frozen=True, slots=True)
class CountTable:
    """Events per kind and faults per track before every BLOCK-th event of an ordered recording (cumulative), so
    that a range of any length is counted as two rows' difference plus the events at its ends."""

    n: int
    kinds: np.ndarray  # (blocks + 1, kinds)
    faults: np.ndarray  # (blocks + 1, tracks)

    @classmethod
    def of(cls, c: Columns) -> CountTable:
        blocks = c.n // BLOCK
        kinds = np.zeros((blocks + 1, len(c.kind_names)), np.int64)
        faults = np.zeros((blocks + 1, len(c.tracks)), np.int64)
        for b in range(blocks):
            kinds[b + 1], faults[b + 1] = _count(c, slice(b * BLOCK, (b + 1) * BLOCK))
        return cls(c.n, np.cumsum(kinds, axis=0), np.cumsum(faults, axis=0))

    def count(self, c: Columns, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Events per kind and faults per track among events lo..hi-1."""
        first, last = -(-lo // BLOCK), hi // BLOCK  # the whole blocks inside
        if first >= last:
            return _count(c, slice(lo, hi))
        head, tail = _count(c, slice(lo, first * BLOCK)), _count(c, slice(last * BLOCK, hi))
        return (self.kinds[last] - self.kinds[first] + head[0] + tail[0],
                self.faults[last] - self.faults[first] + head[1] + tail[1])


_COUNTS: WeakKeyDictionary[Intervals, tuple[tuple[int, int], np.ndarray, CountTable | None]] = WeakKeyDictionary()


def count_table(index: RecordingIndex, c: Columns) -> CountTable | None:
    """The index's count table for these columns (made again when they changed); None where times go back or
    the recording is too short to need one."""
    got = _counts_made(index, c)
    if got is None:
        table = CountTable.of(c) if c.n >= 2 * BLOCK and c.ordered else None
        got = _COUNTS[index.intervals] = ((c.n, len(c.tracks)), _base(c.kinds), table)
    return got[2]


def _base(a: np.ndarray) -> np.ndarray:
    return a.base if a.base is not None else a


def _counts_made(index: RecordingIndex, c: Columns) -> tuple[tuple[int, int], np.ndarray, CountTable | None] | None:
    got = _COUNTS.get(index.intervals)
    return got if got is not None and got[0] == (c.n, len(c.tracks)) and got[1] is _base(c.kinds) else None


def counted_at_once(index: RecordingIndex, c: Columns) -> bool:
    """Whether a range of these columns is counted in milliseconds, whatever its length: an earlier count made
    the tables it needs (the first takes about a second at 10M events)."""
    counts = _counts_made(index, c)
    if counts is None or counts[2] is None:
        return False
    groups = _TABLES.get(index.intervals)
    return not c.model_done or groups is not None and groups[0] == _groups_key(index.intervals, c)


ANSWERED, DRAINED, UNANSWERED = 0, 1, 2  # a group's fate: closed by a response, closed otherwise, still open


@dataclass(frozen=True, slots=True)
class GroupTable:
    """Every page-request group the model has seen, sorted by first request: made once per state of the model,
    then each range is a slice of it."""

    devices: list[str]
    start_ns: np.ndarray
    device: np.ndarray  # uint16 (or wider): a position in `devices`, the group's first request's device
    fate: np.ndarray  # ANSWERED, DRAINED or UNANSWERED
    latency_ns: np.ndarray  # from first request to response (0 unless ANSWERED)
    _by_device: dict[int, DeviceGroups] = field(default_factory=dict)

    def of_device(self, d: int) -> DeviceGroups:
        """Device number `d`'s groups, sorted into blocks the first time a range asks for them."""
        got = self._by_device.get(d)
        if got is None:
            got = self._by_device[d] = DeviceGroups.of(self, d)
        return got

    @classmethod
    def of(cls, index: RecordingIndex, c: Columns) -> GroupTable:
        store = index.intervals
        closed = store.closed_columns(IntervalKind.GROUP)
        # outstanding groups are few (the model holds each in its state): read one by one
        waiting = [(iv.start_ns, iv.open_idx) for iv in store.open_now(kind=IntervalKind.GROUP) if iv.open_idx < c.n]
        # (live, the model may have gone past these columns: what it closed later is in the next table)
        keep = closed.close_idx < c.n
        closed_by = closed.close_idx[keep]
        answered = (closed_by >= 0) & (c.kinds[np.maximum(closed_by, 0)] == c.kind_id(str(Kind.PAGE_RESPONSE)))
        start = np.concatenate([closed.start_ns[keep], np.array([w[0] for w in waiting], np.int64)])
        opened = np.concatenate([closed.open_idx[keep], np.array([w[1] for w in waiting], np.int64)])
        fate = np.concatenate([np.where(answered, ANSWERED, DRAINED), np.full(len(waiting), UNANSWERED)])
        latency = np.concatenate([np.where(answered, closed.end_ns[keep] - closed.start_ns[keep], 0),
                                  np.zeros(len(waiting), np.int64)])
        devices = sorted({t.device for t in c.tracks if t.device is not None})
        code_of = {d: i for i, d in enumerate(devices)}
        width = np.uint16 if len(devices) < 1 << 16 else np.int64  # 16 bits: a stable sort by device is a radix sort
        track_device = np.array([code_of.get(t.device, 0) for t in c.tracks] or [0], width)  # type: ignore[arg-type]
        order = np.argsort(start, kind="stable")
        return cls(devices, start[order], track_device[c.track_of[opened[order]]] if len(order) else
                   np.zeros(0, width), fate[order].astype(np.uint8), latency[order])


_TABLES: WeakKeyDictionary[Intervals, tuple[tuple[int, ...], GroupTable]] = WeakKeyDictionary()


def group_table(index: RecordingIndex, c: Columns) -> GroupTable:
    """The index's group table, made again only when the model has opened or closed groups since."""
    store = index.intervals
    key = _groups_key(store, c)
    got = _TABLES.get(store)
    if got is None or got[0] != key:
        got = _TABLES[store] = (key, GroupTable.of(index, c))
    return got[1]


def _groups_key(store: Intervals, c: Columns) -> tuple[int, ...]:
    return store.opened, store.closed_count, c.n


def group_latency(table: GroupTable, t0: int, t1: int) -> list[DeviceLatency]:
    """Per device, the page-request groups whose first request lies in [t0, t1): their latencies, and how many
    were drained or are still unanswered."""
    out = []
    for d, name in enumerate(table.devices):
        got = table.of_device(d).latency(name, t0, t1)
        if got is not None:
            out.append(got)
    return out


@dataclass(frozen=True, slots=True)
class DeviceGroups:
    """One device's page-request groups by first request. The answered ones' latencies are kept GROUP_BLOCK at a
    time sorted (as `keys`: block << 32 | rank, a rank being a place in `ordered`, all of them sorted), with the
    histogram before each block (cumulative): a range's histogram is two rows' difference plus its ends, and a
    percentile the rank whose count of smaller ones is right, found by bisection (a search per block, not a look
    at every group)."""

    starts: np.ndarray  # answered groups' first requests, sorted
    rank: np.ndarray  # each one's place in `ordered`
    ordered: np.ndarray  # their latencies sorted
    keys: np.ndarray  # per whole block, block << 32 | rank, sorted
    bucket: np.ndarray  # each one's histogram bucket
    buckets: np.ndarray  # (whole blocks + 1, buckets) cumulative
    drained: np.ndarray  # first requests of the groups drained, sorted
    waiting: np.ndarray  # of those still unanswered

    @classmethod
    def of(cls, table: GroupTable, d: int) -> DeviceGroups:
        mine = table.device == d
        answered = mine & (table.fate == ANSWERED)
        latency = table.latency_ns[answered]
        order = np.argsort(latency, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        whole = len(rank) // GROUP_BLOCK
        blocks = np.arange(whole, dtype=np.int64)
        keys = (np.sort(rank[:whole * GROUP_BLOCK].reshape(whole, GROUP_BLOCK), axis=1) | (blocks << 32)[:, None])
        n_buckets = len(LATENCY_EDGES) + 1
        bucket = np.searchsorted(LATENCY_EDGES, latency, side="right").astype(np.uint8)
        per_block = np.bincount(np.repeat(blocks, GROUP_BLOCK) * n_buckets + bucket[:whole * GROUP_BLOCK],
                                minlength=whole * n_buckets).reshape(whole, n_buckets)
        cumulative = np.concatenate([np.zeros((1, n_buckets), np.int64), np.cumsum(per_block, axis=0)])
        return cls(table.start_ns[answered], rank, latency[order], keys.ravel(), bucket, cumulative,
                   table.start_ns[mine & (table.fate == DRAINED)], table.start_ns[mine & (table.fate == UNANSWERED)])

    def latency(self, name: str, t0: int, t1: int) -> DeviceLatency | None:
        """The groups whose first request lies in [t0, t1) (None: none)."""
        a, b = (int(i) for i in np.searchsorted(self.starts, (t0, t1)))
        drained, waiting = (int(np.diff(np.searchsorted(x, (t0, t1)))[0]) for x in (self.drained, self.waiting))
        m = b - a
        if not (m or drained or waiting):
            return None
        first, last = -(-a // GROUP_BLOCK), b // GROUP_BLOCK  # the whole blocks inside
        n_buckets = len(LATENCY_EDGES) + 1
        if first >= last:
            first = last = 0
            ends = np.sort(self.rank[a:b])
            buckets = np.bincount(self.bucket[a:b], minlength=n_buckets)
        else:
            ends = np.sort(np.concatenate([self.rank[a:first * GROUP_BLOCK], self.rank[last * GROUP_BLOCK:b]]))
            buckets = self.buckets[last] - self.buckets[first] + np.bincount(
                np.concatenate([self.bucket[a:first * GROUP_BLOCK], self.bucket[last * GROUP_BLOCK:b]]),
                minlength=n_buckets)
        ranks = [max((p * m + 99) // 100, 1) - 1 for p in PERCENTILES] + [m - 1]  # nearest rank: a real group's
        p50, p99, top = (self._kth(k, ends, first, last) for k in ranks) if m else (0, 0, 0)
        return DeviceLatency(name, m, p50, p99, top, tuple(buckets.tolist()), drained, waiting)

    def _kth(self, k: int, ends: np.ndarray, first: int, last: int) -> int:
        """The latency of rank k (from 0) among the sorted ranks `ends` and the whole blocks first..last-1."""
        blocks = np.arange(first, last, dtype=np.int64)
        starts = int(blocks.sum()) * GROUP_BLOCK  # where each block's keys begin
        lo, hi = 0, len(self.ordered) - 1  # the answer's rank lies in lo..hi
        while lo < hi:
            mid = (lo + hi) // 2
            upto = int(np.searchsorted(ends, mid, side="right")) + \
                int(np.searchsorted(self.keys, (blocks << 32) | mid, side="right").sum()) - starts
            if upto > k:
                hi = mid
            else:
                lo = mid + 1
        return int(self.ordered[lo])
