"""What a stretch of a recording holds, counted: events per kind, faults per (device, PASID), and page-request
latency per device, as a timeline tool measures between two markers.

Everything is numpy over the index's columns and the model's closed intervals (`Intervals.closed_columns`), never
a Python step per event or per group, so a range of a million events is counted in milliseconds. A latency is
the model's own interval of a page-request group, from its first request to the response that closed it: a group
the kernel answered itself at a detach (no response event) or one still waiting has no latency, and is counted
apart rather than given one.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np

from .events import Kind
from .index import RecordingIndex, TrackKey
from .intervals import IntervalKind, Intervals

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
    tracks: list[TrackKey]
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
    if c.ordered:
        inside: slice | np.ndarray = slice(lo, hi)
        n = hi - lo
    else:
        inside = np.flatnonzero((c.ts[lo:] >= t0) & (c.ts[lo:] < t1)) + lo
        n = len(inside)
    kinds = c.kinds[inside]
    names = c.kind_names
    per_kind = np.bincount(kinds, minlength=len(names)) if n else np.zeros(len(names), np.int64)
    by_kind = sorted(((names[k], int(m)) for k, m in enumerate(per_kind.tolist()) if m), key=lambda x: (-x[1], x[0]))
    faults: list[tuple[TrackKey, int]] = []
    fault_id = c.kind_id(str(Kind.FAULT))
    if fault_id is not None and n:
        per_track = np.bincount(c.track_of[inside][kinds == fault_id], minlength=len(c.tracks))
        faults = sorted(((c.tracks[t], int(per_track[t])) for t in np.flatnonzero(per_track).tolist()),
                        key=lambda x: (-x[1], str(x[0].device), -1 if x[0].pasid is None else x[0].pasid))
    latency = group_latency(group_table(index, c), t0, t1) if c.model_done else None
    return RangeStats(t0, t1, n, by_kind, faults, latency)


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

    @classmethod
    def of(cls, index: RecordingIndex, c: Columns) -> GroupTable:
        store = index.intervals
        closed = store.closed_columns(IntervalKind.GROUP)
        # outstanding groups are few (the model holds each in its state): read one by one
        waiting = [(iv.start_ns, iv.open_idx) for iv in store.open_now()
                   if iv.kind == IntervalKind.GROUP and iv.open_idx < c.n]
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
    key = (store.opened, store.closed_count, c.n)
    got = _TABLES.get(store)
    if got is None or got[0] != key:
        got = _TABLES[store] = (key, GroupTable.of(index, c))
    return got[1]


def group_latency(table: GroupTable, t0: int, t1: int) -> list[DeviceLatency]:
    """Per device, the page-request groups whose first request lies in [t0, t1): their latencies, and how many
    were drained or are still unanswered."""
    lo, hi = np.searchsorted(table.start_ns, (t0, t1), side="left")
    devices, n_dev = table.devices, len(table.devices)
    dev, fate, lat = table.device[lo:hi], table.fate[lo:hi], table.latency_ns[lo:hi]
    fates = np.bincount(dev.astype(np.int64) * 3 + fate, minlength=n_dev * 3).reshape(n_dev, 3)
    answered = fate == ANSWERED
    dev, lat = dev[answered], lat[answered]
    order = np.argsort(dev, kind="stable")
    dev, lat = dev[order], lat[order]
    bounds = np.searchsorted(dev, np.arange(n_dev + 1))
    n_buckets = len(LATENCY_EDGES) + 1
    buckets = np.bincount(dev.astype(np.int64) * n_buckets + np.searchsorted(LATENCY_EDGES, lat, side="right"),
                          minlength=n_dev * n_buckets).reshape(n_dev, n_buckets)
    out = []
    for d, name in enumerate(devices):
        if not fates[d].any():
            continue
        mine = lat[bounds[d]:bounds[d + 1]]
        ranks = [max((p * len(mine) + 99) // 100, 1) - 1 for p in PERCENTILES]  # nearest rank: a real group's
        picked = np.partition(mine, [*ranks, len(mine) - 1]) if len(mine) else np.zeros(1, np.int64)
        p50, p99 = (int(picked[r]) for r in ranks) if len(mine) else (0, 0)
        out.append(DeviceLatency(name, len(mine), p50, p99, int(picked[-1]), tuple(buckets[d].tolist()),
                                 int(fates[d][DRAINED]), int(fates[d][UNANSWERED])))
    return out
