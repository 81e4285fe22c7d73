"""The index's tracks, (device, PASID) pairs numbered as they first appear, held as arrays of numbers.

Each PASID on each device is a track, and a recording may hold a million of them. A dict of (device, PASID)
tuples to numbers cost about 120 bytes a track (the tuple, the number, the entry); here a track costs its code
(`device << 33 | PASID + 1`, 0 for none), 8 bytes, and 4 to find it again: the tracks in order of their codes,
searched with numpy. Tracks added since that order was last made are found in a small sorted array of their own,
merged into the order once it holds a quarter as many: a chunk of new tracks costs its own size, not the table's
(200,000 tiny chunks each bringing a track stay linear). A dict of the last few thousand codes looked up answers
first: most chunks use the same tracks as the chunk before, and a numpy search costs more than a dict's for a few.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload

import numpy as np

PASID_SHIFT = 33  # a PASID is below 2^32 (schema.key_problem); + 1 so that 0 means none
_PASID_BITS = (1 << PASID_SHIFT) - 1
MERGE_AT = 4096  # tracks found apart (at least) before they are merged into the tracks by code
NEAR = 4096  # codes whose tracks a dict keeps from one lookup to the next: most chunks use the same few again


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
        self._code = np.zeros(0, np.int64)  # per track, its code (room to grow past `_n`)
        self._merged = 0  # tracks 0.._merged-1 are in `_order`
        self._order = np.zeros(0, np.uint32)  # those tracks, by code
        self._recent = np.zeros(0, np.int64)  # the codes of the tracks after them, sorted
        self._recent_ids = np.zeros(0, np.uint32)  # their tracks, in the same order
        self._near: dict[int, int] = {}  # code -> track of the codes last looked up (at most NEAR)

    def __len__(self) -> int:
        return self._n

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same keys in the same order (as the list it replaced was)."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Each track's device number (an index into `devices`) and PASID (-1: none), as arrays made for the
        asking."""
        codes = self._code[:self._n]
        dev = np.right_shift(codes, PASID_SHIFT, out=np.empty(len(codes), np.uint32), casting="unsafe")
        pasid = np.bitwise_and(codes, _PASID_BITS)
        pasid -= 1
        return dev, pasid

    @overload
    def __getitem__(self, t: int) -> TrackKey: ...
    @overload
    def __getitem__(self, t: slice) -> list[TrackKey]: ...

    def __getitem__(self, t: int | slice) -> TrackKey | list[TrackKey]:
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        if not -self._n <= t < self._n:
            raise IndexError(f"track {t} of {self._n}")
        code = int(self._code[t % self._n])
        return TrackKey(self.devices[code >> PASID_SHIFT], (code & _PASID_BITS) - 1 if code & _PASID_BITS else None)

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
        return np.flatnonzero(self._code[:self._n] >> PASID_SHIFT == d).tolist()  # type: ignore[no-any-return]

    def number(self, keys: list[int]) -> np.ndarray:
        """The track of each code (`device_id(device) << PASID_SHIFT | PASID + 1`, or 0 for no PASID), as int64,
        new codes numbered in the order they first appear here."""
        near = self._near
        known = list(map(near.get, keys))
        if None not in known:  # (most chunks: a long quiet capture writes 200,000 of a few events each)
            return np.array(known, np.int64)
        codes = np.array(keys, np.int64)
        out = self._lookup(codes)
        if len(near) + len(keys) > NEAR:
            near.clear()
        near.update(zip(keys, out.tolist(), strict=True))
        return out

    def _lookup(self, codes: np.ndarray) -> np.ndarray:
        out = np.full(len(codes), -1, np.int64)
        m = self._merged
        if m:
            at = self._order[np.minimum(np.searchsorted(self._code[:m], codes, sorter=self._order), m - 1)]
            np.copyto(out, at, where=self._code[at] == codes)
        if len(self._recent):
            at = np.minimum(np.searchsorted(self._recent, codes), len(self._recent) - 1)
            np.copyto(out, self._recent_ids[at], where=(self._recent[at] == codes) & (out < 0))
        misses = np.flatnonzero(out < 0)
        if len(misses):
            new, first, of = np.unique(codes[misses], return_index=True, return_inverse=True)
            rank = np.empty(len(new), np.int64)  # each distinct new code's place among them, as first seen
            rank[np.argsort(first, kind="stable")] = np.arange(len(new))
            ids = self._n + rank
            out[misses] = ids[of.reshape(-1)]
            self._add(new, ids)
        return out

    def _add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """New tracks `ids` (`_n`, `_n + 1`, ... in some order), of sorted `codes`: written past the end, then
        counted (a reader's `columns()` stays valid, a grown buffer being a new one)."""
        a, b = self._n, self._n + len(codes)
        if b > len(self._code):
            grown = np.empty(max(b, 2 * len(self._code), 1024), np.int64)  # (its tail takes no memory untouched)
            grown[:a] = self._code[:a]
            self._code = grown
        self._code[ids] = codes
        self._n = b
        at = np.searchsorted(self._recent, codes)
        self._recent = np.insert(self._recent, at, codes)
        self._recent_ids = np.insert(self._recent_ids, at, ids.astype(np.uint32))
        if len(self._recent) >= max(MERGE_AT, self._merged // 4):
            self._merge()

    def _merge(self) -> None:
        """Every track into `_order`."""
        m = self._merged
        at = np.searchsorted(self._code[:m], self._recent, sorter=self._order) if m else 0
        self._order = np.insert(self._order, at, self._recent_ids)
        self._merged = self._n
        self._recent, self._recent_ids = np.zeros(0, np.int64), np.zeros(0, np.uint32)
