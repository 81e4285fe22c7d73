"""The live PASIDs of one state, held in slots indexed by PASID rather than in a dict where they are many.

A live PASID's packed record (explorer/state_records.py: opening time, opening event + 1, the rest) goes in four
8-byte words at its number's slot: 32 bytes a PASID, where a dict's entry, its int key and its int value took
about 105 (issue 16: a million live PASIDs). Slots come in pages of 256 PASIDs below PASID_SPACE (2^20). A page is
made only once 64 of its PASIDs are live at once: until then, and for any number outside the pages (the schema
lets PASIDs up to 2^32 through, and the model reports them beyond the device's width), entries stay in a dict. So
a page costs at most 128 bytes a live PASID, and numbers scattered one to a page, over a merged recording's many
machines, cost what a dict costs.

Each entry carries an order word, its number in the order entries were added (in a slot, the fourth word, 0 where
the slot is empty; in the dict, the low bits of the value), so iteration keeps a dict's order, the order the
PASIDs became live, which exports and panels show. As a `Journal` does, the table notes what a key held before its
first write since the last `changes()`; changes and full copies are flat arrays of four words an entry
(`changes()`, `frozen()`, `apply()`), not tuples of boxed ints. It can also tell an `Intervals` store when a
PASID's lifetime opens and closes, as `intervals.Tracked` does for the state's other maps.
"""

from __future__ import annotations

import heapq
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
_PAGES = PASID_SPACE >> _PAGE_BITS
_EMPTY_PAGE = array("q", bytes(32 << _PAGE_BITS))  # four zero words (32 bytes) per slot
_LOW_MASK = (1 << LIVE_LOW) - 1
_TS_SHIFT = LIVE_LOW + IDX_BITS
_GONE = -1  # a change's last word where the PASID is no longer live (a live one's is never negative)
_READ = 4096  # PASIDs an iteration makes ints of at a time
_LIFETIME = tuple(IntervalKind).index(IntervalKind.LIFETIME)  # the kind's number in an `Intervals` store
_DENSE = 64  # live PASIDs of one page, kept in the dict, at which the page is made
_ORDER_BITS = 40  # a dict entry's value: the packed record above its order word
_ORDER_MASK = (1 << _ORDER_BITS) - 1


def _words(value: int) -> tuple[int, int, int]:
    """A packed record as a slot's first three words: opening time, opening event + 1, the rest."""
    return value >> _TS_SHIFT, value >> LIVE_LOW & IDX_MASK, value & _LOW_MASK


def _record(ts: int, idx: int, low: int) -> int:
    """The packed record of a slot's first three words (`get` does this inline: it is on the model's path)."""
    return (ts << IDX_BITS | idx) << LIVE_LOW | low


class LiveTable:
    """Live PASIDs -> packed `LivePasid` ints, with a dict's interface where the model uses one (`in`, get, set,
    pop, len, iteration in the order added)."""

    __slots__ = ("_pages", "_sparse", "_crowd", "_n", "_added", "_before", "_store", "_clock")

    def __init__(self) -> None:
        self._pages: list[array[int] | None] = []  # grown to the highest page made
        self._sparse: dict[int, int] = {}  # PASIDs without a made page -> record << _ORDER_BITS | order word
        self._crowd: dict[int, int] = {}  # page not made -> its live PASIDs in `_sparse`
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
            page = None
        if page is None or pasid < 0:
            try:
                coded = self._sparse.get(pasid)
            except TypeError:  # (not hashable: no PASID)
                return default
            return default if coded is None else coded >> _ORDER_BITS
        i = (pasid & _SLOT_MASK) << 2
        return (page[i] << IDX_BITS | page[i + 1]) << LIVE_LOW | page[i + 2] if page[i + 3] else default

    def __contains__(self, pasid: object) -> bool:
        try:
            page = self._pages[pasid >> _PAGE_BITS]  # type: ignore[operator]
        except (IndexError, TypeError):
            page = None
        if page is None or pasid < 0:  # type: ignore[operator]
            try:
                return pasid in self._sparse
            except TypeError:
                return False
        return page[(pasid & _SLOT_MASK) << 2 | 3] != 0  # type: ignore[operator]

    def _page(self, pasid: int) -> array[int] | None:
        """The made page that holds `pasid`'s slot, or None: the PASID is then kept, if live, in `_sparse`."""
        try:
            page = self._pages[pasid >> _PAGE_BITS]
        except (IndexError, TypeError):
            return None
        return page if pasid >= 0 else None

    def lowest(self, n: int) -> list[int]:
        """The `n` lowest live PASIDs, in order (`sorted(table)[:n]`, without reading every other one)."""
        out: list[int] = []
        for k, page in enumerate(list(self._pages)):
            if page is not None and len(out) < n:
                live = np.flatnonzero(np.frombuffer(page.tobytes(), np.int64)[3::4])
                out += (live[:n - len(out)] + (k << _PAGE_BITS)).tolist()
        return sorted(set(out).union(heapq.nsmallest(n, self._sparse.copy())))[:n]

    def first_free(self, start: int) -> int:
        """The lowest PASID from `start` (>= 0) on that is not live: a page at a time where pages are made, not a
        lookup a number."""
        pages, sparse, p = self._pages, self._sparse, start
        while True:
            k = p >> _PAGE_BITS
            page = pages[k] if k < len(pages) else None
            if page is None:
                if p not in sparse:
                    return p
                p += 1
                continue
            first = p & _SLOT_MASK
            free = np.flatnonzero(np.frombuffer(page.tobytes(), np.int64)[4 * first + 3::4] == 0)
            if len(free):
                return p + int(free[0])
            p = (k + 1) << _PAGE_BITS

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
        """Every live entry's PASID and its words from `first_word` on (rows), in the order added: the pages made
        read as one array, not a page at a time (a million live PASIDs fill 3,900). Both parts are copies taken
        first (the dict in one call), so the model's thread may go on writing meanwhile; a PASID moved from the
        dict to a page between the two copies is listed once."""
        sparse = self._sparse.copy()
        made = [n for n, page in enumerate(self._pages) if page is not None]
        words = np.frombuffer(b"".join([self._pages[n] for n in made]), np.int64).reshape(-1, 4)  # type: ignore[misc]
        live = np.flatnonzero(words[:, 3])
        pasids = (np.array(made, np.int64) << _PAGE_BITS)[live >> _PAGE_BITS] + (live & _SLOT_MASK)
        if not sparse:
            order = np.argsort(words[live, 3])
            return words[live[order], first_word:], pasids[order]
        keys = np.fromiter(sparse, np.int64, len(sparse))
        coded = list(sparse.values())
        records = [c >> _ORDER_BITS for c in coded]
        extra = np.empty((len(coded), 4), np.int64)
        extra[:, 0] = np.fromiter((r >> _TS_SHIFT for r in records), np.int64, len(records))
        extra[:, 1] = np.fromiter((r >> LIVE_LOW & IDX_MASK for r in records), np.int64, len(records))
        extra[:, 2] = np.fromiter((r & _LOW_MASK for r in records), np.int64, len(records))
        extra[:, 3] = np.fromiter((c & _ORDER_MASK for c in coded), np.int64, len(coded))
        apart = ~np.isin(keys, pasids)
        keys, extra = keys[apart], extra[apart]
        order = np.argsort(np.concatenate([words[live, 3], extra[:, 3]]))
        slotted = order < len(live)
        out = np.empty((len(order), 4 - first_word), np.int64)
        out[slotted] = words[live[order[slotted]], first_word:]
        out[~slotted] = extra[order[~slotted] - len(live), first_word:]
        return out, np.concatenate([pasids, keys])[order]

    # -- writes ----------------------------------------------------------------------------------------------
    def __setitem__(self, pasid: int, value: int) -> None:
        if pasid.__class__ is not int:
            raise ValueError(f"PASID {pasid!r} is not a number")
        page = self._page(pasid)
        if page is None:
            self._set_sparse(pasid, value)
            return
        i = (pasid & _SLOT_MASK) << 2
        added = page[i + 3]
        if self._before is not None or self._store is not None:
            self._noted(pasid, _record(page[i], page[i + 1], page[i + 2]) if added else None, value)
        # (one write of the three words: a reader on another thread sees the old record or the new, never a mix)
        page[i:i + 3] = array("q", _words(value))
        if not added:
            self._n += 1
            self._added = page[i + 3] = self._added + 1

    def _set_sparse(self, pasid: int, value: int) -> None:
        coded = self._sparse.get(pasid)
        if self._before is not None or self._store is not None:
            self._noted(pasid, None if coded is None else coded >> _ORDER_BITS, value)
        if coded is not None:
            self._sparse[pasid] = value << _ORDER_BITS | coded & _ORDER_MASK
            return
        self._n += 1
        self._added += 1
        self._sparse[pasid] = value << _ORDER_BITS | self._added
        if self._crowd_by(pasid, 1) >= _DENSE:
            self._make_dense(pasid >> _PAGE_BITS)

    def _crowd_by(self, pasid: int, step: int) -> int:
        """Count `step` more of the live PASIDs in the dict that share `pasid`'s page (none past the pages): how
        many it holds now."""
        if not 0 <= pasid < PASID_SPACE:
            return 0
        k = pasid >> _PAGE_BITS
        now = self._crowd.get(k, 0) + step
        if now:
            self._crowd[k] = now
        else:
            self._crowd.pop(k, None)
        return now

    def _make_dense(self, k: int) -> None:
        """Page `k` holds enough live PASIDs: make it, and move them from the dict into its slots."""
        page, sparse = self._new_page(k), self._sparse
        if not self._crowd.pop(k, 0):  # (none to move: a seek's restore makes its pages so)
            return
        for pasid in range(k << _PAGE_BITS, (k + 1) << _PAGE_BITS):
            coded = sparse.pop(pasid, None)
            if coded is not None:
                value, i = coded >> _ORDER_BITS, (pasid & _SLOT_MASK) << 2
                page[i:i + 4] = array("q", (*_words(value), coded & _ORDER_MASK))

    def _noted(self, pasid: int, old: int | None, value: int) -> None:
        """Note `pasid`'s record before its first write since the last `changes()`, and tell the store of the
        lifetimes that open and close as it goes from `old` to `value`."""
        before, store = self._before, self._store
        if before is not None and pasid not in before:
            before[pasid] = MISSING if old is None else old
        if store is not None:
            if old is None:
                store.opened += 1
            elif old >> LIVE_LOW != value >> LIVE_LOW:  # another lifetime under the same number
                store.opened += 1
                store.close(_LIFETIME, pasid, old, self._clock, True)  # type: ignore[arg-type]

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
        page = self._page(pasid)
        if page is not None:
            page[(pasid & _SLOT_MASK) << 2 | 3] = 0  # (empty)
        else:
            del self._sparse[pasid]
            self._crowd_by(pasid, -1)
        self._n -= 1
        before = self._before
        if before is not None and pasid not in before:
            before[pasid] = value
        if self._store is not None:
            self._store.close(_LIFETIME, pasid, value, self._clock, False)  # type: ignore[arg-type]
        return value

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
                out.extend((pasid, _GONE, 0, _GONE) if now is None else (pasid, *_words(now)))
        self._before = {}
        return out

    def frozen(self) -> array[int]:
        """Every entry, in order, as `changes()` gives them: what a full copy keeps."""
        words, pasids = self._ordered(0)
        out = np.empty((len(pasids), 4), np.int64)
        out[:, 0], out[:, 1:] = pasids, words[:, :3]
        return array("q", out.tobytes())

    def apply(self, changes: array[int]) -> None:
        """Bring this table (a copy, which notes and tells nothing) from one checkpoint to the next, the slots it
        touches as one array: a seek restores a full copy, and a million live PASIDs put one by one took 0.3 s of
        every seek. (A PASID appears at most once in `changes`; those new to the table are added in the order
        listed, as a dict would add them.)"""
        assert self._before is None and self._store is None
        rows = np.frombuffer(changes, np.int64).reshape(-1, 4)
        pasids, gone = rows[:, 0], rows[:, 3] == _GONE
        paged = (pasids >= 0) & (pasids < PASID_SPACE)
        page_of = np.where(paged, pasids >> _PAGE_BITS, 0)
        pages = self._pages
        coming = np.bincount(page_of[paged & ~gone], minlength=_PAGES)  # live entries each page will gain
        for k in np.flatnonzero(coming).tolist():
            if (k >= len(pages) or pages[k] is None) and self._crowd.get(k, 0) + int(coming[k]) >= _DENSE:
                self._make_dense(k)
        made = np.zeros(_PAGES, bool)
        made[[k for k, page in enumerate(pages) if page is not None]] = True
        slotted = paged & made[page_of]
        was = np.zeros(len(rows), bool)  # each entry live before
        in_slots = np.flatnonzero(slotted)
        touched = np.flatnonzero(np.bincount(page_of[in_slots], minlength=_PAGES))  # (counted, not sorted)
        at = np.zeros(_PAGES, np.int64)
        at[touched] = np.arange(len(touched))
        at = at[page_of[in_slots]]
        dense = np.frombuffer(bytearray(b"".join([pages[k] for k in touched.tolist()])),  # type: ignore[misc]
                              np.int64).reshape(-1, 4)
        slot = at << _PAGE_BITS | pasids[in_slots] & _SLOT_MASK
        was[in_slots] = dense[slot, 3] != 0
        elsewhere = np.flatnonzero(~slotted).tolist()
        was[elsewhere] = [p in self._sparse for p in pasids[elsewhere].tolist()]
        fresh = ~gone & ~was
        order = np.zeros(len(rows), np.int64)
        order[fresh] = np.arange(self._added + 1, self._added + 1 + int(np.count_nonzero(fresh)))
        kept, ended = ~gone[in_slots], gone[in_slots]
        dense[slot[kept], :3] = rows[in_slots[kept], 1:]
        dense[slot[ended], 3] = 0
        new = fresh[in_slots]
        dense[slot[new], 3] = order[in_slots[new]]
        for j, k in enumerate(touched.tolist()):
            pages[k][:] = array("q", dense[j << _PAGE_BITS:(j + 1) << _PAGE_BITS].tobytes())  # type: ignore[index]
        sparse = self._sparse
        for (pasid, ts, mid, low), ended, number in zip(rows[elsewhere].tolist(), gone[elsewhere].tolist(),
                                                         order[elsewhere].tolist(), strict=True):
            if ended:
                if sparse.pop(pasid, None) is not None:
                    self._crowd_by(pasid, -1)
            else:
                coded = sparse.get(pasid)
                sparse[pasid] = _record(ts, mid, low) << _ORDER_BITS | (
                    number if coded is None else coded & _ORDER_MASK)
                if coded is None:
                    self._crowd_by(pasid, 1)
        self._n += int(np.count_nonzero(fresh)) - int(np.count_nonzero(gone & was))
        self._added += int(np.count_nonzero(fresh))

    def track(self, store: Intervals, clock: _Clock) -> None:
        """Tell `store` when a lifetime opens (a PASID added, or its record replaced by one with another opening)
        and closes (popped, or replaced), dated by `clock`; its open lifetimes are this table's entries."""
        self._store, self._clock = store, clock
        store.watch(IntervalKind.LIFETIME, self)  # type: ignore[arg-type]
        store.opened += self._n


def entries(changes: Any) -> int:
    """Entries in one map's changes: a `LiveTable`'s four words each, a `Journal`'s two items."""
    return len(changes) // (4 if isinstance(changes, array) else 2)
