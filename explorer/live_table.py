"""The live PASIDs of one state, held in slots indexed by PASID rather than in a dict.

A PASID is below PASID_SPACE (2^20, checked where events are read), so a live PASID's packed record
(explorer/state_records.py: opening time, opening event + 1, the rest) goes in four 8-byte words at its number's
slot: 32 bytes a PASID, where a dict's entry, its int key and its int value took about 105 (issue 16: a million
live PASIDs). Slots come in pages of 256 PASIDs, made when a PASID in them is first written, so a small
recording's few PASIDs cost a page or two, and scattered numbers at most a page each (32 MiB for the whole space).

The fourth word numbers each entry as it is added (0: the slot is empty), so iteration keeps a dict's order, the
order the PASIDs became live, which exports and panels show. As a `Journal` does, the table notes what a key held
before its first write since the last `changes()`; changes and full copies are flat arrays of four words an entry
(`changes()`, `frozen()`, `apply()`), not tuples of boxed ints. It can also tell an `Intervals` store when a
PASID's lifetime opens and closes, as `intervals.Tracked` does for the state's other maps.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .events import PASID_SPACE
from .intervals import IntervalKind
from .journal import MISSING
from .state_records import IDX_BITS, IDX_MASK, LIVE_LOW

if TYPE_CHECKING:
    from .intervals import Intervals, _Clock

_PAGE_BITS = 8
_SLOT_MASK = (1 << _PAGE_BITS) - 1
_EMPTY_PAGE = array("q", bytes(32 << _PAGE_BITS))  # four zero words (32 bytes) per slot
_LOW_MASK = (1 << LIVE_LOW) - 1
_TS_SHIFT = LIVE_LOW + IDX_BITS
_GONE = -1  # a change's last word where the PASID is no longer live (a live one's is never negative)
_READ = 4096  # PASIDs an iteration makes ints of at a time
_LIFETIME = tuple(IntervalKind).index(IntervalKind.LIFETIME)  # the kind's number in an `Intervals` store


class LiveTable:
    """Live PASIDs -> packed `LivePasid` ints, with a dict's interface where the model uses one (`in`, get, set,
    pop, len, iteration in the order added, `copy()`)."""

    __slots__ = ("_pages", "_n", "_added", "_before", "_store", "_clock")

    def __init__(self) -> None:
        self._pages: list[array[int] | None] = []  # grown to the highest page written
        self._n = 0
        self._added = 0  # entries ever added: the next one's order word
        self._before: dict[int, int] | None = None  # key -> its packed value at the last `changes()` (journalling)
        self._store: Intervals | None = None  # told of lifetimes (the model that keeps intervals)
        self._clock: _Clock | None = None

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, pasid: int, default: Any = None) -> Any:
        try:
            page = self._pages[pasid >> _PAGE_BITS]
        except (IndexError, TypeError):  # (past the pages made, or not a number)
            return default
        if page is None or pasid < 0:
            return default
        i = (pasid & _SLOT_MASK) << 2
        return (page[i] << IDX_BITS | page[i + 1]) << LIVE_LOW | page[i + 2] if page[i + 3] else default

    def __contains__(self, pasid: object) -> bool:
        try:
            page = self._pages[pasid >> _PAGE_BITS]  # type: ignore[operator]
        except (IndexError, TypeError):
            return False
        return page is not None and pasid >= 0 and page[(pasid & _SLOT_MASK) << 2 | 3] != 0  # type: ignore[operator]

    def lowest(self, n: int) -> list[int]:
        """The `n` lowest live PASIDs, in order (`sorted(table)[:n]`, without reading every other one)."""
        out: list[int] = []
        for k, page in enumerate(list(self._pages)):
            if page is not None and len(out) < n:
                live = np.flatnonzero(np.frombuffer(page.tobytes(), np.int64)[3::4])
                out += (live[:n - len(out)] + (k << _PAGE_BITS)).tolist()
        return out

    def first_free(self, start: int) -> int:
        """The lowest PASID from `start` (>= 0) on that is not live: a page at a time, not a lookup a number."""
        pages = self._pages
        for n in range(start >> _PAGE_BITS, len(pages)):
            page, first = pages[n], max(start - (n << _PAGE_BITS), 0)
            if page is None:
                return (n << _PAGE_BITS) + first
            free = np.flatnonzero(np.frombuffer(page.tobytes(), np.int64)[4 * first + 3::4] == 0)
            if len(free):
                return (n << _PAGE_BITS) + first + int(free[0])
        return max(start, len(pages) << _PAGE_BITS)

    def __getitem__(self, pasid: int) -> int:
        value = self.get(pasid)
        if value is None:
            raise KeyError(pasid)
        return value  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        """The live PASIDs in the order they were added (as they were at the first step: the model may go on)."""
        pasids = self._ordered(3)[1]
        for a in range(0, len(pasids), _READ):
            yield from pasids[a:a + _READ].tolist()

    def _ordered(self, first_word: int) -> tuple[np.ndarray, np.ndarray]:
        """Every live slot's PASID and its words from `first_word` on (rows), in the order added: the pages made
        read as one array (a copy: the pages may change), not a page at a time (a million live PASIDs fill 3,900)."""
        made = [n for n, page in enumerate(self._pages) if page is not None]
        words = np.frombuffer(b"".join([self._pages[n] for n in made]), np.int64).reshape(-1, 4)
        live = np.flatnonzero(words[:, 3])
        pasids = (np.array(made, np.int64) << _PAGE_BITS)[live >> _PAGE_BITS] + (live & _SLOT_MASK)
        order = np.argsort(words[live, 3])
        return words[live[order], first_word:], pasids[order]

    # -- writes ----------------------------------------------------------------------------------------------
    def __setitem__(self, pasid: int, value: int) -> None:
        if pasid.__class__ is not int or not 0 <= pasid < PASID_SPACE:
            raise ValueError(f"PASID {pasid} outside 0..{PASID_SPACE - 1}")
        pages = self._pages
        page = pages[pasid >> _PAGE_BITS] if pasid >> _PAGE_BITS < len(pages) else None
        if page is None:
            page = self._new_page(pasid >> _PAGE_BITS)
        i = (pasid & _SLOT_MASK) << 2
        added = page[i + 3]
        before, store = self._before, self._store
        if before is not None or store is not None:
            old = (page[i] << IDX_BITS | page[i + 1]) << LIVE_LOW | page[i + 2] if added else None
            if before is not None and pasid not in before:
                before[pasid] = MISSING if old is None else old
            if store is not None:
                if old is None:
                    store.opened += 1
                elif old >> LIVE_LOW != value >> LIVE_LOW:  # another lifetime under the same number
                    store.opened += 1
                    store.close(_LIFETIME, pasid, old, self._clock, True)  # type: ignore[arg-type]
        page[i] = value >> _TS_SHIFT
        page[i + 1] = value >> LIVE_LOW & IDX_MASK
        page[i + 2] = value & _LOW_MASK
        if not added:
            self._n += 1
            self._added = page[i + 3] = self._added + 1

    def _new_page(self, n: int) -> array[int]:
        pages = self._pages
        if n >= len(pages):
            pages.extend([None] * (n + 1 - len(pages)))
        page = pages[n] = _EMPTY_PAGE[:]
        return page

    def pop(self, pasid: int, default: Any = MISSING) -> Any:
        value = self.get(pasid)
        if value is None:
            if default is MISSING:
                raise KeyError(pasid)
            return default
        self._pages[pasid >> _PAGE_BITS][(pasid & _SLOT_MASK) << 2 | 3] = 0  # type: ignore[index]  # (empty)
        self._n -= 1
        before = self._before
        if before is not None and pasid not in before:
            before[pasid] = value
        if self._store is not None:
            self._store.close(_LIFETIME, pasid, value, self._clock, False)  # type: ignore[arg-type]
        return value

    def copy(self) -> LiveTable:
        """The same entries, in the same order, noting and telling nothing (a checkpoint or a replayer's)."""
        new = LiveTable()
        new._pages = [None if p is None else p[:] for p in self._pages]
        new._n, new._added = self._n, self._added
        return new

    # -- journal and intervals -------------------------------------------------------------------------------
    def start(self) -> None:
        """Note changes from now on (see `journal.Journal`)."""
        if self._before is None:
            self._before = {}

    @property
    def pending(self) -> int:
        return len(self._before) if self._before is not None else 0

    def changes(self) -> array[int]:
        """The PASIDs whose record is another one than at the last call, four words each (PASID, then its
        record's, the last -1 where it is gone), and forget them."""
        if self._before is None:
            return array("q")
        out = array("q")
        for pasid, old in self._before.items():
            now = self.get(pasid)
            if now != (None if old is MISSING else old):
                out.extend((pasid, _GONE, 0, _GONE) if now is None else
                           (pasid, now >> _TS_SHIFT, now >> LIVE_LOW & IDX_MASK, now & _LOW_MASK))
        self._before = {}
        return out

    def frozen(self) -> array[int]:
        """Every entry, in order, as `changes()` gives them: what a full copy keeps."""
        words, pasids = self._ordered(0)
        out = np.empty((len(pasids), 4), np.int64)
        out[:, 0], out[:, 1:] = pasids, words[:, :3]
        return array("q", out.tobytes())

    def apply(self, changes: array[int]) -> None:
        """Bring this table (a copy, which notes and tells nothing) from one checkpoint to the next, the pages it
        touches as one array: a seek restores a full copy, and a million live PASIDs put one by one took 0.3 s of
        every seek. (A PASID appears at most once in `changes`; those new to the table are added in the order
        listed, as a dict would add them.)"""
        assert self._before is None and self._store is None
        rows = np.frombuffer(changes, np.int64).reshape(-1, 4)
        touched, at = np.unique(rows[:, 0] >> _PAGE_BITS, return_inverse=True)
        pages = self._pages
        made = [int(n) < len(pages) and pages[n] is not None for n in touched.tolist()]
        dense = np.frombuffer(bytearray(b"".join([pages[n] if ok else _EMPTY_PAGE  # type: ignore[misc]
                                                   for n, ok in zip(touched.tolist(), made, strict=True)])),
                              np.int64).reshape(-1, 4)
        slot = at << _PAGE_BITS | rows[:, 0] & _SLOT_MASK
        gone = rows[:, 3] == _GONE
        was = dense[slot, 3]
        fresh = np.flatnonzero(~gone & (was == 0))
        dense[slot[~gone], :3] = rows[~gone, 1:]
        dense[slot[gone], 3] = 0
        dense[slot[fresh], 3] = np.arange(self._added + 1, self._added + 1 + len(fresh))
        kept = np.zeros(len(touched), bool)
        kept[at[~gone]] = True  # (a page only freed from is made no more than the per-entry path makes one)
        for k, n in enumerate(touched.tolist()):
            if made[k] or kept[k]:
                if not made[k]:
                    self._new_page(n)
                pages[n][:] = array("q", dense[k << _PAGE_BITS:(k + 1) << _PAGE_BITS].tobytes())  # type: ignore[index]
        self._n += len(fresh) - int(np.count_nonzero(was[gone]))
        self._added += len(fresh)

    def track(self, store: Intervals, clock: _Clock) -> None:
        """Tell `store` when a lifetime opens (a PASID added, or its record replaced by one with another opening)
        and closes (popped, or replaced), dated by `clock`; its open lifetimes are this table's entries."""
        self._store, self._clock = store, clock
        store.watch(IntervalKind.LIFETIME, self)  # type: ignore[arg-type]
        store.opened += self._n


def entries(changes: Any) -> int:
    """Entries in one map's changes: a `LiveTable`'s four words each, a `Journal`'s two items."""
    return len(changes) // (4 if isinstance(changes, array) else 2)
