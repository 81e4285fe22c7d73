"""What is open between two events: PASID lifetimes, attachments, binds and page-request groups, as intervals.

The simulator is the one interpreter of events, so it is the one source of intervals: each of these is a record
the model keeps in its state (`SimState.pasids`, `.attachments`, `.binds`, `.groups`), and an interval lasts
exactly as long as its record does. The simulator's state holds those four maps as `Tracked` dicts (live PASIDs
and groups packed into ints, explorer/state_records.py), which tell
the `Intervals` store every record that appears, changes or goes, with the event that did it. So whatever rule
the model follows (a response matched by its group index alone, a group drained by a detach, a PASID freed when
its mm goes), the timeline's bars, the Perfetto export, `check` and the panels read the same story from here,
and nothing else works out an interval again.

Records open an interval when they appear under a key, and update it while their opening (time and event) stays
the same (a bind taking another reference, a group another request); a record with a new opening under a taken
key (a PASID allocated again, a domain replaced) closes the old interval and opens a new one. The model's
hottest path (a page request, a response) pays one Python call per write for this, and a closed interval is a
row of eight numbers (a closed attachment's or bind's other fields interned), sealed with the 65,535 closed
after it in a block of narrow columns (about 22 bytes an interval in a generated workload). Nothing here imports
the UI: the store is core, kept by the index, read by everything above it.
"""

from __future__ import annotations

import enum
import struct
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import numpy as np

from .journal import MISSING, Journal
from .state_records import GROUP, LIVE, Atoms, Packing, opening


class IntervalKind(enum.StrEnum):
    """The four kinds of interval, each one map of the simulator's state."""

    LIFETIME = "lifetime"  # a PASID allocated, until freed: SimState.pasids[pasid] -> LivePasid
    ATTACHMENT = "attachment"  # a (device, PASID) attached to a domain: SimState.attachments -> Attachment
    BIND = "bind"  # an (mm, device) SVA bind: SimState.binds -> Bind
    GROUP = "group"  # an outstanding page-request group: SimState.groups[(dev, prg, pasid)] -> PendingGroup


_KINDS = tuple(IntervalKind)
assert _KINDS == (IntervalKind.LIFETIME, IntervalKind.ATTACHMENT, IntervalKind.BIND, IntervalKind.GROUP)
# The kinds the state holds packed into ints (explorer/state_records.py), by number; the others are tuples
# whose fields `since_ns` and `idx` say when, and by which event, they opened (adjacent in the record).
_PACKED: tuple[Packing | None, ...] = (LIVE, None, None, GROUP)


@dataclass(frozen=True, slots=True)
class ClosedColumns:
    """Closed intervals of one kind as int64 columns, in closing order (see `Intervals.closed_columns`)."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    open_idx: np.ndarray  # the event that opened each (-1: inferred by a rule)
    close_idx: np.ndarray  # the event that closed each


@dataclass(slots=True, eq=False)
class Interval:
    """One interval: which kind, under which state key, the model's latest record of it, and its evidence (the
    events that opened and closed it; -1 where the model inferred it by a rule rather than saw an event)."""

    kind: IntervalKind
    key: Any  # the state's key: a PASID, (device, PASID), (mm, device) or (device, PRG, PASID)
    record: Any  # LivePasid, Attachment, Bind or PendingGroup, as the model last held it
    start_ns: int
    open_idx: int
    end_ns: int | None = None  # None while open
    close_idx: int | None = None  # the event that closed it; None while open
    replaced: bool = False  # closed because a new record took its key (reallocated, reattached, replaced)

    @property
    def is_open(self) -> bool:
        return self.end_ns is None

    @property
    def device(self) -> str | None:
        """The device it belongs to (None for a PASID's lifetime, which is global)."""
        if self.kind == IntervalKind.LIFETIME:
            return None
        if self.kind == IntervalKind.BIND:
            return self.key[1]  # type: ignore[no-any-return]
        return self.record.device if self.kind == IntervalKind.GROUP else self.key[0]  # type: ignore[no-any-return]

    @property
    def machine(self) -> int | None:
        """The machine of a PASID's lifetime (whose allocator it came from); None for the others, whose device
        names their machine (explorer/machines.py)."""
        return self.record.machine if self.kind == IntervalKind.LIFETIME else None  # type: ignore[no-any-return]

    @property
    def pasid(self) -> int | None:
        if self.kind == IntervalKind.LIFETIME:
            return self.key  # type: ignore[no-any-return]
        if self.kind == IntervalKind.ATTACHMENT:
            return self.key[1]  # type: ignore[no-any-return]
        return self.record.pasid  # type: ignore[no-any-return]

    def end_or(self, t_ns: int) -> int:
        """Its end, or `t_ns` while it is open."""
        return t_ns if self.end_ns is None else self.end_ns


class _Clock(Protocol):
    """What the store reads to date a close: the state's latest event (time and index)."""

    time_ns: int
    index: int


_WIDTH = 8  # numbers per closed interval: packed, start, end, opening event, closing event, three numbers
_SLICE = 1 << 16  # closed intervals sealed in a block, and a reader's copy at a time
_READ = 4096  # closed intervals made Python numbers at a time, read one by one
_ROW, _PAIR = struct.Struct(f"={_WIDTH}q").pack, struct.Struct("=2q").pack  # as array("q") holds them


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one tuple kind's record is taken apart when it closes and put together when read."""

    cls: type
    opening: int  # position of its opening time; the opening event's index follows
    rest: Callable[[Any], tuple[Any, ...]]  # its other fields, as one tuple
    rebuild: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # (opening, rest) back in field order

    @classmethod
    def of(cls, record_type: type) -> _Layout:
        names: tuple[str, ...] = record_type._fields  # type: ignore[attr-defined]
        start, idx = names.index("since_ns"), names.index("idx")
        assert idx == start + 1, f"{record_type.__name__}: since_ns and idx must be adjacent"
        rest = tuple(i for i in range(len(names)) if i not in (start, idx))
        order = (start, idx, *rest)  # where each item of (opening, rest) goes
        assert len(rest) >= 2, "a record's other fields come out as one tuple"
        return cls(record_type, start, itemgetter(*rest), itemgetter(*(order.index(i) for i in range(len(names)))))


class Intervals:
    """The one store of intervals, filled by the simulator as it replays (see the module's docstring).

    The open intervals are the records in the model's state itself (nothing is copied while they are open).
    Closed ones are kept in the order they closed as a row of numbers each (its times, its evidence, and a packed
    record's own numbers) plus, for a tuple record, the rest of it, interned: 64 bytes, until `_SLICE` of them
    are sealed in a `_Block`, where a column's numbers take one to eight bytes each as their spread in the block
    needs (a closed group about 22 bytes).
    `Interval` objects are made when read. Read once the model is done with the events you want, or from the
    thread that feeds it (the explorer's bars wait for the model's end)."""

    def __init__(self, atoms: Atoms) -> None:
        self._atoms = atoms  # what the packed records' numbers stand for (the model's states share it)
        # the state's maps: the open intervals (one map of each kind per machine, in a merged recording)
        self._maps: dict[IntervalKind, list[dict[Any, Any]]] = {}
        self._layouts: list[_Layout | None] = [None] * len(_KINDS)
        self._cols = array("q")  # _WIDTH numbers per closed interval, for those not sealed in a block yet
        # what readers read, replaced whole when a block is sealed: (the sealed blocks, the rows after them)
        self._published: tuple[tuple[_Block, ...], array[int]] = ((), self._cols)
        self._shapes: dict[tuple[Any, ...], int] = {}  # (key, rest of a tuple record) -> its number
        self._shape_list: list[tuple[Any, ...]] = []
        self.opened = 0  # intervals opened so far: with `closed_count`, tells a reader it is out of date
        # event index -> closed intervals it opened or closed: sorted pairs per sealed block, and of the rows after
        self._evidence: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
        self._by_event = _ByKey()
        # A group's requests after its first, as (request, the group's opening request) pairs in the order they
        # came: 16 bytes per later request, nothing per group (a million open groups cost nothing more here)
        self._joins = array("q")
        self._joins_by_opener = _ByKey()

    # -- filled by the simulator's state -------------------------------------------------------------------
    def watch(self, kind: IntervalKind, records: dict[Any, Any]) -> None:
        """`records` (a `Tracked` map of the model's state, of one machine) holds this kind's open intervals."""
        self._maps.setdefault(kind, []).append(records)

    def layout(self, code: int, record: Any) -> _Layout:
        """How tuple records of kind number `code` are laid out: learnt from the first one."""
        got = self._layouts[code]
        if got is None:
            got = self._layouts[code] = _Layout.of(type(record))
        return got

    def close(self, code: int, key: Any, record: Any, clock: _Clock, replaced: bool) -> None:
        """The interval of `record` (kind number `code`) ends at the clock's event."""
        packing = _PACKED[code]
        if packing is not None:
            shape, start, opened_by, n1, n2, n3 = packing.closing(key, record)
        else:
            lay = self._layouts[code] or self.layout(code, record)
            rest = (key, lay.rest(record))
            shape = self._shapes.get(rest)  # type: ignore[assignment]
            if shape is None:
                shape = self._shapes[rest] = len(self._shape_list)
                self._shape_list.append(rest)
            start, opened_by, n1, n2, n3 = record[lay.opening], record[lay.opening + 1], 0, 0, 0
        end = clock.time_ns
        # (packed, then appended as bytes: a quarter of the cost of extending the array by a tuple)
        self._cols.frombytes(_ROW(shape << 3 | code << 1 | replaced, start, end if end > start else start, opened_by,
                                  clock.index, n1, n2, n3))
        if len(self._cols) == _WIDTH * _SLICE:
            self._seal()

    def _seal(self) -> None:
        """The rows not sealed yet become a block, and new rows go to a new array."""
        blocks, rows = self._published
        self._cols = array("q")
        self._published = ((*blocks, _Block.of(np.frombuffer(rows, dtype=np.int64).reshape(-1, _WIDTH))), self._cols)

    def joined(self, request_idx: int, open_idx: int) -> None:
        """Event `request_idx` is a later request of the page-request group that event `open_idx` opened."""
        self._joins.frombytes(_PAIR(request_idx, open_idx))

    def closed_many(self, rows: bytes | memoryview) -> None:
        """Intervals closed in this order, none replaced: `rows`, `_WIDTH` int64 a row as `close` writes them. The
        page-request groups the model settles a batch at a time (explorer/simulator/pages.py)."""
        if len(self._cols) + len(rows) // 8 < _SLICE * _WIDTH:  # (no block sealed on the way: the most)
            self._cols.frombytes(rows)
            return
        at = 0
        while at < len(rows):
            take = min(_SLICE * _WIDTH - len(self._cols), (len(rows) - at) // 8)
            self._cols.frombytes(rows[at:at + 8 * take])
            at += 8 * take
            if len(self._cols) == _WIDTH * _SLICE:
                self._seal()

    def joined_many(self, pairs: np.ndarray) -> None:
        """`joined` for (request, opening request) pairs given flat (int64), in order."""
        self._joins.frombytes(pairs.tobytes())

    # -- read by everything else ---------------------------------------------------------------------------
    def later_requests(self, open_idx: int) -> list[int]:
        """The requests of the group that event `open_idx` opened, after that first one, in order (a Perfetto
        flow starts at each of them as at the first)."""
        n = len(self._joins)

        def pairs() -> tuple[np.ndarray, np.ndarray]:
            got = np.frombuffer(self._joins[:n], dtype=np.int64).reshape(-1, 2)  # (a copy: the model may go on)
            return got[:, 1], got[:, 0]

        return self._joins_by_opener.find(n, pairs, open_idx) if n else []

    @property
    def closed_count(self) -> int:
        blocks, rows = self._published
        return len(blocks) * _SLICE + len(rows) // _WIDTH

    def _closed(self, i: int) -> Interval:
        blocks, rows = self._published
        b, r = divmod(i, _SLICE)
        return self._made(blocks[b].rows(r, r + 1)[0].tolist() if b < len(blocks) else rows[
            _WIDTH * (i - len(blocks) * _SLICE):_WIDTH * (i - len(blocks) * _SLICE + 1)])

    def _made(self, row: Sequence[int]) -> Interval:
        """The closed interval of one row."""
        packed, start, end, opened_by, closed_by, *numbers = row
        code = packed >> 1 & 3
        packing = _PACKED[code]
        if packing is not None:
            key, record = packing.reopened(self._atoms, packed >> 3, start, opened_by, *numbers)
        else:
            lay = self._layouts[code]
            assert lay is not None
            key, rest = self._shape_list[packed >> 3]
            record = tuple.__new__(lay.cls, lay.rebuild((start, opened_by, *rest)))
        return Interval(_KINDS[code], key, record, start, opened_by, end, closed_by, bool(packed & 1))

    def closed_columns(self, kind: IntervalKind) -> ClosedColumns:
        """The closed intervals of `kind` as numpy columns: an aggregate over hundreds of thousands of them (the
        range panel's page-request latencies) reads these instead of making an Interval of each. A copy, taken
        whole, so the model may go on closing intervals meanwhile."""
        code = _KINDS.index(kind)
        rows = np.concatenate([np.zeros((0, 4), np.int64)] +
                              [t[(t[:, 0] >> 1 & 3) == code, 1:5] for t in self._slices(self.closed_count)])
        return ClosedColumns(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])

    def _slices(self, n: int, first: int = 0) -> Iterator[np.ndarray]:
        """Closed intervals `first` to `n`'s rows, a block's or the rows after them at a time, as int64 copies (the
        model may go on closing intervals meanwhile, and a reader's copy stays a few megabytes however many
        there are)."""
        blocks, rows = self._published
        for b in range(first // _SLICE, min(len(blocks), -(-n // _SLICE))):
            yield blocks[b].rows(max(first - b * _SLICE, 0), min(n - b * _SLICE, _SLICE))
        sealed = len(blocks) * _SLICE
        if n > sealed:
            yield np.frombuffer(rows[(max(first, sealed) - sealed) * _WIDTH:(n - sealed) * _WIDTH],
                                dtype=np.int64).reshape(-1, _WIDTH)

    def closed_since(self, n: int, upto: int | None = None) -> Iterator[Interval]:
        """Intervals closed after the first `n` (up to the first `upto`, by default as many as are closed now), in
        closing order (a reader's bookmark is `closed_count`)."""
        return (self._made(row) for t in self._slices(self.closed_count if upto is None else upto, n)
                for a in range(0, len(t), _READ) for row in t[a:a + _READ].tolist())

    def open_now(self, opened_by: int | None = None, kind: IntervalKind | None = None) -> Iterator[Interval]:
        """The intervals open at the model's latest event (those event `opened_by` opened, told from each record's
        opening alone: a million open PASIDs are not each made a `LivePasid` to find one), of every kind or
        `kind` alone (outstanding groups are listed without reading a million live PASIDs)."""
        for of, maps in self._maps.items() if kind is None else ((kind, self._maps.get(kind, [])),):
            code = _KINDS.index(of)
            packing = _PACKED[code]
            for records in maps:
                for key in list(records):  # (a copy of the keys alone: the model may go on meanwhile)
                    record = records.get(key)
                    if record is None:
                        continue
                    if packing is not None:
                        start, idx = opening(record, packing.low)
                        if opened_by is None or idx == opened_by:
                            yield Interval(of, *packing.read(self._atoms, key, record), start, idx)
                        continue
                    p = self.layout(code, record).opening
                    if opened_by is None or record[p + 1] == opened_by:
                        yield Interval(of, key, record, record[p], record[p + 1])

    def __iter__(self) -> Iterator[Interval]:
        """Every interval: the closed ones in closing order, then the open ones."""
        yield from self.closed_since(0)
        yield from self.open_now()

    def __len__(self) -> int:
        return self.closed_count + sum(len(m) for maps in self._maps.values() for m in maps)

    def counts(self) -> dict[IntervalKind, tuple[int, int]]:
        """Per kind, the intervals seen so far and those open now, counted without reading them."""
        closed = np.zeros(len(_KINDS), np.int64)
        for t in self._slices(self.closed_count):
            closed += np.bincount(t[:, 0] >> 1 & 3, minlength=len(_KINDS))
        now = {kind: sum(len(m) for m in maps) for kind, maps in self._maps.items()}
        return {kind: (int(closed[i]) + now.get(kind, 0), now.get(kind, 0)) for i, kind in enumerate(_KINDS)}

    def of(self, kind: IntervalKind) -> Iterator[Interval]:
        return (iv for iv in self if iv.kind == kind)

    def at(self, t_ns: int) -> list[Interval]:
        """The intervals open at `t_ns`: begun at or before it, not yet closed (an interval closed at `t_ns` is
        over, as the state after that time's event is)."""
        return [iv for iv in self if iv.start_ns <= t_ns and (iv.end_ns is None or iv.end_ns > t_ns)]

    def by_event(self, idx: int) -> list[Interval]:
        """The intervals event `idx` opened or closed: the evidence an event panel shows. A sealed block's pairs
        are sorted once, at the first call after it is sealed (the explorer's worker makes that call), and the
        rows after the blocks once per count of them."""
        blocks, rows = self._published
        got = self._evidence
        if len(got) < len(blocks):  # (replaced whole: another thread may be reading the tuple)
            got = self._evidence = got + tuple(_sorted(*_evidence(b.rows(0, b.size))) for b in blocks[len(got):])
        found = []
        for b, (events, numbers) in enumerate(got[:len(blocks)]):
            found += [b * _SLICE + i for i in numbers[_found(events, idx)].tolist()]
        sealed, n = len(blocks) * _SLICE, len(rows) // _WIDTH
        if n:
            found += [sealed + i for i in self._by_event.find(sealed + n, lambda: _evidence(
                np.frombuffer(rows[:n * _WIDTH], dtype=np.int64).reshape(-1, _WIDTH)), idx)]
        return [self._closed(i) for i in found] + list(self.open_now(idx))


def _evidence(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(event, row number) pairs of the events that opened and closed each row, unsorted; an interval opened and
    closed by one event is paired with it once, and one a rule inferred with event -1."""
    ends = rows[:, 3:5].copy()
    ends[ends[:, 1] == ends[:, 0], 1] = -1
    return ends.reshape(-1), np.arange(2 * len(rows), dtype=np.int32) >> 1


def _sorted(keys: np.ndarray, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, number) pairs sorted by key (a stable sort: numbers keep their order under one key), those with a
    negative key (none) left out, the keys 32-bit where they fit (an event's index does: 12 bytes a pair)."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = int(np.searchsorted(keys, 0))
    keys = keys[first:]
    return (keys.astype(np.uint32) if not len(keys) or int(keys[-1]) <= _U32 else keys.copy()), numbers[order[first:]]


_U32 = int(np.iinfo(np.uint32).max)


def _found(keys: np.ndarray, key: int) -> slice:
    """Where `key` is among sorted `keys` (searched as their own type: a Python int would have numpy copy them
    all to a wider one first)."""
    if not 0 <= key <= int(np.iinfo(keys.dtype).max):
        return slice(0, 0)
    k = keys.dtype.type(key)
    return slice(int(np.searchsorted(keys, k, side="left")), int(np.searchsorted(keys, k, side="right")))


@dataclass(frozen=True, slots=True)
class _Block:
    """_SLICE closed intervals' rows, sealed: each column as its least value and every row's offset from it, in
    the narrowest unsigned type that holds them (a block of closed groups: about 22 bytes a row, not 64)."""

    least: np.ndarray  # each column's least value (int64)
    offsets: tuple[np.ndarray, ...]  # each column's offsets from it

    @property
    def size(self) -> int:
        return len(self.offsets[0])

    @classmethod
    def of(cls, rows: np.ndarray) -> _Block:
        least, most = rows.min(axis=0), rows.max(axis=0)
        offsets = []
        for j in range(_WIDTH):
            span = int(most[j]) - int(least[j])
            kind = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if span <= np.iinfo(t).max)
            offsets.append((rows[:, j].view(np.uint64) - least[j:j + 1].view(np.uint64)).astype(kind))  # (mod 2**64)
        return cls(least, tuple(offsets))

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows `lo` to `hi` as int64, as they were closed."""
        out = np.empty((hi - lo, _WIDTH), np.int64)
        least = self.least.view(np.uint64)
        for j, column in enumerate(self.offsets):
            out[:, j] = (column[lo:hi].astype(np.uint64) + least[j]).view(np.int64)
        return out


class _ByKey:
    """Numbers looked up by a key, from (key, number) pairs sorted once per growth of their source: 8-12 bytes
    a pair, where a dict of lists took about 150 (a key, a list and the map's entry)."""

    __slots__ = ("_sorted",)

    def __init__(self) -> None:
        self._sorted: tuple[int, np.ndarray, np.ndarray] | None = None  # (pairs then, keys, numbers), replaced whole

    def find(self, n: int, pairs: Callable[[], tuple[np.ndarray, np.ndarray]], key: int) -> list[int]:
        """The numbers paired with `key`, in the order `pairs()` gives them; `pairs()` gives every (key, number)
        pair of a source that holds `n` items (a negative key: no pair), called only when `n` has changed since
        the last call."""
        got = self._sorted
        if got is None or got[0] != n:
            got = self._sorted = (n, *_sorted(*pairs()))
        return got[2][_found(got[1], key)].tolist()  # type: ignore[no-any-return]


class Tracked(Journal):
    """One map of the simulator's state that tells an `Intervals` store when a record goes (popped, deleted, or
    replaced by one with another opening), and, as every `Journal`, notes what it held at the last checkpoint.
    Only writes are overridden (reads stay the dict's own), and `copy()` is a plain dict: a checkpoint copies
    the records, not the reporting, so replaying from it reports nothing twice."""

    __slots__ = ("_store", "_code", "_clock", "_at", "_packed")

    def __init__(self, store: Intervals, kind: IntervalKind, clock: _Clock, items: dict[Any, Any]) -> None:
        super().__init__(keep=False)
        self._store, self._code, self._clock = store, _KINDS.index(kind), clock
        packing = _PACKED[self._code]
        # a packed record's opening is its bits above `_at`; a tuple's, its fields `_at` and `_at` + 1 (learnt)
        self._packed = packing is not None
        self._at = -1 if packing is None else packing.low
        store.watch(kind, self)
        for key, value in items.items():
            self[key] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        old = self.get(key)
        dict.__setitem__(self, key, value)
        before = self._before
        if before is not None and key not in before:
            before[key] = MISSING if old is None else old
        if old is None:
            self._store.opened += 1
            return
        p = self._at
        if self._packed:
            reopened = old >> p != value >> p
        else:
            if p < 0:
                p = self._at = self._store.layout(self._code, value).opening
            reopened = old[p] != value[p] or old[p + 1] != value[p + 1]
        if reopened:  # another interval under the same key
            self._store.opened += 1
            self._store.close(self._code, key, old, self._clock, True)

    def gone(self, key: Any, old: Any) -> None:
        """`key`'s record `old` is deleted or popped: its interval closes at the clock's event."""
        before = self._before
        if before is not None and key not in before:
            before[key] = old
        self._store.close(self._code, key, old, self._clock, False)

