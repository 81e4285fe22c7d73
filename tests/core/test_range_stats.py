"""A range's counts taken by blocks (explorer/range_stats.py: CountTable, DeviceGroups) against a count of every
event and every page-request group in it, over ranges that start and end inside blocks, span many, or lie in one."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from explorer import range_stats as rs
from explorer.events import Kind
from explorer.loading import open_index
from explorer.workload import write_workload


def by_hand(index, table: rs.GroupTable, t0: int, t1: int) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    """Every event and group in [t0, t1) looked at: kinds, faults per track, and per device the nearest-rank
    percentiles, histogram and fates."""
    inside = (index.ts >= t0) & (index.ts < t1)
    kinds = {index.kind_names[k]: int(n) for k, n in enumerate(np.bincount(index.kinds[inside], minlength=256)) if n}
    fault = inside & (index.kinds == index.kind_id(str(Kind.FAULT)))
    faults = {index.tracks[t]: int(n) for t, n in enumerate(np.bincount(index.track_of[fault])) if n}
    latency = []
    for d, name in enumerate(table.devices):
        mine = (table.start_ns >= t0) & (table.start_ns < t1) & (table.device == d)
        fates = [int((mine & (table.fate == f)).sum()) for f in (rs.ANSWERED, rs.DRAINED, rs.UNANSWERED)]
        if not any(fates):
            continue
        lat = sorted(table.latency_ns[mine & (table.fate == rs.ANSWERED)].tolist())
        pick = [lat[max(-(-p * len(lat) // 100), 1) - 1] if lat else 0 for p in (50, 99)]
        buckets = [0] * (len(rs.LATENCY_EDGES) + 1)
        for v in lat:
            buckets[sum(v >= e for e in rs.LATENCY_EDGES)] += 1
        latency.append((name, fates[0], *pick, lat[-1] if lat else 0, tuple(buckets), fates[1], fates[2]))
    return int(inside.sum()), kinds, faults, latency


def counted(r: rs.RangeStats) -> tuple[object, ...]:
    latency = [(d.device, d.answered, d.p50_ns, d.p99_ns, d.max_ns, d.buckets, d.drained, d.unanswered)
               for d in r.latency or []]
    return r.events, dict(r.kinds), dict(r.faults), latency


@pytest.mark.parametrize("blocks", [(256, 16), (1 << 16, 1 << 14)])
def test_a_range_counted_by_blocks_is_every_event_and_group_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  blocks: tuple[int, int]) -> None:
    monkeypatch.setattr(rs, "BLOCK", blocks[0])
    monkeypatch.setattr(rs, "GROUP_BLOCK", blocks[1])
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=4, slow_every=200)
    index = open_index(path)
    table = rs.group_table(index, rs.Columns.of(index))
    if blocks[0] < 1000:  # small blocks: many whole blocks of events, and of a device's groups
        assert rs.count_table(index, rs.Columns.of(index)) is not None
        assert max(len(table.of_device(d).starts) for d in range(len(table.devices))) > 4 * blocks[1]
    rng = random.Random(7)
    lo, hi = index.start_ns, index.end_ns + 1
    ranges = [(lo, hi), (lo, lo), (hi, hi + 10)]
    for _ in range(40):
        t0 = rng.randrange(lo - 5, hi)
        ranges.append((t0, t0 + int((hi - lo) * rng.random() ** 2)))
    for t0, t1 in ranges:
        assert counted(rs.range_stats(index, t0, t1)) == by_hand(index, table, t0, t1), (t0, t1)
