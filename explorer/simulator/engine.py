"""The deterministic model of the kernel's PASID machinery.

Feed it events in time order (rows for speed, `Event`s for convenience); it keeps `SimState` and appends every
broken invariant to `anomalies`. It never guesses after lost events: findings a lost event could explain are
reported as uncertain, and state is flagged uncertain from the loss on. A recording that never could see the PASID
lifecycle (`coverage.lifecycle_unobserved`) is uncertain the same way from its start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from errno import ENOSPC
from itertools import compress, repeat
from operator import eq, itemgetter
from typing import Any, TypeVar

from ..events import (
    IOMMU_NO_PASID,
    R_CPU,
    R_DEVICE,
    R_FIELDS,
    R_KIND,
    R_PASID,
    R_PID,
    R_SOURCE,
    R_TS,
    AllocPath,
    DomainType,
    Event,
    Kind,
    ResponseCode,
    Row,
    machine_of,
)
from ..intervals import IntervalKind, Intervals, Tracked
from ..kernel_facts import Rules, rules_for
from ..machines import QUALIFIER, Machine
from ..recording.header import DeviceInfo
from ..state_records import (
    CLOSED,
    GROUP_LOW,
    GROUP_OPENED,
    IDX_MASK,
    KEY_DEV,
    NEEDS,
    P_BITS,
    REQUEST,
    STALE,
    UNATTACHED,
    PendingGroup,
    group_device_prg,
    group_key,
    group_of,
    group_pasid,
    live_of,
    open_group,
    pack_live,
)
from ..uapi import only_counted
from ..units import fmt_ns
from .checks import RULES, Anomaly, Severity
from .pages import PageColumns, settle
from .state import (
    ANSWERS_KEPT,
    UNSEEN_KEPT,
    Attachment,
    Bind,
    Freed,
    FullCopy,
    SimState,
    StateChanges,
    UapiObject,
)

# What a handler raises on an event with missing or mistyped fields (a damaged or hand-made recording)
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)
# Enum members the hottest paths compare with, as plain values: an Enum class's attribute costs about 250 ns
_SVA_DOMAIN, _FAILURE, _INVALID = str(DomainType.SVA), int(ResponseCode.FAILURE), int(ResponseCode.INVALID)
# A finding repeated on one (device, PASID) is kept FOLD_AFTER times, then folded into the last one kept (its
# `repeats` count it); a rule found RULE_KEPT times over folds its later findings too. Memory for findings is
# bounded (rules x RULE_KEPT) whatever the recording holds: a million faults are not a million objects.
FOLD_AFTER = 8
RULE_KEPT = 10_000
DEFAULT_STALE_NS = 100_000_000  # a page-request group unanswered this long is reported
_SECOND = itemgetter(1)  # an attachment's PASID, of its key
# VT-d's queued-invalidation tracepoint: a page response only it saw is one the driver sent itself
_VTD_DESCRIPTOR = "intel_iommu:qi_submit"
_STALL_RESUME = "arm_smmu_page_response"  # SMMUv3's page_response op: a hook source names it (fentry:..., probe)

# Kinds that change or check state; the rest (map, unmap, markers...) pass the simulator by.
STATEFUL_KINDS = frozenset({
    Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.SVA_BIND, Kind.SVA_UNBIND, Kind.MM_EXIT, Kind.PASID_ATTACH,
    Kind.PASID_DETACH, Kind.PASID_REPLACE, Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE, Kind.UAPI,
    Kind.LOST, Kind.GROUP_ADD,
})


def _attachment(f: dict[str, Any], dtype: str, ts: int, idx: int, global_pasid: bool) -> Attachment:
    """An attachment, with the route its page requests take: the guest (nested or VM-owned), the user's
    fault queue (iommufd), or the kernel's own I/O page-fault handler."""
    vm, queue = f.get("vm"), f.get("fault_queue")
    route = "guest" if dtype == DomainType.NESTED or vm else "user" if queue is not None else "kernel"
    return Attachment(f.get("domain"), dtype, ts, idx, f.get("guest_pasid"), vm, queue, route=route,
                      global_pasid=global_pasid)


AUTO = "auto"  # a group no fault handler takes: the kernel answers it itself
# Why a group without its request with Last waits on the device, not on whoever answers it
_PARTIAL = ("the kernel handles a group only once its request with Last comes (io-pgfault.c: the others wait on the "
            "device's partial list),")
_ANSWERERS = {"kernel": "the kernel", "user": "user space", "guest": "the guest"}  # a response's `by`


def _route(att: Attachment | None) -> str:
    """Who answers a page request that arrives through `att`: the SVA handler (kernel), user space, a guest, or,
    for a domain without a fault handler (a kernel paging domain, none at all), the kernel's own Invalid Request."""
    if att is None or (att.route == "kernel" and att.domain_type != _SVA_DOMAIN):
        return AUTO
    return att.route


def _shared(text: str) -> str:
    """One copy of a name many records hold (a path, an owner): each decoded row brings its own."""
    return sys.intern(text) if text.__class__ is str else text


_T = TypeVar("_T")


def _of_machine(by_machine: Sequence[_T], machine: int) -> _T:
    """A merged recording's per-machine setting of machine `machine`; the first's for a number past the table
    (a crafted row's)."""
    return by_machine[machine] if machine < len(by_machine) else by_machine[0]


def _group_words(g: PendingGroup) -> str:
    return f"PRG {g.prg} on {_where(g.device, g.pasid)} ({g.requests} request{'s' if g.requests != 1 else ''})"


def _where(device: str | None, pasid: int | None) -> str:
    if device is None:
        return f"PASID {pasid}"
    return f"{device} PASID {pasid}" if pasid is not None else device


class Simulator:
    """Consumes events, holds the state at the latest one, and records anomalies as it goes."""

    def __init__(self, devices: Iterable[DeviceInfo] = (), *, kernel: str | None = None,
                 stale_ns: int = DEFAULT_STALE_NS, policy: Rules | None = None,
                 unobserved: str | None = None, midstream: bool = False, keep_intervals: bool = True,
                 machines: Sequence[Machine] = (), unobserved_on: Sequence[str | None] = (),
                 midstream_on: Sequence[bool] = ()) -> None:
        self.policy = policy or rules_for(kernel)
        # A merged recording's machines, by number: each follows its own kernel's rules (the first, `kernel`'s)
        self._policies = [self.policy, *(rules_for(m.kernel) for m in machines[1:])]
        self._prefixes = [f"{m.name}{QUALIFIER}" for m in machines]  # of their devices' names
        self.stale_ns = stale_ns
        # The first machine's state, which holds the others' (a merged recording's guests), and the state of the
        # machine whose event is being applied: the handlers read `state`, so each machine's stays its own.
        self.root = self.state = SimState()
        self.machines = len(self._policies)
        # Every PASID lifetime, attachment, bind and page-request group as the model opens and closes it (see
        # explorer/intervals.py); None for a replayer, whose intervals are known already.
        self.intervals = Intervals(self.state.atoms) if keep_intervals else None
        if self.intervals is not None:
            self._track(self.state)
        # A capture starts with the kernel already running: PASIDs, binds and groups from before its first event
        # are unknown, so a finding about one this stream never saw is uncertain (a scenario starts empty).
        self.midstream = midstream
        self._midstream = [midstream, *midstream_on[1:]]  # by machine, as `_unobserved` below
        # Why the PASID lifecycle cannot be seen, if it cannot: then state is uncertain before the first event
        # (time 0 until `begin` learns the first event's time), exactly as after a loss. A merged recording's
        # machines each have their own (`unobserved_on`, by number; a machine it leaves out has the first's):
        # `unobserved` is the machine's whose event is being applied, the first's between events.
        self.unobserved = unobserved
        self._unobserved = [unobserved, *unobserved_on[1:]]
        if unobserved is not None:
            self.state.uncertain_since = 0
        self._widths: dict[str, int | None] = {}  # every machine's devices' widths
        self._no_pri: set[str] = set()  # devices the table says have no Page Request Interface (stall devices)
        for d in devices:
            self.add_device(d)
        self.anomalies: list[Anomaly] = []
        # Folding: findings kept per (rule, device, PASID) and per rule, the last of each (see FOLD_AFTER)
        self._kept: dict[tuple[Any, ...], tuple[int, Anomaly]] = {}  # (rule, device, PASID[, machine])
        self._per_rule: dict[str, int] = {}
        self._last_of_rule: dict[str, Anomaly] = {}
        # The finding each group still open past the threshold was reported by, by (machine, group key): revised
        # when its answer comes, so that it reads as it would had the answer come before the aging (see _late)
        self._unanswered: dict[tuple[int, int], Anomaly] = {}
        self.revisions = 0  # findings revised so far: a view that drew one draws it again when this moves
        self.report = True  # off while replaying from a checkpoint: those anomalies are known already
        # Keyed by plain strs: a row's kind (an exact str) is then looked up on the dict's fast path
        self._handlers: dict[str, Callable[[Row, int], None]] = {str(k): h for k, h in {
            Kind.PASID_ALLOC: self._alloc, Kind.PASID_FREE: self._free, Kind.SVA_BIND: self._bind,
            Kind.SVA_UNBIND: self._unbind, Kind.MM_EXIT: self._mm_exit, Kind.PASID_ATTACH: self._attach,
            Kind.PASID_DETACH: self._detach, Kind.PASID_REPLACE: self._replace,
            Kind.PAGE_REQUEST: self._page_request, Kind.PAGE_RESPONSE: self._page_response,
            Kind.UAPI: self._uapi, Kind.LOST: self._lost,
            Kind.GROUP_ADD: self._group_add,
        }.items()}

    def add_device(self, d: DeviceInfo) -> None:
        """A device of the recording's table (unless known already): the first machine's state holds its own."""
        self._widths.setdefault(d.name, d.pasid_width)
        if d.pri is False:
            self._no_pri.add(d.name)
        if not any(d.name.startswith(p) for p in self._prefixes[1:]):  # (another machine's: its own state's)
            self.state.know_device(d.name, d.pasid_width, d.extra, keep=True)

    # -- feeding ----------------------------------------------------------------------------------------------
    def apply(self, event: Event, idx: int | None = None) -> None:
        self.apply_row(event.to_row(), self.state.index + 1 if idx is None else idx)

    def apply_all(self, events: Iterable[Event]) -> Simulator:
        for i, ev in enumerate(events):
            self.apply(ev, i)
        return self

    def apply_row(self, row: Row, idx: int) -> None:
        """Apply one recording row (see `Event.to_row`) that is event number `idx` of its stream."""
        ts = row[R_TS]
        st = self._on(machine_of(row), ts) if self.machines > 1 else self.state
        if st.index < 0:
            self.begin(ts)
        st.time_ns = ts
        st.index = idx
        if st is not self.root:  # the first machine's state keeps the whole stream's place too
            self.root.time_ns, self.root.index = ts, idx
        handler = self._handlers.get(row[R_KIND])
        if handler is not None:
            try:
                handler(row, idx)
            except MALFORMED as e:
                self._malformed(row, idx, e)
        self._age_groups(ts)
        if st is not self.root:  # between events, `state` is the first machine's, as without machines
            self._back_to_first()

    def apply_rows(self, rows: list[Row | None], positions: Iterable[int], base: int,
                   pages: PageColumns | None = None) -> None:
        """The indexer's hot loop: apply `rows[j]` as event `base + j` for each j in `positions`. Given `pages`
        (a packed chunk's stateful rows as columns, these positions' entries), plain page-request groups are
        settled at once and only the other rows are decoded into `rows` and handled (explorer/simulator/pages.py).

        Groups age once per batch rather than per event: a group answered late is caught by its response, one
        still open by the aging at the batch's end, so findings are the same either way."""
        if self.machines > 1:
            self._apply_rows_of_machines(rows, positions, base)
            return
        st = self.state
        if st.index < 0 and rows and rows[0] is not None:  # (an indexer passing only some rows calls begin)
            self.begin(rows[0][R_TS])
        if pages is not None:
            positions = list(positions)
            if positions:
                settle(self, rows, positions, base, pages, _route, self._run)
                st.time_ns, st.index = int(pages.ts[-1]), base + positions[-1]
                self._age_groups(st.time_ns)
            return
        handler_of = self._handlers.get
        j = -1
        for j in positions:
            row = rows[j]
            handler = handler_of(row[R_KIND])
            if handler is not None:
                st.time_ns = row[R_TS]  # what an interval that this row closes cites
                st.index = i = base + j
                try:
                    handler(row, i)
                except MALFORMED as e:  # free when nothing is raised: the hot loop pays nothing for it
                    self._malformed(row, i, e)
        if j >= 0:
            st.time_ns = rows[j][R_TS]
            st.index = base + j
            self._age_groups(st.time_ns)

    def _run(self, row: Row, i: int) -> None:
        """Apply one row as event `i` in a batch (`apply_rows`), its groups aged at the batch's end."""
        handler = self._handlers.get(row[R_KIND])
        if handler is not None:
            st = self.state
            st.time_ns = row[R_TS]
            st.index = i
            try:
                handler(row, i)
            except MALFORMED as e:
                self._malformed(row, i, e)

    def _apply_rows_of_machines(self, rows: list[Row], positions: Iterable[int], base: int) -> None:
        """`apply_rows` for a merged recording: each row goes to its machine's state."""
        for j in positions:
            self.apply_row(rows[j], base + j)

    def _on(self, machine: int, ts: int) -> SimState:
        """Make machine `machine`'s state the one the handlers change (made on its first event, at `ts`)."""
        root = self.root
        self.unobserved, self.midstream = self.unobserved_of(machine), _of_machine(self._midstream, machine)
        st = root.of_machine(machine)
        if st is None:
            mine = self._prefixes[machine] if machine < len(self._prefixes) else None
            widths = {d: w for d, w in self._widths.items() if mine and d.startswith(mine)}
            st = root.others[machine] = SimState(devices=widths, machine=machine, atoms=root.atoms,
                                                 uncertain_since=ts if self.unobserved else None, started_ns=ts)
            st.index = root.index
            if self.intervals is not None:
                self._track(st)
        self.state = st
        self.policy = _of_machine(self._policies, machine)
        return st

    def policy_of(self, machine: int) -> Rules:
        """The kernel rules machine `machine` (by number) is judged by: a merged recording's guest, its own kernel's."""
        return _of_machine(self._policies, machine)

    def unobserved_of(self, machine: int) -> str | None:
        """Why machine `machine` (by number) cannot show the PASID lifecycle; None when it can."""
        return _of_machine(self._unobserved, machine)

    def _back_to_first(self) -> None:
        """Between events, the first machine's state, rules and coverage are the simulator's, as without machines."""
        self.state, self.policy, self.unobserved = self.root, self._policies[0], self._unobserved[0]
        self.midstream = self._midstream[0]

    def advance(self, ts: int) -> None:
        """Let time pass without an event (end of a recording, a live clock tick): groups age, on every machine."""
        for st in (self.root, *self.root.others.values()):
            self.state = st
            if ts > st.time_ns:
                st.time_ns = ts
            self._age_groups(ts)
        self._back_to_first()

    def begin(self, ts: int) -> None:
        """The stream's first event is at `ts`: a capture began there, and uncertainty from the start starts there,
        not at time 0."""
        st = self.state
        if st.index >= 0:
            return
        st.started_ns = ts
        if self.unobserved is not None and st.uncertain_since == 0:
            st.uncertain_since = ts

    def snapshot(self) -> FullCopy:
        """A full copy of the state: a checkpoint that needs no other to restore."""
        return self.root.freeze()

    def restore(self, state: FullCopy, changes: Iterable[StateChanges] = ()) -> None:
        """Continue from a checkpoint (a replayer's seek): a full copy, then the checkpoints after it as changes.
        Its maps note and tell nothing, so nothing is reported. A simulator that keeps intervals never goes back: its
        store would no longer follow its state."""
        if self.intervals is not None:
            raise ValueError("a simulator keeping intervals cannot restore a checkpoint (use a replayer)")
        self.root = self.state = state.thaw()
        for c in changes:
            self.state.apply(c)

    def _track(self, st: SimState) -> None:
        """Hold the state's interval maps as `Tracked` dicts that tell `self.intervals` what opens and closes."""
        assert self.intervals is not None
        st.pasid_records.track(self.intervals, st)
        for name, kind in (("attachments", IntervalKind.ATTACHMENT), ("binds", IntervalKind.BIND),
                           ("group_records", IntervalKind.GROUP)):
            setattr(st, name, Tracked(self.intervals, kind, st, getattr(st, name)))

    # -- reporting --------------------------------------------------------------------------------------------
    def _flag(self, rule: str, ts: int, device: str | None, pasid: int | None, text: str,
              evidence: Iterable[int] = (), severity: Severity | None = None) -> Anomaly | None:
        """Report a finding; the new one, or None when it was folded into an earlier one (or nothing reports)."""
        if not self.report:
            return None
        machine = self.state.machine
        key = (rule, device, pasid) if not machine else (rule, device, pasid, machine)
        kept = self._kept.get(key)
        if kept is not None and kept[0] >= FOLD_AFTER or kept is None and self._per_rule.get(rule, 0) >= RULE_KEPT:
            (kept[1] if kept is not None else self._last_of_rule[rule]).repeats.add(ts)
            return None
        sev = severity or RULES[rule].severity
        found = Anomaly(rule, ts, device, pasid, text, tuple(i for i in evidence if i >= 0), sev, machine=machine)
        self.anomalies.append(found)
        self._kept[key] = (1 if kept is None else kept[0] + 1, found)
        self._per_rule[rule] = self._per_rule.get(rule, 0) + 1
        self._last_of_rule[rule] = found
        return found

    def _doubt(self, severity: Severity | None = None) -> Severity | None:
        """Findings a lost (or never observable) event could explain are uncertain once state is uncertain."""
        return Severity.UNCERTAIN if self.state.uncertain_since is not None else severity

    def _before_start(self, pasid: int | None) -> Severity | None:
        """A finding about a PASID this stream never saw, which a capture's past could explain: uncertain."""
        return Severity.UNCERTAIN if self._from_before(pasid) else self._doubt()

    def _from_before(self, pasid: int | None) -> bool:
        """Could `pasid` (None: one the finding cannot name) have been allocated before this capture began? Yes
        unless the stream saw its allocation or its free: a PASID it never saw, or one whose allocation the model
        only inferred from a bind or attach (the process may have bound another device before the capture)."""
        st = self.state
        if not self.midstream:
            return False
        if pasid is None:
            return True
        if pasid in st.pasid_records:
            return not st.pasids[pasid].certain
        return pasid not in st.freed

    def _check_live(self, ts: int, device: str | None, pasid: int | None, what: str, idx: int) -> bool:
        """Is `pasid` allocated? Flags use-after-free / never-allocated / reserved / beyond width if not."""
        st = self.state
        if pasid is None:
            return True
        if pasid == IOMMU_NO_PASID:
            self._flag("reserved_pasid", ts, device, pasid,
                       f"{what} on {_where(device, pasid)}: PASID 0 means 'no PASID' and is never handed out.",
                       [idx])
            return False
        if device is not None and pasid >= st.max_pasids(device):
            self._flag("beyond_width", ts, device, pasid,
                       f"{what} on {_where(device, pasid)}, but {device} carries only "
                       f"{st.max_pasids(device)} PASIDs (width {st.devices.get(device)} bits).", [idx])
        if pasid in st.pasid_records:
            return True
        freed = st.freed.get(pasid)
        if freed is not None:
            self._flag("use_after_free", ts, device, pasid,
                       f"{what} on {_where(device, pasid)} {fmt_ns(ts - freed.ts_ns)} after PASID {pasid} was "
                       f"freed by {freed.owner}.", [freed.idx, idx], self._doubt())
        else:
            self._flag("use_unallocated", ts, device, pasid,
                       f"{what} on {_where(device, pasid)}, which no allocation in this recording handed out.",
                       [idx], self._doubt())
        return False

    # -- allocation -------------------------------------------------------------------------------------------
    def _take(self, pasid: int, path: str, owner: str, mm: int | None, vm: str | None, ts: int, idx: int,
              certain: bool = True) -> None:
        st = self.state
        st.pasid_records[pasid] = pack_live(st.atoms, _shared(path), _shared(owner), mm, vm, ts, idx, certain,
                                            st.machine)
        st.freed.pop(pasid, None)
        st.allocs += 1
        if mm is not None and path == AllocPath.SVA:
            st.mm_pasid[mm] = pasid
            st.mm_owner[mm] = owner
        if len(st.pasid_records) > st.high_water:
            st.high_water = len(st.pasid_records)
        if pasid > st.high_water_pasid:
            st.high_water_pasid = pasid

    def _release(self, pasid: int, ts: int, idx: int, owner: str, inferred: bool = False) -> None:
        st = self.state
        live = live_of(st.atoms, pasid, st.pasid_records.pop(pasid))
        st.freed[pasid] = Freed(ts, idx, _shared(owner), inferred)
        st.frees += 1
        if live.mm is not None and st.mm_pasid.get(live.mm) == pasid:
            del st.mm_pasid[live.mm]
            if not st.holds_binds(live.mm):
                # The mm is gone from the model: keep checkpoints small on hosts with many short-lived processes.
                st.mm_owner.pop(live.mm, None)
                st.exited.pop(live.mm, None)
        attachments = st.attachments
        # (its pairs found in C: a free scans every attachment of the host)
        for dev, p in compress(attachments, map(eq, map(_SECOND, attachments), repeat(pasid))) if not inferred else ():
            att = attachments[dev, p]
            # Attachments older than this allocation were reported when the PASID was first freed under them.
            if att.global_pasid and att.since_ns >= live.since_ns:
                self._flag("free_while_attached", ts, dev, pasid,
                           f"PASID {pasid} was freed while {dev} still had it attached to a {att.domain_type} "
                           f"domain (attached {fmt_ns(ts - att.since_ns)} earlier).", [att.idx, idx],
                           self._doubt())

    def _alloc(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        path = f.get("path", "?")
        owner = f.get("owner") or f"pid {row[R_PID]}"
        err = f.get("error", 0)
        if err or pasid is None:
            limit = st.max_pasids(dev)
            # A device with no PASID past 0 (width 0; max_pasids 0 without the capability) has nothing to exhaust:
            # iommu_alloc_global_pasid() refuses it at once ('max_pasids == 0 means that the device does not
            # support PASID', iommu.c 6.6+), or finds its range 1..0 empty, and the bind fails -ENOSPC.
            if (err == -ENOSPC or pasid is None) and limit > 1:
                # (an allocation that names no device, ioasid_alloc()'s (5.5-6.3), was given a range the probe does
                # not read: iommu_sva_bind_device() 6.2-6.3 passes the device's max_pasids)
                span = f"1..{limit - 1} for {dev}" if dev else "the range it was asked for"
                self._flag("space_exhausted", ts, dev, None,
                           f"{owner} asked for a PASID ({path} path) and the allocator had none left in {span}: "
                           f"{len(st.pasid_records)} are live.", [idx])
            return
        if pasid == IOMMU_NO_PASID:
            self._check_live(ts, dev, pasid, "allocation", idx)
            return
        if dev is not None and pasid >= st.max_pasids(dev):
            self._flag("beyond_width", ts, dev, pasid,
                       f"PASID {pasid} was allocated for {dev}, whose width allows only 1.."
                       f"{st.max_pasids(dev) - 1}.", [idx])
        mm = f.get("mm")
        if pasid in st.pasid_records:
            prev = st.pasids[pasid]
            self._flag("double_alloc", ts, dev, pasid,
                       f"PASID {pasid} was handed to {owner} while {prev.owner} still held it: a free went "
                       f"missing or the allocator handed it out twice.", [prev.idx, idx], self._doubt())
        if path == AllocPath.SVA and mm is not None and mm in st.mm_pasid and st.mm_pasid[mm] != pasid:
            held = st.pasids.get(st.mm_pasid[mm])  # (gone when another mm's allocation of it was freed)
            self._flag("second_sva_pasid", ts, dev, pasid,
                       f"{owner}'s mm already has SVA PASID {st.mm_pasid[mm]}, yet PASID {pasid} was "
                       f"allocated for it.", [held.idx if held is not None else -1, idx], self._doubt())
        self._take(pasid, path, owner, mm, f.get("vm"), ts, idx)

    def _free(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        owner = f.get("owner") or f"pid {row[R_PID]}"
        if pasid in st.pasid_records:
            if not self.policy.unbind_visible:
                for mm in [m for m, p in st.mm_pasid.items() if p == pasid]:
                    self._unseen_unbinds(mm, ts, idx)
            self._release(pasid, ts, idx, owner)
            return
        freed = st.freed.get(pasid)
        if freed is not None and freed.inferred:
            # The kernel's own free of a PASID the model already freed when its mm went away: confirmation.
            st.freed[pasid] = Freed(ts, idx, freed.owner)
            return
        if freed is not None:
            self._flag("double_free", ts, dev, pasid,
                       f"PASID {pasid} freed again by {owner}, {fmt_ns(ts - freed.ts_ns)} after "
                       f"{freed.owner} freed it.", [freed.idx, idx], self._doubt())
        else:
            self._flag("free_unallocated", ts, dev, pasid,
                       f"{owner} freed PASID {pasid}, which was never allocated in this recording.", [idx],
                       self._before_start(pasid))
        st.freed[pasid] = Freed(ts, idx, owner)

    # -- SVA: binds and the mm's one PASID -------------------------------------------------------------------
    def _bind(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        if f.get("error"):
            return
        mm = f.get("mm", row[R_PID])
        owner = st.mm_owner.get(mm) or f"pid {row[R_PID]}"
        known = st.mm_pasid.get(mm)
        if pasid is None:
            pasid = known
        if known is not None and pasid != known:
            self._flag("second_sva_pasid", ts, dev, pasid,
                       f"{owner} bound {dev} with PASID {pasid}, but its mm already has SVA PASID {known}: "
                       f"every bind of one mm must share one PASID.",
                       [st.pasids[known].idx if known in st.pasid_records else -1, idx], self._doubt())
        if pasid is None:
            return
        if pasid not in st.pasid_records:
            if not self._allocated_unseen(pasid):
                self._check_live(ts, dev, pasid, "SVA bind", idx)  # the allocation was observable, yet not seen
            # Infer the allocation the first bind makes (or one made before a capture started, or unseen: the
            # 6.4-6.5 IDA), so that the mm's later events are checked against it.
            self._take(pasid, AllocPath.SVA, owner, mm, None, ts, -1, certain=False)
        elif dev is not None and pasid >= st.max_pasids(dev):
            self._check_live(ts, dev, pasid, "SVA bind", idx)
        elif (live := st.pasids[pasid]).mm is None and (not live.certain or live.path == AllocPath.IOASID):
            # Inferred at the attach, or taken from the ioasid allocator, whose ioasid_alloc() names no mm (5.5-6.3,
            # drivers/iommu/ioasid.c): the bind names it, so that the mm's PASID goes with its free
            if live.certain:
                owner = st.mm_owner[mm] = live.owner
            st.pasid_records[pasid] = pack_live(st.atoms, *live._replace(mm=mm, owner=owner)[1:])
        elif live.mm is not None and live.mm != mm and live.certain and self.policy.allocs_visible:
            # Another mm's PASID, whose allocation was seen and whose free was not: each mm's first bind allocates
            # its own (iommu_sva_bind_device(): ioasid_alloc() 5.5-6.3, iommu_alloc_global_pasid() 6.6+)
            self._flag("double_alloc", ts, dev, pasid,
                       f"{owner} bound {dev} with PASID {pasid}, which {live.owner}'s mm still holds: its free went "
                       f"missing or the allocator handed it out twice.", [live.idx, idx], self._doubt())
        st.mm_pasid[mm] = pasid
        key = (mm, dev)
        b = st.binds.get(key)
        st.binds[key] = Bind(b.refs + 1, pasid, b.since_ns, b.idx) if b else Bind(1, pasid, ts, idx)
        if (dev, pasid) not in st.attachments:
            st.attachments[(dev, pasid)] = Attachment(f.get("handle"), DomainType.SVA, ts, idx, inferred=True,
                                                      global_pasid=True)

    def _unbind(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, f = row[R_TS], row[R_DEVICE], row[R_FIELDS]
        mm = f.get("mm", row[R_PID])
        exited = st.exited.get(mm)
        if exited is not None and ts - exited[0] >= self.stale_ns:
            self._exit_overdue(mm)  # unbound, but too late
        key = (mm, dev)
        b = st.binds.get(key)
        if b is None and key in st.unseen_unbinds:
            # An unbind the model applied already, at the exit or free that implied it (before 6.2): evidence of it
            b = st.unseen_unbinds.pop(key)
            if b.refs > 1:
                st.unseen_unbinds[key] = b._replace(refs=b.refs - 1)
            elif b.pasid is not None:
                st.implied_detach[(dev, b.pasid)] = idx  # the last one's detach, if seen, was applied with it
            return
        if b is None:
            pasid = row[R_PASID]
            self._flag("detach_unattached", ts, dev, pasid,
                       f"unbind of mm {mm} from {dev}, which holds no bind to it.", [idx],
                       self._before_start(None if mm not in st.mm_owner else pasid))
            return
        if b.refs > 1:
            st.binds[key] = b._replace(refs=b.refs - 1)
            return
        del st.binds[key]
        att = st.attachments.get((dev, b.pasid))
        if att is not None and att.domain_type == DomainType.SVA:
            # The last unbind detaches the SVA domain; the kernel's own detach event may follow.
            del st.attachments[(dev, b.pasid)]
            st.implied_detach[(dev, b.pasid)] = idx
            self._drain(dev, b.pasid, ts, idx)
        if self.policy.sva_free_at == "last_unbind" and b.pasid in st.pasid_records and not st.holds_binds(mm):
            self._release(b.pasid, ts, idx, st.mm_owner.get(mm, f"mm {mm}"), inferred=True)
        elif mm in st.exited and not st.holds_binds(mm) and b.pasid in st.pasid_records:
            # The last bind of an exited mm: the mm is dropped now and mm_pasid_drop() frees its PASID.
            self._release(b.pasid, ts, idx, st.mm_owner.get(mm, f"mm {mm}"), inferred=True)

    def _mm_exit(self, row: Row, idx: int) -> None:
        st = self.state
        ts, f = row[R_TS], row[R_FIELDS]
        mm = f.get("mm", row[R_PID])
        held = st.holds_binds(mm)
        pasid = st.mm_pasid.get(mm)
        if not held and pasid is None:
            return  # an mm the PASID machinery never saw: most processes on a host
        if held and not self.policy.unbind_visible:
            self._unseen_unbinds(mm, ts, idx)  # its files close right after: the driver unbinds then
            held = False
        st.exited[mm] = (ts, idx)
        if held:
            st.stale_queue.append((ts + self.stale_ns, mm))
            st.exit_reported.discard(mm)
        elif pasid is not None and pasid in st.pasid_records:
            self._release(pasid, ts, idx, st.mm_owner.get(mm, f"mm {mm}"), inferred=True)

    def _unseen_unbinds(self, mm: int, ts: int, idx: int) -> None:
        """Before 6.2 no probe can name an unbind's mm (struct iommu_sva has no domain; kernel_facts unbind.blind):
        an mm's exit, or the free of its PASID, tells that its binds went, and their SVA attachments with them."""
        st = self.state
        unseen = st.unseen_unbinds
        for key in [k for k in st.binds if k[0] == mm]:
            b = unseen[key] = st.binds.pop(key)
            if len(unseen) > UNSEEN_KEPT:
                del unseen[next(iter(unseen))]
            att = st.attachments.get((key[1], b.pasid))
            if att is not None and att.domain_type == DomainType.SVA:
                del st.attachments[(key[1], b.pasid)]
                self._drain(key[1], b.pasid, ts, idx)

    # -- (device, PASID) domains ------------------------------------------------------------------------------
    def _attach(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        if f.get("error") or pasid is None:
            return
        dtype = f.get("domain_type", DomainType.PAGING)
        self._check_number(ts, dev, pasid, dtype, "attach", idx)
        old = st.attachments.get((dev, pasid))
        if old is not None and not (old.inferred and old.domain_type == dtype):
            self._flag("attach_conflict", ts, dev, pasid,
                       f"{_where(dev, pasid)} was attached to a {dtype} domain while still attached to a "
                       f"{old.domain_type} domain since {fmt_ns(ts - old.since_ns)} earlier.", [old.idx, idx],
                       self._doubt())
        st.attachments[(dev, pasid)] = _attachment(f, dtype, ts, idx, self._global(pasid, dtype, f))
        st.implied_detach.pop((dev, pasid), None)

    def _global(self, pasid: int, dtype: str, f: dict[str, Any]) -> bool:
        """Is this attach of a global (allocator) PASID? An SVA domain's always is; another domain's is when the
        number is live in the allocator for a driver (iommu_alloc_global_pasid) or the ioasid allocator. An
        iommufd/VFIO PASID is chosen by user space in the device's own table and never allocated (6.15+), whatever
        a driver holds under the same number in the global allocator. There a nested domain, a VM's or one with a
        fault queue is user space's; a paging one is a driver's only when it is known to be the DMA API's
        (`dma_api`: the __IOMMU_DOMAIN_DMA_API bit, include/linux/iommu.h; iommufd's HWPTs are
        IOMMU_DOMAIN_UNMANAGED, without it), and where the bit is not known (older captures, imports) it is taken as
        user space's: a free under it is missed, not made up. An identity or blocked domain is a driver's (iommufd
        makes neither: a driver attaching its device's default domain on a passthrough host)."""
        if dtype == DomainType.SVA:
            return True
        if self.policy.user_pasids and (dtype == DomainType.NESTED or f.get("vm") or f.get("fault_queue") is not None
                                        or dtype == DomainType.PAGING and f.get("dma_api") is not True):
            return False
        live = self.state.pasids.get(pasid)
        return live is not None and live.path != AllocPath.SVA

    def _allocated_unseen(self, pasid: int) -> bool:
        """Whether an SVA bind's (or its attach's) PASID that the model does not hold was allocated where no event
        shows it: on a kernel whose SVA allocator no hook sees (5.2-5.4 the driver's IDR, 6.4-6.5 the IDA static in
        iommu-sva.c: kernel_facts alloc.driver, alloc.sva-ida), whose allocator hands a freed number out again; else
        before a capture began or through probes it could not attach, unless its free was seen."""
        return not self.policy.allocs_visible or pasid not in self.state.freed and (
            self.midstream or self.unobserved is not None)

    def _check_number(self, ts: int, dev: str | None, pasid: int, dtype: str, what: str, idx: int) -> None:
        """What iommu_attach_device_pasid() itself checks (0 and the width), plus, for an SVA domain, that its
        PASID is the mm's allocated one. Any other number may be user space's choice: not the allocator's."""
        st = self.state
        if dtype == DomainType.SVA and pasid not in st.pasid_records and self._allocated_unseen(pasid):
            # The attach inside a bind whose allocation came before the capture, or unseen (6.4-6.5's IDA)
            self._take(pasid, AllocPath.SVA, "unknown", None, None, ts, -1, certain=False)
        elif dtype == DomainType.SVA or pasid == IOMMU_NO_PASID:
            self._check_live(ts, dev, pasid, what, idx)
        elif dev is not None and pasid >= self.state.max_pasids(dev):
            self._flag("beyond_width", ts, dev, pasid,
                       f"{what} on {_where(dev, pasid)}, but {dev} carries only {self.state.max_pasids(dev)} PASIDs "
                       f"(width {self.state.devices.get(dev)} bits).", [idx])

    def _detach(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid = row[R_TS], row[R_DEVICE], row[R_PASID]
        self._drain(dev, pasid, ts, idx)
        if st.attachments.pop((dev, pasid), None) is None:
            if st.implied_detach.pop((dev, pasid), None) is not None:
                return  # the detach inside an SVA unbind, which the model already applied
            self._flag("detach_unattached", ts, dev, pasid,
                       f"detach of {_where(dev, pasid)}, which had no domain attached.", [idx],
                       self._before_start(None))

    def _drain(self, dev: str, pasid: int | None, ts: int, idx: int) -> None:
        """A detach (or replace, or last unbind) of (dev, pasid) drains its pending groups: the kernel answers them
        itself (iommufd_auto_response_faults() INVALID; VT-d intel_iommu_drain_pasid_prq()), so they are closed."""
        st = self.state
        device = st.atoms.codes.get(dev)
        groups = st.group_records
        for key in [k for k, g in groups.items() if k >> KEY_DEV == device and group_pasid(k, g) == pasid]:
            g = groups.pop(key)
            st.drained[key] = (ts, idx)
            start = self._awaited_from(key, g)
            if ts - start >= self.stale_ns:
                self._late(key, g, start, ts, idx, "kernel")
        if len(st.drained) > ANSWERS_KEPT:
            st.drained.clear()

    def _replace(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        if f.get("error") or pasid is None:
            return
        dtype = f.get("domain_type", DomainType.PAGING)
        self._check_number(ts, dev, pasid, dtype, "replace", idx)
        self._drain(dev, pasid, ts, idx)
        st.attachments[(dev, pasid)] = _attachment(f, dtype, ts, idx, self._global(pasid, dtype, f))

    # -- page requests, responses and faults -----------------------------------------------------------------
    def _page_request(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        prg = f["prg"]
        needs = f.get("needs_pasid", pasid is not None)
        # A group is (device, PRG index), and its PASID too only when the function requires the PASID in the
        # response (PCIe "PRG Response PASID Required", kernel NEEDS_PASID); 6.9+ gathers partials by index alone.
        key = group_key(st.atoms, dev, prg, pasid if needs else None)
        groups = st.group_records
        g = groups.get(key)
        if g is not None:  # a later request of an open group (the hot path: kept short)
            if not g & CLOSED and f.get("last", True):
                g = self._completed(key, g, ts, idx)
            groups[key] = g + REQUEST
            if self.intervals is not None:
                self.intervals.joined(idx, (g >> GROUP_LOW & IDX_MASK) - 1)
            return
        if dev in st.pri_disabled:
            when, failed = st.pri_disabled[dev]
            self._flag("request_after_failure", ts, dev, pasid,
                       f"{dev} sent page request PRG {prg} {fmt_ns(ts - when)} after it was answered Response "
                       f"Failure, which disables its Page Request Interface until PRI is enabled again.",
                       [failed, idx], self._doubt())
        # A PASID with no domain of its own here is no finding yet: with a user-managed PASID table (SMMUv3
        # nesting, the iommufd mock) the core sends it to the RID's nested domain (find_fault_handler(),
        # io-pgfault.c 6.11+). Who answers tells: the kernel's own Invalid Request means nobody handled it.
        att = st.attachments.get((dev, pasid)) if pasid is not None else None
        route = st.rid_routes.get(dev, AUTO) if att is None else _route(att)
        groups[key] = open_group(ts, idx, f.get("last", True), route, needs, pasid is not None and att is None,
                                 None if needs else pasid)
        if ts < st.fresh_from:
            st.fresh_from = ts

    def _page_response(self, row: Row, idx: int) -> None:
        st = self.state
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        prg = f["prg"]
        key = group_key(st.atoms, dev, prg, pasid)
        found, g = key, st.group_records.pop(key, None)
        if g is None:
            found, g = self._match_without_pasid(dev, prg, pasid)
        if g is not None:
            code = f.get("code", 0)
            if code == _FAILURE and self._disables_pri(row):
                st.pri_disabled[dev] = (ts, idx)
            if g & UNATTACHED:
                self._answered_unattached(group_of(st.atoms, found, g), row, idx, code)
            answered = st.answered
            answered[key] = (ts, idx)
            if len(answered) > ANSWERS_KEPT:
                st.answered_before, st.answered = answered, {}
            start = self._awaited_from(found, g)
            if ts - start >= self.stale_ns:
                self._late(found, g, start, ts, idx, f.get("by"))
            return
        if st.drained.pop(key, None) is not None or st.drained.pop(key >> P_BITS << P_BITS, None) is not None:
            return  # the kernel's own answer to a group its detach drained
        raw = f.get("code", 0)
        code = ResponseCode(raw).name.lower() if raw in (0, 1, 2) else raw
        if row[R_SOURCE] == _VTD_DESCRIPTOR and raw == _INVALID and self.policy.requests_visible:
            # Only VT-d's descriptor showed an Invalid Request: no response of the core's or of the driver's op came
            # first. handle_bad_prq_event() answers nothing else; any other code is an answer the hooks missed
            # (a kprobe attaches after the tracepoints as a capture starts): a response with no group, as below
            self._flag("refused_request", ts, dev, pasid,
                       f"{dev} sent page request PRG {prg}{f' on PASID {pasid}' if pasid is not None else ''}, which "
                       f"the VT-d driver refused without reporting it, answering {code} itself: no hook sees such a "
                       f"request, only this answer (handle_bad_prq_event(): an address that is not canonical, a "
                       f"privileged or execute-with-read request, a requester it does not know, or, up to 6.8, one "
                       f"iommu_report_device_fault() could not report, as with no fault handler).", [idx],
                       self._stray(ts, pasid)[0])
            return
        prev = st.answered.get(key) or st.answered_before.get(key)
        if prev is None and self.midstream and not self.policy.requests_visible:
            st.answered[key] = (ts, idx)  # up to 5.13 VT-d answered requests no hook saw: the answer implies one
            return
        if prev is not None:
            self._flag("duplicate_response", ts, dev, pasid,
                       f"{code} response for PRG {prg} on {_where(dev, pasid)}, already answered "
                       f"{fmt_ns(ts - prev[0])} earlier.", [prev[1], idx], self._doubt())
        else:
            severity, why = self._stray(ts, pasid)
            self._flag("response_without_group", ts, dev, pasid,
                       f"{code} response for PRG {prg} on {_where(dev, pasid)}, but no such group was "
                       f"outstanding{why}.", [idx], severity)

    def _stray(self, ts: int, pasid: int | None) -> tuple[Severity | None, str]:
        """How sure a response at `ts` with no group is a stray, and the words that say why not. On a capture, one on
        a PASID allocated before it began (`_from_before`) may answer a group requested before then: uncertain while
        that group would have waited less than the threshold. Answered later, it waited past it, which is a finding
        too (a stalled device, `unanswered_group`'s WARNING): the stray response is then reported no higher."""
        if not self._from_before(pasid):
            return self._doubt(), ""
        since = ts - self.state.started_ns
        if since < self.stale_ns:
            began = f"{fmt_ns(since)} before it" if since else "with it"
            return Severity.UNCERTAIN, f" in this capture, which began {began}: its request may have come before that"
        return self._doubt(Severity.WARNING), (
            f" (had its request come before the capture began, {fmt_ns(since)} earlier, the device would have waited "
            f"past the {fmt_ns(self.stale_ns)} threshold for this answer: a stalled device, if not a stray answer)")

    def _disables_pri(self, row: Row) -> bool:
        """Does this Response Failure disable its function's Page Request Interface (PCIe 10.4.2.1)? Not on a
        device the recording's device table says has none, nor when SMMUv3 sent it: its page_response op resumes one
        stalled access (arm_smmu_page_response(): INVALID and FAILURE alike are CMD_RESUME with ABORT, 6.9+;
        5.13-6.8 unprobed), and SMMUv3 hands the core no PRI request (arm_smmu_handle_ppr() denies each one)."""
        if row[R_DEVICE] in self._no_pri:
            return False
        seen = row[R_FIELDS].get("seen_by")
        return not any(isinstance(s, str) and s.endswith(_STALL_RESUME)
                       for s in (row[R_SOURCE], *(seen if isinstance(seen, list) else ())))

    def _answered_unattached(self, g: PendingGroup, row: Row, idx: int, code: Any) -> None:
        """A response to a group whose PASID had no domain attached: who answered tells where such requests go."""
        ts, dev, pasid, f = row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS]
        if f.get("by") in ("user", "guest"):
            self.state.rid_routes[dev] = f["by"]
        if g.route == AUTO and code != ResponseCode.SUCCESS and f.get("by", "kernel") == "kernel":
            said = ResponseCode(code).name.lower() if code in (0, 1, 2) else f"code {code}"
            self._flag("fault_unattached", ts, dev, pasid,
                       f"page request PRG {f['prg']} from {dev} on PASID {pasid}, which had no domain attached there "
                       f"(nor a nested domain taking every PASID): the kernel answered it {said} itself.",
                       [g.first_idx, idx], self._before_start(pasid))

    def _match_without_pasid(self, dev: str, prg: int, pasid: int | None) -> tuple[int, int | None]:
        """The kernel's rule (iommu_page_response): a response matches a group on its PRG index alone unless the
        group's requests said the response must carry their PASID (IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID).
        The matched group's key and packed record, popped (None: none matches)."""
        st = self.state
        above = group_device_prg(st.atoms, dev, prg)
        groups = st.group_records
        for key, g in groups.items():
            if key >> P_BITS == above:
                p = group_pasid(key, g)
                if p is None or not g & NEEDS or p == pasid:
                    return key, groups.pop(key)
        return -1, None

    def _age_groups(self, now: int) -> None:
        """Report groups still open, and exits still holding binds, past the threshold at `now`.

        Outstanding groups are few (most are answered within microseconds), so scanning them beats keeping a
        queue entry for each of the many that never go stale."""
        st = self.state
        due = now - self.stale_ns
        if st.fresh_from <= due:  # some group may be due: report those that are, and find the next bound
            fresh_from = 1 << 63
            groups, lasts = st.group_records, st.last_requests or {}
            for key, g in groups.items():
                if g & STALE:
                    continue
                start = lasts.get(key, g >> GROUP_OPENED)
                if start <= due:
                    group = group_of(st.atoms, key, g)
                    found = self._stale_group(group, start, [group.first_idx])
                    if found is not None:
                        self._unanswered[(st.machine, key)] = found
                    groups[key] = g | STALE
                elif start < fresh_from:
                    fresh_from = start
            st.fresh_from = fresh_from
        q = st.stale_queue
        while q and q[0][0] <= now:
            self._exit_overdue(q.popleft()[1])

    def _stale_group(self, g: PendingGroup, start: int, evidence: list[int]) -> Anomaly | None:
        """A group still open `stale_ns` after `start` (its request with Last; its first while it has none): its
        finding (None when folded or not reporting)."""
        words, due = _group_words(g), start + self.stale_ns
        if not g.closed:
            return self._flag("unanswered_group", due, g.device, g.pasid,
                              f"{words} has had no request with Last for {fmt_ns(self.stale_ns)}: {_PARTIAL} so the "
                              f"device has not finished it, or the capture lost that request.", evidence,
                              Severity.UNCERTAIN)
        if g.route == AUTO:
            # No handler takes it, so the kernel answers Invalid Request itself (iopf_error_response() 6.11+, the
            # driver's bad-request path before), and only VT-d's qi_submit shows that answer: maybe unseen.
            return self._flag("unanswered_group", due, g.device, g.pasid,
                       f"{words} has no fault handler of its own (unless a nested domain at the device's RID takes "
                       f"it), so the kernel answers it itself; no answer was seen in {fmt_ns(self.stale_ns)} after "
                       f"its request with Last, and off VT-d no hook shows that answer.", evidence, Severity.UNCERTAIN)
        return self._flag("unanswered_group", due, g.device, g.pasid,
                   f"{words} waited more than {fmt_ns(self.stale_ns)} after its request with Last for the {g.route}'s "
                   f"response; the device was stalled on it.", evidence, self._doubt(None))

    def _awaited_from(self, key: int, g: int) -> int:
        """When group `key` (record `g`), now closing, began to wait for its answer: its request with Last (its first
        while it has none); that request's time is forgotten."""
        st = self.state
        lasts = st.last_requests
        if not lasts or key not in lasts:
            return g >> GROUP_OPENED
        lasts = st.own_last_requests()
        start = lasts.pop(key)
        if not lasts:
            st.last_requests = None  # (as a batch that settled the group leaves it)
        return start

    def _completed(self, key: int, g: int, ts: int, idx: int) -> int:
        """Group `key` (record `g`) got its request with Last at `ts` (event `idx`), after its first: the kernel
        handles it only now, so its answer is awaited from now. A wait past the threshold for that request was the
        device's, and is reported so (the aging's report of it revised to say it). The record, closed."""
        st = self.state
        st.own_last_requests()[key] = ts
        first = g >> GROUP_OPENED
        if ts - first < self.stale_ns:
            return g | CLOSED
        group = group_of(st.atoms, key, g + REQUEST)
        text = (f"{_group_words(group)} sent its request with Last {fmt_ns(ts - first)} after its first: {_PARTIAL} "
                f"so until then the wait was the device's.")
        self._report_or_revise(key, g, first + self.stale_ns, group, text, [group.first_idx, idx], Severity.UNCERTAIN)
        if ts < st.fresh_from:  # its answer is awaited afresh: aged again from here
            st.fresh_from = ts
        return (g & ~STALE) | CLOSED

    def _report_or_revise(self, key: int, g: int, ts: int, group: PendingGroup, text: str, evidence: list[int],
                          severity: Severity | None) -> None:
        """Report what group `key` (record `g`) waited for, or, if the aging reported it still waiting, revise that
        finding to say it, so that the finding is the same however the events were batched."""
        if not g & STALE:
            self._flag("unanswered_group", ts, group.device, group.pasid, text, evidence, severity)
            return
        found = self._unanswered.pop((self.state.machine, key), None)
        if found is not None and self.report:
            found.revise(text, evidence, severity or RULES["unanswered_group"].severity)
            self.revisions += 1

    def _late(self, key: int, g: int, start: int, ts: int, idx: int, by: str | None) -> None:
        """Group `key` (record `g`, awaiting its answer since `start`) answered at `ts` (event `idx`, by `by`; a
        detach's drain is the kernel's answer) past the threshold. If the aging reported it still open (a batch ended
        between its request and this answer: where chunks and live ticks fall), that finding is revised to what it
        would have said had the answer come first."""
        group = group_of(self.state.atoms, key, g)
        who = _ANSWERERS.get(by, "a response")  # (the schema let only text or nothing through)
        if not group.closed:
            text = (f"{_group_words(group)} had no request with Last when {who} closed it, {fmt_ns(ts - start)} after "
                    f"its first request: {_PARTIAL} so the wait was the device's, or the capture lost that request.")
            severity: Severity | None = Severity.UNCERTAIN
        else:
            expected = (" It had no fault handler of its own here (unless a nested domain at the device's RID took "
                        "it), so the kernel was expected to answer it." if group.route == AUTO else "")
            text = (f"{_group_words(group)} was answered by {who} {fmt_ns(ts - start)} after its request with Last, "
                    f"past the {fmt_ns(self.stale_ns)} threshold; the device was stalled on it meanwhile.{expected}")
            severity = Severity.UNCERTAIN if group.route == AUTO else self._doubt(None)
        self._report_or_revise(key, g, start + self.stale_ns, group, text, [group.first_idx, idx], severity)

    def _exit_overdue(self, mm: int) -> None:
        """An exited mm whose binds outlived the threshold: reported once, by aging or by the late unbind."""
        st = self.state
        held = st.binds_of(mm)
        exit_ts, exit_idx = st.exited.get(mm, (None, -1))
        if not held or exit_ts is None or mm in st.exit_reported:
            return
        st.exit_reported.add(mm)
        owner = st.mm_owner.get(mm, f"mm {mm}")
        self._flag("mm_exit_with_binds", exit_ts + self.stale_ns, None, st.mm_pasid.get(mm),
                   f"{owner} exited, yet {', '.join(sorted(held))} still held "
                   f"{sum(b.refs for b in held.values())} bind(s) on its mm {fmt_ns(self.stale_ns)} later.",
                   [exit_idx] + [b.idx for b in held.values()], self._doubt(None))

    # -- the user interface (iommufd and VFIO) ---------------------------------------------------------------
    def _uapi(self, row: Row, idx: int) -> None:
        st = self.state
        f = row[R_FIELDS]
        name, ret, pid = f.get("name", "?"), f.get("ret"), row[R_PID]
        ckey = (pid, name, ret if ret is not None else 0)
        st.uapi_calls[ckey] = st.uapi_calls.get(ckey, 0) + 1
        if only_counted(name, ret):
            return
        args = f.get("args") or {}
        if name == "IOMMU_DESTROY" and "id" in args:
            st.uapi_objects.pop((pid, args["id"]), None)
            return
        for k, v in args.items():
            if k.startswith("out_") and k.endswith("_id") and isinstance(v, int):
                what = name.removeprefix("IOMMU_").removesuffix("_ALLOC").lower()
                detail = ", ".join(f"{a}={b}" for a, b in args.items() if not a.startswith(("size", "out_")))
                st.uapi_objects[(pid, v)] = UapiObject(what, pid, row[R_TS], idx, detail)

    # -- capture health --------------------------------------------------------------------------------------
    def _lost(self, row: Row, idx: int) -> None:
        st = self.state
        count, why = row[R_FIELDS].get("count", 0), row[R_FIELDS].get("why")
        st.lost += count
        first = self._uncertain_from(row[R_TS])
        what = f"{count} event(s)" if count else "events of unknown number"  # (0: a damaged file's skipped bytes)
        self._flag("events_lost", row[R_TS], None, None,
                   f"{what} lost{f' on CPU {row[R_CPU]}' if row[R_CPU] is not None else ''}"
                   f"{f' ({why})' if why else ' during capture'}"
                   f"{'; state is uncertain from here' if first else ''}"
                   f"{f' ({st.lost} lost so far)' if st.lost else ''}.", [idx])

    def _uncertain_from(self, ts: int) -> bool:
        """State can no longer be trusted from `ts` on; True when this is the first such moment."""
        first = self.state.uncertain_since is None
        if first:
            self.state.uncertain_since = ts
        return first

    def _malformed(self, row: Row, idx: int, error: Exception) -> None:
        """An event with missing or mistyped fields: skipped, reported, and treated as a loss from here on."""
        ts = row[R_TS] if isinstance(row[R_TS], int) else self.state.time_ns
        first = self._uncertain_from(ts)
        what = f"lacks field {error.args[0]!r}" if isinstance(error, KeyError) else f"has a bad value ({error})"
        self._flag("malformed_event", ts, row[R_DEVICE] if isinstance(row[R_DEVICE], str) else None, None,
                   f"event #{idx} ({row[R_KIND]}) {what}; the model skipped it"
                   f"{', so its state is uncertain from here' if first else ''}.", [idx])

    def _group_add(self, row: Row, idx: int) -> None:
        """A device (re)probed into an IOMMU group: its PRI starts enabled again."""
        self.state.devices.setdefault(row[R_DEVICE], None)
        self.state.pri_disabled.pop(row[R_DEVICE], None)
