"""The index's tracks, (device, PASID) pairs numbered as they first appear, held as arrays of numbers.

Each PASID on each device is a track, and a recording may hold a million of them. A dict of (device, PASID)
tuples to numbers cost about 120 bytes a track (the tuple, the number, the entry); here a track costs 12 bytes
in two arrays and, to find it again, 12 in a sorted array of codes (`device << 33 | PASID + 1`, 0 for none).
Codes not yet merged into that sorted array wait in a small dict, merged once it holds a quarter as many: a
chunk of new tracks costs its own size, not the table's (200,000 tiny chunks each bringing a track stay linear).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload

import numpy as np

PASID_SHIFT = 33  # a PASID is below 2^32 (schema.key_problem); + 1 so that 0 means none
MERGE_AT = 4096  # codes waiting in the dict (at least) before they are merged into the sorted array


class TrackKey(NamedTuple):
    """A timeline track: a (device, PASID) pair. device None is the allocator's track, pasid None a device's
    own events (no PASID)."""

    device: str | None
    pasid: int | None

    def label(self) -> str:
        dev = self.device or "allocator"
        return dev if self.pasid is None else f"{dev} · PASID {self.pasid}"


class TrackTable(Sequence[TrackKey]):
    """Every track, by number: `table[t]` is track t's key; `number` finds or adds tracks."""

    def __init__(self) -> None:
        self.devices: list[str | None] = []  # each distinct device once (one copy of its name)
        self.device_ids: dict[str | None, int] = {}  # device -> its number (read only: `device_id` adds)
        self._n = 0
        self._dev = np.zeros(0, np.uint32)  # per track, its device's number (room to grow past `_n`)
        self._pasid = np.zeros(0, np.int64)  # per track, its PASID (-1: none)
        self._sorted = np.zeros(0, np.int64)  # codes of the merged tracks, sorted
        self._sorted_ids = np.zeros(0, np.uint32)  # their tracks, in the same order
        self._recent: dict[int, int] = {}  # code -> track, for tracks not merged yet

    def __len__(self) -> int:
        return self._n

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same keys in the same order (as the list it replaced was)."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Each track's device number (an index into `devices`) and PASID (-1: none), as arrays."""
        n = self._n
        return self._dev[:n], self._pasid[:n]

    @overload
    def __getitem__(self, t: int) -> TrackKey: ...
    @overload
    def __getitem__(self, t: slice) -> list[TrackKey]: ...

    def __getitem__(self, t: int | slice) -> TrackKey | list[TrackKey]:
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        if not -self._n <= t < self._n:
            raise IndexError(f"track {t} of {self._n}")
        p = int(self._pasid[t % self._n])
        return TrackKey(self.devices[self._dev[t % self._n]], None if p < 0 else p)

    def __iter__(self) -> Iterator[TrackKey]:
        devices = self.devices
        dev, pasid = self.columns()
        for d, p in zip(dev.tolist(), pasid.tolist(), strict=True):
            yield TrackKey(devices[d], None if p < 0 else p)

    def device_id(self, device: str | None) -> int:
        """`device`'s number, given it on first sight (a schema-checked name)."""
        found = self.device_ids.get(device)
        if found is None:
            found = self.device_ids[device] = len(self.devices)
            self.devices.append(sys.intern(device) if device is not None else None)
        return found

    def of_device(self, device: str | None) -> list[int]:
        """The tracks of `device`, in order."""
        d = self.device_ids.get(device)
        if d is None:
            return []
        return np.flatnonzero(self.columns()[0] == d).tolist()  # type: ignore[no-any-return]

    def number(self, codes: list[int]) -> list[int]:
        """The track of each code (`device_id(device) << PASID_SHIFT | PASID + 1`, or 0 for no PASID), new
        codes numbered in the order they first appear here."""
        recent = self._recent
        out: list[int | None] = [recent.get(c) for c in codes]
        if None not in out:
            return out  # type: ignore[return-value]
        misses = [i for i, t in enumerate(out) if t is None]
        if len(self._sorted):
            wanted = np.array([codes[i] for i in misses], np.int64)
            at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
            found = np.where(self._sorted[at] == wanted, self._sorted_ids[at].astype(np.int64), -1).tolist()
            for i, t in zip(misses, found, strict=True):
                if t >= 0:
                    out[i] = t
        new: list[int] = []
        for i in misses:
            if out[i] is None:
                code = codes[i]
                t = recent.get(code)  # (twice in one list)
                if t is None:
                    t = recent[code] = self._n + len(new)
                    new.append(code)
                out[i] = t
        if new:
            self._add(np.array(new, np.int64))
        if len(recent) >= max(MERGE_AT, len(self._sorted) // 4):
            self._merge()
        return out  # type: ignore[return-value]

    def _add(self, codes: np.ndarray) -> None:
        """Tracks `_n`, `_n + 1`, ... are these codes': written past the end, then counted (a reader's
        `columns()` views stay valid, a grown buffer being a new one)."""
        a, b = self._n, self._n + len(codes)
        if b > len(self._dev):
            size = max(b, 2 * len(self._dev), 1024)
            self._dev = np.concatenate([self._dev[:a], np.zeros(size - a, np.uint32)])
            self._pasid = np.concatenate([self._pasid[:a], np.zeros(size - a, np.int64)])
        self._dev[a:b] = codes >> PASID_SHIFT
        self._pasid[a:b] = (codes & ((1 << PASID_SHIFT) - 1)) - 1
        self._n = b

    def _merge(self) -> None:
        """Move the dict's codes into the sorted array."""
        codes = np.fromiter(self._recent.keys(), np.int64, len(self._recent))
        ids = np.fromiter(self._recent.values(), np.uint32, len(self._recent))
        order = np.argsort(codes)
        codes, ids = codes[order], ids[order]
        at = np.searchsorted(self._sorted, codes)
        self._sorted = np.insert(self._sorted, at, codes)
        self._sorted_ids = np.insert(self._sorted_ids, at, ids)
        self._recent = {}
