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

import numpy as np

from .events import Kind
from .index import RecordingIndex, TrackKey
from .intervals import IntervalKind

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


def nearest_rank(sorted_values: np.ndarray, percent: int) -> int:
    """The smallest value with at least `percent`% of the values at or below it (the nearest-rank percentile)."""
    n = len(sorted_values)
    return int(sorted_values[max((percent * n + 99) // 100, 1) - 1])


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

    def kind_id(self, kind: str) -> int | None:
        return self.kind_names.index(kind) if kind in self.kind_names else None


def range_stats(index: RecordingIndex, t0: int, t1: int, columns: Columns | None = None) -> RangeStats:
    """Count what lies in [t0, t1) (of `columns`, taken from `index` now when not given). Latencies need the
    model to have replayed the recording (a group opened in the range may be answered after it), so until then
    `latency` is None."""
    c = Columns.of(index) if columns is None else columns
    lo = int(np.searchsorted(c.ts_max, t0, side="left"))  # nothing before lo is in range, ordered or not
    ts = c.ts[lo:]
    inside = np.flatnonzero((ts >= t0) & (ts < t1)) + lo
    kinds = c.kinds[inside]
    names = c.kind_names
    per_kind = np.bincount(kinds, minlength=len(names)) if len(inside) else np.zeros(len(names), np.int64)
    by_kind = sorted(((names[k], int(n)) for k, n in enumerate(per_kind.tolist()) if n), key=lambda x: (-x[1], x[0]))
    faults: list[tuple[TrackKey, int]] = []
    fault_id = c.kind_id(str(Kind.FAULT))
    if fault_id is not None and len(inside):
        per_track = np.bincount(c.track_of[inside[kinds == fault_id]], minlength=len(c.tracks))
        faults = sorted(((c.tracks[t], int(per_track[t])) for t in np.flatnonzero(per_track).tolist()),
                        key=lambda x: (-x[1], str(x[0].device), -1 if x[0].pasid is None else x[0].pasid))
    latency = group_latency(index, c, t0, t1) if c.model_done else None
    return RangeStats(t0, t1, len(inside), by_kind, faults, latency)


def group_latency(index: RecordingIndex, c: Columns, t0: int, t1: int) -> list[DeviceLatency]:
    """Per device, the page-request groups whose first request lies in [t0, t1) among `c`'s events: their
    latencies, and how many were drained or are still unanswered."""
    store = index.intervals
    closed = store.closed_columns(IntervalKind.GROUP)
    # outstanding groups are few (the model holds each in its state): their opening events, one by one
    unanswered_idx = [iv.open_idx for iv in store.open_now()
                      if iv.kind == IntervalKind.GROUP and t0 <= iv.start_ns < t1 and iv.open_idx < c.n]
    # (live, the model may have gone past these columns: what it closed later is counted on the next refresh)
    keep = (closed.start_ns >= t0) & (closed.start_ns < t1) & (closed.close_idx < c.n)
    start, end = closed.start_ns[keep], closed.end_ns[keep]
    opened, closed_by = closed.open_idx[keep], closed.close_idx[keep]
    answered = (closed_by >= 0) & (c.kinds[np.maximum(closed_by, 0)] == c.kind_id(str(Kind.PAGE_RESPONSE)))
    # a group's device is its first request's (groups are keyed by device, so the response's is the same)
    devices = sorted({t.device for t in c.tracks if t.device is not None})
    if not devices:
        return []
    code_of = {d: i for i, d in enumerate(devices)}
    track_device = np.array([code_of.get(t.device, 0) for t in c.tracks], np.int64)  # type: ignore[arg-type]
    dev = track_device[c.track_of[opened]]
    n_dev = len(devices)
    lat, lat_dev = (end - start)[answered], dev[answered]
    order = np.lexsort((lat, lat_dev))
    lat, lat_dev = lat[order], lat_dev[order]
    bounds = np.searchsorted(lat_dev, np.arange(n_dev + 1))
    n_buckets = len(LATENCY_EDGES) + 1
    buckets = np.bincount(lat_dev * n_buckets + np.searchsorted(LATENCY_EDGES, lat, side="right"),
                          minlength=n_dev * n_buckets).reshape(n_dev, n_buckets)
    drained = np.bincount(dev[~answered], minlength=n_dev)
    unanswered = np.bincount(track_device[c.track_of[np.array(unanswered_idx, np.int64)]], minlength=n_dev)
    out = []
    for d, name in enumerate(devices):
        mine = lat[bounds[d]:bounds[d + 1]]
        if not len(mine) and not drained[d] and not unanswered[d]:
            continue
        p50, p99 = (nearest_rank(mine, p) for p in PERCENTILES) if len(mine) else (0, 0)
        out.append(DeviceLatency(name, len(mine), p50, p99, int(mine[-1]) if len(mine) else 0,
                                 tuple(buckets[d].tolist()), int(drained[d]), int(unanswered[d])))
    return out
