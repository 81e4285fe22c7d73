"""A recording's model as tests compare it (`replay`: findings, checkpoints, intervals, damage, seeks, every map's
order included), its groups settled or handled, its chunks read here or ahead by the helper process
(`read_ahead_always`: every pass reads ahead, whatever the recording's size, and waits for its helper to be up, so
that every chunk it can read comes from it)."""

from __future__ import annotations

import random
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from explorer import index as index_module
from explorer.index import RecordingIndex
from explorer.live_table import LiveTable
from explorer.read_ahead import Pages, ReadAhead
from explorer.recording import Recording

UP_WITHIN_S = 60.0


def read_ahead_always(m: pytest.MonkeyPatch) -> list[int]:
    """Patch (within `m`'s context); the list returned holds the number of chunks the helpers gave."""
    m.setattr(index_module, "READ_AHEAD_EVENTS", 0)
    started, take = ReadAhead._started, ReadAhead.take  # noqa: SLF001

    def waiting(self: ReadAhead) -> bool:
        deadline = time.monotonic() + UP_WITHIN_S
        while not started(self) and self._proc is not None and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.002)
        return started(self)

    def counting(self: ReadAhead, i: int) -> Pages | None:
        got = take(self, i)
        taken[0] += got is not None
        return got

    taken = [0]
    m.setattr(ReadAhead, "_started", waiting)
    m.setattr(ReadAhead, "take", counting)
    return taken


def plain(x: Any) -> Any:
    """`x` with every map as its items in order (a map's order is part of the state a seek rebuilds)."""
    if isinstance(x, LiveTable):
        return [("live", k, x[k]) for k in x]
    if isinstance(x, dict):
        return [("dict", plain(k), plain(v)) for k, v in x.items()]
    if is_dataclass(x) and not isinstance(x, type):
        return [type(x).__name__, *(plain(getattr(x, f.name)) for f in fields(x) if f.name != "atoms" and f.compare)]
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, *map(plain, x)]
    return repr(x)


def replay(path: Path, way: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The model's findings, checkpoints, intervals, damage and seeks, its groups `settled` or `handled` as it
    indexes, or in a pass after indexing, its chunks read `here` or `ahead` (the count of those read so)."""
    with monkeypatch.context() as m:
        if way == "handled":
            m.setattr(RecordingIndex, "_page_columns", lambda self, c, head, stateful, pages=None: None)
        if way in ("settled", "handled"):
            idx = RecordingIndex.build(Recording(path))
        else:
            taken = read_ahead_always(m) if way == "ahead" else [0]
            idx = RecordingIndex.build(Recording(path), model=False)
            idx.run_model()
        seen = {"findings": plain(idx.anomalies), "checkpoints": plain(idx._checkpoints),  # noqa: SLF001
                "state": plain(idx.sim.root), "closed": [repr(i) for i in idx.intervals.closed_since(0)],
                "open": [repr(i) for i in idx.intervals.open_now()], "opened": idx.intervals.opened,
                "later": [idx.intervals.later_requests(i) for i in range(idx.n)], "damage": idx.damage,
                "counts": idx.counts_by_kind(), "read ahead": way == "ahead" and taken[0]}
        rng = random.Random(path.name)
        if idx.n:
            times = [idx.start_ns, idx.end_ns] + [rng.randrange(idx.start_ns, idx.end_ns + 1) for _ in range(20)]
            seen["seeks"] = [plain(idx.state_at(t)) for t in times]
        return seen
