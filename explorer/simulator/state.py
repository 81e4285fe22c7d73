"""The simulator's state: what the kernel's PASID machinery holds at one moment.

Records are immutable values held in flat dicts: tuples keyed by plain tuples, and the numerous ones (live PASIDs,
outstanding page-request groups) packed into ints (explorer/state_records.py). The model that indexes a recording holds
its maps as `Journal`s (explorer/journal.py), so a checkpoint is what changed since the one before
(`StateChanges`), not a copy of the state: checkpoints cost memory in proportion to the events, however big the
state grows. A full copy (`freeze()`) is taken now and then, so that a seek applies a bounded number of changes.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from ..events import PASID_SPACE
from ..journal import Changes, Journal, apply_changes
from ..live_table import LiveTable, entries
from ..state_records import Atoms, GroupView, PasidView, PendingGroup


class Freed(NamedTuple):
    """The last time a PASID was freed: evidence for use-after-free and double-free findings."""

    ts_ns: int
    idx: int
    owner: str
    inferred: bool = False  # the simulator freed it by rule (mm gone) before the kernel's own event arrived


class Attachment(NamedTuple):
    """A (device, PASID) pair's domain: SVA (a process), paging, or nested (a guest)."""

    domain: int | None
    domain_type: str
    since_ns: int
    idx: int
    guest_pasid: int | None = None
    vm: str | None = None
    fault_queue: int | None = None
    inferred: bool = False
    route: str = "kernel"  # who answers its page requests: kernel, user (iommufd fault queue) or guest
    global_pasid: bool = False  # the number came from the global allocator (SVA, a driver), not user space


class Bind(NamedTuple):
    """One (mm, device) SVA bind handle; repeated binds take references on it."""

    refs: int
    pasid: int | None
    since_ns: int
    idx: int


class UapiObject(NamedTuple):
    """An object a process created through iommufd (IOAS, HWPT, fault queue, vIOMMU, vdevice)."""

    kind: str
    pid: int | None
    since_ns: int
    idx: int
    detail: str


# Maps that only serve findings, which a replay from a checkpoint never reports (they were found while indexing):
# checkpoints leave them out, and a replayer starts them empty
_FINDINGS_ONLY = frozenset({"answered", "answered_before", "stale_queue", "exit_reported"})
_NESTED = "others"  # the other machines' states: frozen state by state
ANSWERS_KEPT = 4096  # answered groups remembered per generation (a PRG index is 9 bits, so keys recur)
_MM = itemgetter(0)  # a bind's mm, of its key
UNSEEN_KEPT = 4096  # binds dropped unseen that are remembered (see `SimState.unseen_unbinds`)


@dataclass(slots=True)
class SimState:
    """Everything the simulator knows at one time; `freeze()` is a full checkpoint, `changes()` the others."""

    devices: dict[str, int | None] = field(default_factory=dict)  # device -> PASID capability width (bits)
    # device -> its IOMMU's own max_pasids where the header says it (VT-d ecap PSS, AMD EFR PASmax): the kernel gives
    # a device min(capability, IOMMU) (drivers/iommu/iommu.c dev_iommu_get_max_pasids(), 6.2+)
    iommu_limits: dict[str, int] = field(default_factory=dict)
    # PASID -> its `LivePasid` packed (explorer/state_records.py), in slots by PASID (explorer/live_table.py);
    # `pasids` reads them as LivePasids
    pasid_records: LiveTable = field(default_factory=LiveTable)
    freed: dict[int, Freed] = field(default_factory=dict)
    mm_pasid: dict[int, int] = field(default_factory=dict)
    mm_owner: dict[int, str] = field(default_factory=dict)
    exited: dict[int, tuple[int, int]] = field(default_factory=dict)  # mm -> (ts, idx) of its exit
    exit_reported: set[int] = field(default_factory=set)  # exited mms already reported for binds held on
    binds: dict[tuple[int, str], Bind] = field(default_factory=dict)
    attachments: dict[tuple[str, int], Attachment] = field(default_factory=dict)
    implied_detach: dict[tuple[str, int], int] = field(default_factory=dict)  # detached by a last unbind
    # Binds the model dropped when their mm exited or its PASID was freed, on kernels whose unbinds no probe can
    # name (before 6.2): an unbind seen later for one (a scenario's, an import's) is that same unbind, by (mm,
    # device). The oldest go past UNSEEN_KEPT.
    unseen_unbinds: dict[tuple[int, str], Bind] = field(default_factory=dict)
    # group key -> its `PendingGroup`, both packed (explorer/state_records.py); `groups` reads them as PendingGroups
    group_records: dict[int, int] = field(default_factory=dict)
    # The latest answers, (ts, idx) by packed group key, to tell a duplicate response from a stray one: two generations
    # of at most ANSWERS_KEPT each, so that memory stays bounded however long the recording.
    answered: dict[int, tuple[int, int]] = field(default_factory=dict)
    answered_before: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Groups a detach, replace or last unbind drained: the kernel answers them itself (iommufd_auto_response_faults,
    # VT-d intel_iommu_drain_pasid_prq), so a response seen for one later is that answer, not a stray.
    drained: dict[int, tuple[int, int]] = field(default_factory=dict)  # by packed group key
    # Devices whose PASIDs without a domain of their own go to user space: a nested domain at the RID takes them
    # (user-managed PASID tables: SMMUv3, the iommufd mock), seen when user space answered one -> "user"/"guest"
    rid_routes: dict[str, str] = field(default_factory=dict)
    # Functions sent Response Failure, which per PCIe disables PRI there: (ts, idx) of that response
    pri_disabled: dict[str, tuple[int, int]] = field(default_factory=dict)
    uapi_objects: dict[tuple[int | None, int], UapiObject] = field(default_factory=dict)
    uapi_calls: dict[tuple[int | None, str, int], int] = field(default_factory=dict)  # (pid, cmd, ret) -> n
    stale_queue: deque[tuple[int, int]] = field(default_factory=deque)  # (due time, mm) of exits holding binds
    # The time of the request with Last, by packed group key, for an outstanding group whose Last came after its
    # first request: the kernel handles a group only from then, so its answer is awaited from then. Kept whole in
    # every checkpoint rather than journalled: a group settled a batch at a time (pages.py) then leaves no note
    # here, as it leaves none of its record. A checkpoint holds the dict itself, which is copied before it next
    # changes (`own_last_requests`): many groups stuck after their Last (a hung device) cost one copy, not one a
    # checkpoint. None until the first.
    last_requests: dict[int, int] | None = None
    lasts_checkpointed: dict[int, int] | None = field(default=None, compare=False, repr=False)  # (no state: no scalar)
    time_ns: int = 0
    index: int = -1
    allocs: int = 0
    frees: int = 0
    high_water: int = 0
    high_water_pasid: int = 0
    lost: int = 0
    uncertain_since: int | None = None
    started_ns: int = 0  # the stream's first event (a capture's start: groups requested before it are unseen)
    # A merged recording's machines each have a state of their own (a guest's PASID 5 is not the host's): this
    # one is machine `machine`'s; the first machine's state holds the others' by number.
    machine: int = 0
    others: dict[int, SimState] = field(default_factory=dict)
    # No group that has not gone stale opened before this time (a lower bound): aging scans the groups only once
    # one may be due, so a million open groups are not scanned at every batch.
    fresh_from: int = 1 << 63
    # The text and shapes the packed records hold by number: one table for every state of a model, its checkpoints
    # and its replayer (append-only, so shared rather than copied)
    atoms: Atoms = field(default_factory=Atoms)

    @property
    def size(self) -> int:
        """Entries a full copy copies: what one costs in memory and time (about 40 bytes each)."""
        return sum(len(getattr(self, name)) for name in _MAPS) + sum(st.size for st in self.others.values())

    def of_machine(self, machine: int) -> SimState | None:
        """Machine `machine`'s state, asked of the first machine's (None: nothing happened on it yet)."""
        return self if machine == self.machine else self.others.get(machine)

    # -- checkpoints as changes ------------------------------------------------------------------------------
    def journal(self) -> None:
        """Note the changes of every map a checkpoint keeps: each a `Journal` (the interval maps are `Tracked`,
        journals too), the live PASIDs' table noting its own."""
        for name in _MAPS:
            value = getattr(self, name)
            if isinstance(value, (Journal, LiveTable)):
                value.start()
            else:
                setattr(self, name, Journal(value))

    @property
    def pending(self) -> int:
        """Keys written since the last checkpoint: what `changes()` costs."""
        return sum(getattr(self, name).pending for name in _MAPS)

    def changes(self) -> StateChanges:
        """What changed since the last checkpoint (a journalled state only), which becomes the next one."""
        maps = {name: c for name in _MAPS if (c := getattr(self, name).changes())}
        return StateChanges(maps, self._scalars())

    def _scalars(self) -> tuple[Any, ...]:
        """The numbers as they are now, and `last_requests`, kept whole: the checkpoint's from now on."""
        self.lasts_checkpointed = self.last_requests
        return tuple(getattr(self, name) for name in _SCALARS)

    def own_last_requests(self) -> dict[int, int]:
        """`last_requests` to change: this state's own, copied first where a checkpoint holds it."""
        lasts = self.last_requests
        if lasts is None:
            lasts = self.last_requests = {}
        elif lasts is self.lasts_checkpointed:
            lasts = self.last_requests = dict(lasts)
        return lasts

    def forget_changes(self) -> None:
        """A full copy was taken: the next changes count from here."""
        for name in _MAPS:
            getattr(self, name).changes()

    def freeze(self) -> FullCopy:
        """A full checkpoint, compact: each map but those only findings use as one flat tuple of its items (the
        live PASIDs as one array of four words an entry)."""
        maps = {name: m.frozen() if isinstance(m, LiveTable) else tuple(chain.from_iterable(m.items()))
                for name in _MAPS if (m := getattr(self, name))}
        return FullCopy(StateChanges(maps, self._scalars()),
                        tuple((m, st.freeze()) for m, st in self.others.items()), self.atoms)

    def apply(self, changes: StateChanges) -> None:
        """Bring this state (a copy) from one checkpoint to the next."""
        for name, c in changes.maps.items():
            target = getattr(self, name)
            if isinstance(target, LiveTable):
                target.apply(c)  # type: ignore[arg-type]
            else:
                apply_changes(target, c)
        for name, value in zip(_SCALARS, changes.scalars, strict=True):
            setattr(self, name, value)
        self.lasts_checkpointed = self.last_requests  # (the checkpoint's: copied before this state changes it)

    # -- questions the UI and the scenario runner ask --------------------------------------------------------
    @property
    def pasids(self) -> PasidView:
        """The live PASIDs, by number."""
        return PasidView(self.pasid_records, self.atoms)

    @property
    def groups(self) -> GroupView:
        """The outstanding page-request groups, by (device, PRG index, PASID or None)."""
        return GroupView(self.group_records, self.atoms)

    @property
    def uncertain(self) -> bool:
        return self.uncertain_since is not None

    def know_device(self, name: str, width: int | None, extra: dict[str, Any] | None, keep: bool = False) -> None:
        """A device from a header's device table: its capability width and, where known, its IOMMU's limit."""
        if keep and name in self.devices:
            return
        self.devices[name] = width
        limit = (extra or {}).get("iommu_max_pasids")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            self.iommu_limits[name] = limit

    def max_pasids(self, device: str | None) -> int:
        width = self.devices.get(device) if device is not None else None
        limit = min(PASID_SPACE, self.iommu_limits.get(device, PASID_SPACE)) if device is not None else PASID_SPACE
        return limit if width is None else min(1 << width, limit)

    def lowest_free(self, device: str | None = None) -> int | None:
        """What iommu_alloc_global_pasid() would return for `device` now: the lowest free PASID in range."""
        pasid = self.pasid_records.first_free(1)
        return pasid if pasid < self.max_pasids(device) else None

    def pasids_on(self, device: str) -> dict[int, Attachment]:
        return {p: a for (d, p), a in self.attachments.items() if d == device}

    def devices_of(self, pasid: int) -> dict[str, Attachment]:
        return {d: a for (d, p), a in self.attachments.items() if p == pasid}

    def binds_of(self, mm: int) -> dict[str, Bind]:
        return {d: b for (m, d), b in self.binds.items() if m == mm}

    def holds_binds(self, mm: int) -> bool:
        """Whether `mm` holds a bind: `binds_of` without making it (the handlers ask this at every free and unbind,
        of a map the size of the host's binds)."""
        return mm in map(_MM, self.binds)

    def outstanding(self, now_ns: int | None = None) -> list[tuple[PendingGroup, int]]:
        """Outstanding groups, oldest first, with their age at `now_ns` (default: the state's time)."""
        now = self.time_ns if now_ns is None else now_ns
        return sorted(((g, now - g.first_ns) for g in self.groups.values()), key=lambda x: -x[1])


@dataclass(frozen=True, slots=True)
class StateChanges:
    """One checkpoint as the changes since the one before: per map, each key written and its value now
    (`journal.MISSING`: gone; see `Journal.changes`), and every number as it is."""

    maps: dict[str, Changes | array[int]]  # (a `LiveTable`'s changes are an array: see explorer/live_table.py)
    scalars: tuple[Any, ...]

    @property
    def size(self) -> int:
        return sum(entries(c) for c in self.maps.values())


@dataclass(frozen=True, slots=True)
class FullCopy:
    """A full checkpoint: every map as changes from empty (16 bytes an entry, where a copy's dicts took about 85; the
    live PASIDs 32, four words each: see explorer/live_table.py), and each other machine's state (a merged
    recording's guests) the same way."""

    state: StateChanges
    others: tuple[tuple[int, FullCopy], ...]
    atoms: Atoms  # what its packed records' numbers stand for

    @property
    def size(self) -> int:
        """Entries it holds (as `SimState.size` counts them)."""
        return self.state.size + sum(other.size for _, other in self.others)

    def thaw(self) -> SimState:
        """A state that notes and tells nothing (dicts, and a live table), to replay from."""
        st = SimState(atoms=self.atoms)
        st.apply(self.state)
        st.others = {m: other.thaw() for m, other in self.others}
        return st


_MAPS = tuple(f.name for f in fields(SimState) if f.default_factory in (dict, LiveTable)
              and f.name not in _FINDINGS_ONLY and f.name != _NESTED)
_SCALARS = tuple(f.name for f in fields(SimState) if f.default is not NO_DEFAULT and f.compare)  # (not the bookkeeping)
