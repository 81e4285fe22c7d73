"""Where a step lands: the event on a row at the cursor, the next or previous one, the next anomaly or marker.

Order is (time, event index), so events sharing a timestamp are still visited one by one. Pure numpy over the
index's columns; no Textual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..events import Kind
from ..index import RecordingIndex
from ..simulator import Anomaly
from ..text import searchable

_CHUNK = 65_536


def event_at(index: RecordingIndex, tracks: Iterable[int], t: int, keep: np.ndarray | None = None) -> int | None:
    """The latest event at or before `t` on these tracks (the highest index among equal times)."""
    best: tuple[int, int] | None = None
    ts = index.ts
    for tid in tracks:
        ids = index.track_events(tid)
        pos = int(index.track_search(tid, t, side="right")) - 1
        while pos >= 0 and keep is not None and not keep[index.kinds[ids[pos]]]:
            pos -= 1
        if pos >= 0:
            cand = (int(ts[ids[pos]]), int(ids[pos]))
            if best is None or cand > best:
                best = cand
    return None if best is None else best[1]


def step_on_tracks(index: RecordingIndex, tracks: Iterable[int], current: int | None, t: int, forward: bool,
                   keep: np.ndarray | None = None) -> int | None:
    """The next (or previous) event on these tracks after `current` (or after time `t` when there is none)."""
    here = (t, index.n if forward else -1) if current is None else (int(index.ts[current]), current)
    best: tuple[int, int] | None = None
    ts = index.ts
    for tid in tracks:
        ids = index.track_events(tid)
        if forward:
            pos = int(index.track_search(tid, here[0], side="left"))
            while pos < len(ids) and ((int(ts[ids[pos]]), int(ids[pos])) <= here
                                      or (keep is not None and not keep[index.kinds[ids[pos]]])):
                pos += 1
            if pos < len(ids):
                cand = (int(ts[ids[pos]]), int(ids[pos]))
                best = cand if best is None or cand < best else best
        else:
            pos = int(index.track_search(tid, here[0], side="right")) - 1
            while pos >= 0 and ((int(ts[ids[pos]]), int(ids[pos])) >= here
                                or (keep is not None and not keep[index.kinds[ids[pos]]])):
                pos -= 1
            if pos >= 0:
                cand = (int(ts[ids[pos]]), int(ids[pos]))
                best = cand if best is None or cand > best else best
    return None if best is None else best[1]


def candidates(index: RecordingIndex, current: int, forward: bool, visible: np.ndarray,
               keep: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Events after (before) `current` in recording order on a visible track and of a kept kind, in the order a
    step visits them, a chunk of the index's columns at a time (maybe none in one), each with the event the scan
    has reached after it, so a step costs little however far the next such event is."""
    tracks, kinds = index.track_of, index.kinds
    i = current
    while True:
        lo, hi = (i + 1, min(i + 1 + _CHUNK, index.n)) if forward else (max(i - _CHUNK, 0), i)
        if lo >= hi:
            return
        ok = visible[tracks[lo:hi]]
        if keep is not None:
            ok &= keep[kinds[lo:hi]]
        hits = np.flatnonzero(ok) + lo
        i = hi - 1 if forward else lo
        yield (hits if forward else hits[::-1]), i


def step_global(index: RecordingIndex, current: int, forward: bool, visible: np.ndarray,
                keep: np.ndarray | None = None) -> int | None:
    """The next (previous) event in recording order that a step may land on."""
    return next((int(hits[0]) for hits, _reached in candidates(index, current, forward, visible, keep) if len(hits)),
                None)


def find_text(index: RecordingIndex, current: int, forward: bool, needle: str, visible: np.ndarray,
              keep: np.ndarray | None = None, going: Callable[[int], bool] = lambda _reached: True) -> int | None:
    """The next (previous) such event whose one-line description contains `needle` (any case, as shown or raw);
    only candidates are decoded, a chunk's at once. `going(reached)` is asked before each block with the event
    the scan has reached: when it says no (a newer search, the user left), the search stops and finds nothing."""
    needle = needle.lower()
    reached = current
    for hits, then in candidates(index, current, forward, visible, keep):
        if not going(reached):
            return None
        for j, event in zip(hits.tolist(), index.events(hits), strict=True):
            if needle in searchable(event.brief()):
                return j
        reached = then
    return None


def next_anomaly(anomalies: list[Anomaly], times: list[int], current: int | None, t: int, forward: bool
                 ) -> int | None:
    """Index into `anomalies` (time order, at `times`) of the next (previous) one after `current`, or with no
    current one (the cursor moved since), the first at or after (the last before) time `t`."""
    if not anomalies:
        return None
    if current is not None:
        n = current + (1 if forward else -1)
        return n if 0 <= n < len(anomalies) else None
    if forward:
        n = int(np.searchsorted(times, t, side="left"))
        return n if n < len(anomalies) else None
    n = int(np.searchsorted(times, t, side="left")) - 1
    return n if n >= 0 else None


def evidence_shown(index: RecordingIndex, a: Anomaly) -> int | None:
    """The evidence event to show with an anomaly: the latest one at or before its time (else its first)."""
    found = [i for i in a.evidence if 0 <= i < index.n]
    before = [i for i in found if int(index.ts[i]) <= a.ts_ns]
    return max(before, key=lambda i: (int(index.ts[i]), i)) if before else (found[0] if found else None)


def marker_indices(index: RecordingIndex) -> list[int]:
    """The teaching steps (markers) of a recording, as event indices."""
    kid = index.kind_id(str(Kind.MARKER))
    return [] if kid is None or not index.n else np.flatnonzero(index.kinds == kid).tolist()
