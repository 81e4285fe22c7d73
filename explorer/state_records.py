"""The simulator's most numerous records, packed: a live PASID and an outstanding page-request group are each held
as one Python int, under an int key, rather than as a NamedTuple of boxed numbers under a tuple key.

A million live PASIDs or open groups are what hostile and long recordings hold (issue 16). As tuples each cost the
model about 270-330 bytes (the tuple, its unique numbers, a tuple key, the map's entry); packed, about 120 (the
map's entry, a key and a value of 32-48 bytes each). The ints are immutable, so the journals and checkpoints share
them as they shared the tuples, and a seek restores them exactly. Text (devices, paths, owners) goes in as the
number of an append-only table (`Atoms`) that every state of one model, its checkpoints and its replayer share.
`LivePasid` and `PendingGroup` are made on access by `PasidView` and `GroupView` (`SimState.pasids`, `.groups`),
for everything that reads the state; the engine's hot paths work on the ints.

A value's layout: its opening time (63 bits), its opening event + 1 (41 bits), then the kind's own low bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .live_table import LiveTable

IDX_BITS = 41  # an event index + 1 (-1: inferred by a rule)
IDX_MASK = (1 << IDX_BITS) - 1
U32 = 1 << 32
P_BITS = 33  # a PASID + 1 (0: none)
_P_MASK = (1 << P_BITS) - 1
NONE = -(1 << 63)  # a number that is None, in a closed interval's row


class LivePasid(NamedTuple):
    """An allocated PASID: who asked (path), for whom (owner, mm, vm), since when and by which event."""

    pasid: int
    path: str
    owner: str
    mm: int | None
    vm: str | None
    since_ns: int
    idx: int  # event index of the allocation (-1 when inferred)
    certain: bool = True
    machine: int = 0  # the machine whose allocator handed it out (explorer/machines.py)


class PendingGroup(NamedTuple):
    """An outstanding page-request group, open from its first request until its response."""

    device: str
    pasid: int | None
    prg: int
    first_ns: int
    first_idx: int
    requests: int
    closed: bool  # the request carrying Last has arrived
    route: str  # who must answer: kernel (iopf/SVA), user (iommufd fault queue), guest (a VM)
    stale: bool = False  # already reported as unanswered
    needs_pasid: bool = True  # the response must carry the PASID to match (else the PRG index alone matches)
    unattached: bool = False  # its PASID had no domain attached on the device when the group opened


class Atoms:
    """Values records hold (text, shapes of fields), by number: append-only, so that a number in a checkpoint
    keeps its meaning. The model's thread and a seek's may add at once, so a new value is added under a lock."""

    __slots__ = ("codes", "values", "_lock")

    def __init__(self) -> None:
        self.codes: dict[Any, int] = {}
        self.values: list[Any] = []
        self._lock = Lock()

    def code(self, value: Any) -> int:
        got = self.codes.get(value)
        if got is None:
            with self._lock:
                got = self.codes.get(value)
                if got is None:
                    got = len(self.values)
                    self.values.append(value)  # (before the code is published: a reader finds its value)
                    self.codes[value] = got
        return got


def opening(value: int, low: int) -> tuple[int, int]:
    """A packed record's opening time and event, its kind's low bits being `low` wide."""
    return value >> (low + IDX_BITS), (value >> low & IDX_MASK) - 1


def _opened(ts: int, idx: int) -> int:
    if not 0 <= ts < 1 << 63 or not -1 <= idx < IDX_MASK:
        raise ValueError(f"time {ts} or event {idx} out of range")
    return ts << IDX_BITS | idx + 1


# -- live PASIDs: key the PASID; low bits the code of (path, owner, mm, vm, machine), then whether certain -------
LIVE_LOW = 40


def pack_live(atoms: Atoms, path: str, owner: str, mm: int | None, vm: str | None, ts: int, idx: int,
              certain: bool, machine: int) -> int:
    return _opened(ts, idx) << LIVE_LOW | atoms.code((path, owner, mm, vm, machine)) << 1 | bool(certain)


def live_of(atoms: Atoms, pasid: int, value: int) -> LivePasid:
    ts, idx = opening(value, LIVE_LOW)
    return _live(atoms, pasid, value & _LIVE_MASK, ts, idx)


def _live(atoms: Atoms, pasid: int, low: int, ts: int, idx: int) -> LivePasid:
    path, owner, mm, vm, machine = atoms.values[low >> 1]
    return LivePasid(pasid, path, owner, mm, vm, ts, idx, bool(low & 1), machine)


_LIVE_MASK = (1 << LIVE_LOW) - 1


def _live_closing(pasid: int, value: int) -> tuple[int, int, int, int, int, int]:
    return (value & _LIVE_MASK, *opening(value, LIVE_LOW), pasid, 0, 0)


def _live_reopened(atoms: Atoms, low: int, ts: int, idx: int, pasid: int, _: int, __: int) -> tuple[int, LivePasid]:
    return pasid, _live(atoms, pasid, low, ts, idx)


# -- page-request groups: key (device code, PRG, PASID + 1 or 0); low bits the PASID + 1 when the key has none,
# the requests so far, the route and four flags ------------------------------------------------------------------
GROUP_LOW = P_BITS + 32 + 6
CLOSED, STALE, NEEDS, UNATTACHED = 1, 2, 4, 8
REQUEST = 1 << 6  # one more request
ROUTES = ("kernel", "user", "guest", "auto")
_ROUTE_BITS = {route: n << 4 for n, route in enumerate(ROUTES)}
GROUP_OPENED = GROUP_LOW + IDX_BITS  # a packed group shifted right by this many is its opening time
KEY_DEV = P_BITS + 32


def group_key(atoms: Atoms, device: str | None, prg: int, pasid: int | None) -> int:
    """The key of group (device, PRG index, PASID or None); out-of-range numbers are refused (ValueError)."""
    dev = atoms.codes.get(device)
    if dev is None:
        dev = atoms.code(device)
    if prg >> 32 or pasid is not None and pasid >> 32:  # (a negative number too)
        raise ValueError(f"PRG {prg} or PASID {pasid} out of range")
    return (dev << 32 | prg) << P_BITS | (0 if pasid is None else pasid + 1)


def group_device_prg(atoms: Atoms, device: str | None, prg: int) -> int | None:
    """What every key of (device, PRG index) holds above its PASID (None: no group of `device` ever opened)."""
    dev = atoms.codes.get(device)
    return None if dev is None else dev << 32 | prg


def open_group(ts: int, idx: int, last: bool, route: str, needs: bool, unattached: bool,
               unkeyed_pasid: int | None) -> int:
    """A group at its first request, packed (`unkeyed_pasid`: its PASID where its key holds none)."""
    if ts >> 63 or idx >> IDX_BITS - 1:  # (negative numbers too: see `_opened`)
        raise ValueError(f"time {ts} or event {idx} out of range")
    p = 0 if unkeyed_pasid is None else unkeyed_pasid + 1
    return (((ts << IDX_BITS | idx + 1) << P_BITS | p) << 32 | 1) << 6 | _ROUTE_BITS[route] | (
        CLOSED if last else 0) | (NEEDS if needs else 0) | (UNATTACHED if unattached else 0)


def group_pasid(key: int, value: int) -> int | None:
    p = key & _P_MASK or value >> 38 & _P_MASK
    return p - 1 if p else None


def group_of(atoms: Atoms, key: int, value: int) -> PendingGroup:
    ts, idx = opening(value, GROUP_LOW)
    return PendingGroup(atoms.values[key >> KEY_DEV], group_pasid(key, value), key >> P_BITS & (U32 - 1), ts, idx,
                        value >> 6 & (U32 - 1), bool(value & CLOSED), ROUTES[value >> 4 & 3], bool(value & STALE),
                        bool(value & NEEDS), bool(value & UNATTACHED))


def group_key_tuple(atoms: Atoms, key: int) -> tuple[str, int, int | None]:
    """A group's key as the state's readers know it: (device, PRG index, PASID or None)."""
    p = key & _P_MASK
    return atoms.values[key >> KEY_DEV], key >> P_BITS & (U32 - 1), p - 1 if p else None


def _group_closing(key: int, value: int) -> tuple[int, int, int, int, int, int]:
    """A closed group as a closed interval's numbers: (shape: device code and flags, opening time and event,
    PASID, PRG index, requests)."""
    p = key & _P_MASK or value >> 38 & _P_MASK
    return (key >> KEY_DEV << 6 | value & 63, value >> GROUP_OPENED, (value >> GROUP_LOW & IDX_MASK) - 1,
            p - 1 if p else NONE, key >> P_BITS & (U32 - 1), value >> 6 & (U32 - 1))


def _group_reopened(atoms: Atoms, shape: int, ts: int, idx: int, pasid: int, prg: int, requests: int
                   ) -> tuple[tuple[str, int, int | None], PendingGroup]:
    flags = shape & 63
    p = None if pasid == NONE else pasid
    g = PendingGroup(atoms.values[shape >> 6], p, prg, ts, idx, requests, bool(flags & CLOSED),
                     ROUTES[flags >> 4 & 3], bool(flags & STALE), bool(flags & NEEDS), bool(flags & UNATTACHED))
    return (g.device, prg, p if g.needs_pasid else None), g


@dataclass(frozen=True, slots=True)
class Packing:
    """How a packed kind's records become a closed interval's numbers (shape, opening time and event, three
    numbers) and records again (explorer/intervals.py keeps them so)."""

    low: int  # its low bits: a value shifted right by this many holds its opening alone
    closing: Callable[[int, int], tuple[int, int, int, int, int, int]]  # (key, value) -> the numbers
    reopened: Callable[..., tuple[Any, Any]]  # (atoms, *the numbers) -> (key as readers know it, record)
    read: Callable[[Atoms, int, int], tuple[Any, Any]]  # (atoms, key, value) -> (key, record)


LIVE = Packing(LIVE_LOW, _live_closing, _live_reopened, lambda atoms, k, v: (k, live_of(atoms, k, v)))
GROUP = Packing(GROUP_LOW, _group_closing, _group_reopened,
                lambda atoms, k, v: (group_key_tuple(atoms, k), group_of(atoms, k, v)))


class PasidView(Mapping[int, LivePasid]):
    """A state's live PASIDs as `LivePasid`s, made on access from its packed map (a `live_table.LiveTable`)."""

    __slots__ = ("_raw", "_atoms")

    def __init__(self, raw: LiveTable, atoms: Atoms) -> None:
        self._raw, self._atoms = raw, atoms

    def __getitem__(self, pasid: int) -> LivePasid:
        return live_of(self._atoms, pasid, self._raw[pasid])

    def __contains__(self, pasid: object) -> bool:
        return pasid in self._raw

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def lowest(self, n: int) -> list[int]:
        """The `n` lowest live PASIDs, in order: what the allocator panel lists."""
        return self._raw.lowest(n)


class GroupView(Mapping[tuple[str, int, "int | None"], PendingGroup]):
    """A state's outstanding groups as `PendingGroup`s under (device, PRG index, PASID or None) keys, made on access
    from its packed map."""

    __slots__ = ("_raw", "_atoms")

    def __init__(self, raw: dict[int, int], atoms: Atoms) -> None:
        self._raw, self._atoms = raw, atoms

    def __getitem__(self, key: tuple[str, int, int | None]) -> PendingGroup:
        device, prg, pasid = key
        above = group_device_prg(self._atoms, device, prg)
        if above is None:
            raise KeyError(key)
        code = above << P_BITS | (0 if pasid is None else pasid + 1)
        return group_of(self._atoms, code, self._raw[code])

    def __iter__(self) -> Iterator[tuple[str, int, int | None]]:
        return (group_key_tuple(self._atoms, k) for k in list(self._raw))

    def __len__(self) -> int:
        return len(self._raw)

    def find(self, device: str | None, prg: int, pasid: int | None) -> PendingGroup | None:
        """The open group of `device`, PRG index `prg` and PASID `pasid`, keyed by its PASID or (a function that
        needs none in the response) without it: two lookups, where a scan would read back every group."""
        if not isinstance(prg, int):
            return None
        for key in ((device, prg, pasid), (device, prg, None)):
            g = self.get(key)
            if g is not None and g.pasid == pasid:
                return g
        return None

    def values(self) -> Iterator[PendingGroup]:  # type: ignore[override]
        atoms = self._atoms
        return (group_of(atoms, k, v) for k, v in list(self._raw.items()))
