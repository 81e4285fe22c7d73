"""Turns a scenario's script into the events a capture of its kernel would record, in the kernel's order.

The runner asks the simulator what the kernel would decide (which PASID the allocator hands out, whether an mm
already has one), so scenarios teach the same rules the checks enforce. It counts bind references itself: before 6.2
the unbinds it writes none of are the kernel's all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from errno import EBUSY, EINVAL, ENOSPC, EOVERFLOW
from itertools import count
from typing import Any

from ..errors import ScenarioError
from ..events import AllocPath, DomainType, Event, Kind, ResponseCode, make
from ..index import RecordingIndex
from ..kernel_facts import CURRENT, FACT_KEYS, HOOKS, parse_version
from ..recording import DeviceInfo, Header, write_events
from ..recording.header import SCENARIO_CLOCK
from ..simulator import Simulator
from ..uapi import VFIO_DEVICE_ATTACH_PASID, command_number
from .language import ACTIONS, PAGE, Actor, Scenario, Step, through_iommufd

TICK = 1_000  # spacing of the events one action produces (1 µs)


class ScenarioRun:
    """One scenario, run: its events, its header, and an index over them."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.header = Header(
            source="scenario", host={"kernel": scenario.kernel} if scenario.kernel else {}, clock=SCENARIO_CLOCK,
            title=scenario.title, description=scenario.summary.strip() or None,
            devices=[DeviceInfo(d.name, d.width, d.pri, d.ats, d.driver) for d in scenario.devices],
            extra={"scenario": {"file": scenario.path.rsplit("/", 1)[-1], "expect": scenario.expect,
                                "stale_ns": scenario.stale_ns}},
        )
        self.sim = Simulator(self.header.devices, kernel=scenario.kernel, stale_ns=scenario.stale_ns)
        self.events: list[Event] = []
        self._names: dict[str, int] = {}
        self._domains = count(0x10)
        self._sva_domain: dict[int, int] = {}
        self._marker_steps = count(1)
        self._floor = -1
        self._exited: set[int] = set()  # actors' pids (and mms) whose process exited: a pid names one actor
        # The kernel's SVA binds, (mm, device) -> (references, PASID): the model's lack the unbinds a capture cannot
        # see (before 6.2), and it forgets an exited mm's PASID when it infers them
        self._binds: dict[tuple[int, str], tuple[int, int]] = {}
        # What a capture of this kernel records (kernel_facts.HOOKS): a bind, unbind or exit shows only these kinds
        # (before 6.2 no attach, detach or unbind; 5.2-5.4 and 6.4-6.5 no SVA allocation, 5.2-5.4 no free). The
        # player takes its PASID numbers from the model's allocator all the same: where no row shows an allocation,
        # the model infers it at the bind's attach or the bind, as for a capture of that kernel.
        version = parse_version(scenario.kernel) or CURRENT
        self._checks_pasid = version in FACT_KEYS["attach.pasid-checked"].span
        self._bind_checks_slot = version in FACT_KEYS["bind.slot-checked"].span
        self._recorded = {kind for h in HOOKS if h.in_kernel(version) for kind in h.kinds}
        # 5.5-6.3 an mm's PASID comes from ioasid_alloc() and goes with ioasid_free() (ioasid_put() 5.11-5.17,
        # drivers/iommu/ioasid.c), which take no device and no mm: their rows name neither (probes/decode.py)
        self._ioasid = self.sim.policy.allocator == "ioasid"
        self._iommufd_attached: set[tuple[str, int | None]] = set()  # (device, PASID)s attached through VFIO/iommufd
        for step in scenario.steps:
            self._run(step)

    # -- emitting -------------------------------------------------------------------------------------------
    def _emit(self, kind: str, t: int, actor: Actor | None = None, **kw: Any) -> int:
        if actor is not None:
            kw.setdefault("pid", actor.pid)
            kw.setdefault("comm", actor.comm)
        ev = make(kind, t, source="scenario", **kw)
        self.sim.apply(ev, len(self.events))
        self.events.append(ev)
        self._floor = t
        return t + TICK

    def _kernel(self, kind: str, t: int, actor: Actor, **kw: Any) -> int:
        """Emit an event of the kernel's (a bind, unbind, exit, SVA allocation or free) if a capture of this kernel can
        record its kind."""
        return self._emit(kind, t, actor, **kw) if kind in self._recorded else t

    def _sva_pasid(self, kind: str, t: int, actor: Actor, pasid: int | None, dev: str | None = None,
                   **kw: Any) -> int:
        """Emit the allocation (for `dev`) or the free of an actor's SVA PASID as this kernel's hook records it, if
        one does: 5.5-6.3 ioasid_alloc(set, min, max, private) and ioasid_free(ioasid) know no device and no mm, and
        the probe of a free no owner (probes/decode.py); iommu_alloc_global_pasid() (6.6+) and mm_pasid_drop()
        (6.4+) are called for the mm, and say so (the owner of such a free is the player's: no probe reads one)."""
        if self._ioasid:
            return self._kernel(kind, t, actor, pasid=pasid, path=AllocPath.IOASID,
                                owner=actor.owner if kind == Kind.PASID_ALLOC else None, **kw)
        return self._kernel(kind, t, actor, device=dev, pasid=pasid, path=AllocPath.SVA, owner=actor.owner,
                            mm=actor.pid, **kw)

    def _holds(self, mm: int) -> bool:
        """Whether `mm` still holds a bind (the kernel's count, `_binds`)."""
        return any(m == mm for m, _ in self._binds)

    def _attach_error(self, dev: str, pasid: int | None) -> int | None:
        """What iommu_attach_device_pasid() refuses (drivers/iommu/iommu.c), as its errno: -EINVAL for PASID 0 or
        one at or past the device's max_pasids (6.9+, kernel_facts attach.pasid-checked), -EBUSY for a (device,
        PASID) its group's pasid_array holds already (xa_cmpxchg, 6.2+); None when it attaches. A capture records
        such an attach with its error, and the model passes it by, so a scenario shows what the kernel stopped."""
        if pasid is None:
            return None
        if self._checks_pasid and not 0 < pasid < self.sim.state.max_pasids(dev):
            return -EINVAL
        return -EBUSY if (dev, pasid) in self.sim.state.attachments else None

    def _fail(self, step: Step, key: str | None, what: str) -> ScenarioError:
        line = step.params.get("_lines", {}).get(key, step.line) if key else step.line
        return ScenarioError(self.scenario.path, f"line {line}", what)

    def _run(self, step: Step) -> None:
        if step.t_ns <= self._floor:
            raise self._fail(step, None, f"this step at {step.t_ns} ns overlaps the events of the step before, "
                                         f"which run until {self._floor} ns: move it later")
        t = step.t_ns
        if step.say is not None:
            t = self._emit(Kind.MARKER, t, text=step.say.strip(), title=step.title, step=next(self._marker_steps))
        if step.action is not None:
            handler: Callable[[Step, int], None] = getattr(self, f"_do_{step.action}")
            try:
                handler(step, t)
            except (ValueError, TypeError) as e:  # a value the parser let through but the event model refuses
                raise self._fail(step, None, f"{step.action}: {e}") from None

    # -- reading parameters -----------------------------------------------------------------------------------
    def _arg(self, step: Step, key: str) -> Any:
        """A parameter as the action uses it, read through the action table, which holds its type and default."""
        param = ACTIONS[str(step.action)].params[key]
        raw = step.params.get(key, param.default)
        return None if raw is None else param.read(raw)

    def _actor(self, step: Step) -> Actor | None:
        name = self._arg(step, "actor")
        return None if name is None else self.scenario.actors[name]

    def _pasid(self, step: Step) -> int | None:
        ref = self._arg(step, "pasid")
        if ref is None or isinstance(ref, int):
            return ref
        if ref in self._names:
            return self._names[ref]
        actor = self.scenario.actors.get(ref)
        if actor is not None:
            pasid = self.sim.state.mm_pasid.get(actor.pid)
            if pasid is None:
                raise self._fail(step, "pasid", f"actor {ref!r} has no SVA PASID at this point (bind it first)")
            return pasid
        known = sorted(set(self._names) | set(self.scenario.actors))
        raise self._fail(step, "pasid", f"unknown PASID {ref!r}: use a number, an actor's name (its SVA PASID) or "
                                        f"a name given with `as` earlier (known: {', '.join(known) or 'none'})")

    # -- SVA --------------------------------------------------------------------------------------------------
    def _do_bind(self, step: Step, t: int) -> None:
        actor, dev = self._actor(step), self._arg(step, "device")
        assert actor is not None
        st = self.sim.state
        mm = actor.pid
        pasid = st.mm_pasid.get(mm)
        if pasid is None:
            pasid = st.lowest_free(dev)
            if pasid is None:
                t = self._sva_pasid(Kind.PASID_ALLOC, t, actor, None, dev, error=-ENOSPC)
                self._kernel(Kind.SVA_BIND, t, actor, device=dev, mm=mm, error=-ENOSPC)
                return
            t = self._sva_pasid(Kind.PASID_ALLOC, t, actor, pasid, dev)
        # The mm's PASID beyond this device's max_pasids fails the bind with -EOVERFLOW before any attach
        # (iommu_alloc_mm_data() 6.8+, iommu_sva_alloc_pasid() before; iommu-sva.c); an attach the kernel refuses
        # fails it with the attach's error (iommu_sva_bind_device(), 6.2+), and from 6.11 a taken slot fails it
        # before any attach is tried (kernel_facts bind.slot-checked)
        err = -EOVERFLOW if pasid >= st.max_pasids(dev) else None
        if err is None and (mm, dev) not in self._binds:
            err = self._attach_error(dev, pasid)
            if err is None or not self._bind_checks_slot:
                domain = self._sva_domain.setdefault(mm, next(self._domains))
                t = self._kernel(Kind.PASID_ATTACH, t, actor, device=dev, pasid=pasid, domain=domain,
                                 domain_type=DomainType.SVA, error=err)
        if err is None:
            self._binds[(mm, dev)] = (self._binds.get((mm, dev), (0, pasid))[0] + 1, pasid)
        self._kernel(Kind.SVA_BIND, t, actor, device=dev, pasid=pasid, mm=mm, error=err)

    def _do_unbind(self, step: Step, t: int) -> None:
        actor, dev = self._actor(step), self._arg(step, "device")
        assert actor is not None
        mm = actor.pid
        refs, pasid = self._binds.pop((mm, dev), (0, self.sim.state.mm_pasid.get(mm)))
        t = self._kernel(Kind.SVA_UNBIND, t, actor, device=dev, pasid=pasid, mm=mm)
        if refs > 1:
            self._binds[(mm, dev)] = (refs - 1, pasid)
        elif refs == 1:
            t = self._kernel(Kind.PASID_DETACH, t, actor, device=dev, pasid=pasid, domain=self._sva_domain.get(mm),
                             domain_type=DomainType.SVA)
            held = self._holds(mm)
            # The last unbind frees the PASID up to 5.17 (iommu_sva_free_pasid()); from 5.18 the mm's drop does, so
            # it comes now only if the process has exited (__mmdrop() -> mm_pasid_drop(), kernel/fork.c).
            if not held and pasid is not None and (mm in self._exited or self.sim.policy.sva_free_at == "last_unbind"):
                self._sva_pasid(Kind.PASID_FREE, t, actor, pasid)

    def _do_exit(self, step: Step, t: int) -> None:
        actor = self._actor(step)
        assert actor is not None
        mm = actor.pid
        self._exited.add(mm)
        pasid = self.sim.state.mm_pasid.get(mm)
        dropped = pasid is not None and not self._holds(mm)  # (≤5.17 the last unbind freed it)
        t = self._kernel(Kind.MM_EXIT, t, actor, mm=mm)
        if dropped:
            # No bind holds the mm, yet exit_mm() leaves it a lazy-TLB reference (kernel/exit.c): the last mmdrop
            # comes after the exit, and __mmdrop() -> mm_pasid_drop() frees its PASID then (5.18+, kernel/fork.c).
            self._sva_pasid(Kind.PASID_FREE, t, actor, pasid)

    # -- the user interface and drivers -----------------------------------------------------------------------
    def _do_alloc(self, step: Step, t: int) -> None:
        actor = self._actor(step)
        assert actor is not None
        dev = self._arg(step, "device")
        pasid = self.sim.state.lowest_free(dev)
        kw: dict[str, Any] = {"device": dev, "path": self._arg(step, "via"), "owner": actor.owner, "vm": actor.vm}
        if pasid is None:
            self._emit(Kind.PASID_ALLOC, t, actor, error=-ENOSPC, **kw)
            return
        self._emit(Kind.PASID_ALLOC, t, actor, pasid=pasid, **kw)
        if "as" in step.params:
            self._names[self._arg(step, "as")] = pasid

    def _do_free(self, step: Step, t: int) -> None:
        actor = self._actor(step)
        self._emit(Kind.PASID_FREE, t, actor, pasid=self._pasid(step), path=self._arg(step, "via"),
                   owner=actor.owner if actor else "a driver")

    def _do_attach(self, step: Step, t: int) -> None:
        actor, dev, pasid = self._actor(step), self._arg(step, "device"), self._pasid(step)
        fresh = next(self._domains)  # drawn even when `domain_id` is given: later domains keep their numbers
        domain = fresh if "domain_id" not in step.params else self._arg(step, "domain_id")
        dtype = self._arg(step, "domain")
        kind = Kind.PASID_ATTACH
        kw: dict[str, Any] = {}
        old = self.sim.state.attachments.get((dev, pasid)) if (dev, pasid) in self._iommufd_attached else None
        if old is not None:
            # The ioctl on a PASID iommufd has attached already replaces its domain (6.15+ drivers/vfio/iommufd.c
            # vfio_iommufd_physical_pasid_attach_ioas(): iommufd_device_replace() -> iommu_replace_device_pasid())
            kind, kw["old_domain"] = Kind.PASID_REPLACE, old.domain
        else:
            kw["error"] = self._attach_error(dev, pasid)
        if through_iommufd(step.params):
            # (the ioctl returns what the attach did: vfio_iommufd_physical_pasid_attach_ioas() returns its rc)
            t = self._emit(Kind.UAPI, t, actor, device=dev, pasid=pasid,
                           cmd=command_number("VFIO_DEVICE_ATTACH_IOMMUFD_PT"), name="VFIO_DEVICE_ATTACH_IOMMUFD_PT",
                           args={"argsz": 16, "flags": VFIO_DEVICE_ATTACH_PASID, "pt_id": domain, "pasid": pasid},
                           ret=kw.get("error") or 0, vm=actor.vm if actor else None)
            if kw.get("error") is None:
                self._iommufd_attached.add((dev, pasid))
        elif dtype == DomainType.PAGING:
            # A kernel driver attaches its device's DMA-API domain (iommu_get_domain_for_dev(): IOMMU_DOMAIN_DMA or
            # _DMA_FQ, include/linux/iommu.h), as a capture reads it from the domain's type bits
            kw["dma_api"] = True
        self._emit(kind, t, actor, device=dev, pasid=pasid, domain=domain, domain_type=dtype,
                   guest_pasid=self._arg(step, "guest_pasid"), vm=actor.vm if actor else None,
                   fault_queue=self._arg(step, "fault_queue"), **kw)

    def _do_detach(self, step: Step, t: int) -> None:
        actor, dev, pasid = self._actor(step), self._arg(step, "device"), self._pasid(step)
        att = self.sim.state.attachments.get((dev, pasid)) if pasid is not None else None
        self._iommufd_attached.discard((dev, pasid))
        if through_iommufd(step.params) and actor is not None and actor.pid not in self._exited:
            # (after its exit an actor makes no ioctl: its VFIO device file closing detaches, exit_files())
            t = self._emit(Kind.UAPI, t, actor, device=dev, pasid=pasid,
                           cmd=command_number("VFIO_DEVICE_DETACH_IOMMUFD_PT"), name="VFIO_DEVICE_DETACH_IOMMUFD_PT",
                           args={"argsz": 12, "flags": VFIO_DEVICE_ATTACH_PASID, "pasid": pasid}, ret=0,
                           vm=actor.vm if actor else None)
        self._emit(Kind.PASID_DETACH, t, actor, device=dev, pasid=pasid, domain=att.domain if att else None,
                   domain_type=att.domain_type if att else None)

    # -- page requests, responses, faults ---------------------------------------------------------------------
    def _do_request(self, step: Step, t: int) -> None:
        dev, pasid, pages = self._arg(step, "device"), self._pasid(step), self._arg(step, "pages")
        prg, addr, perm, spacing = (self._arg(step, k) for k in ("prg", "addr", "access", "spacing"))
        for i in range(pages):
            self._emit(Kind.PAGE_REQUEST, t + i * spacing, device=dev, pasid=pasid, prg=prg, addr=addr + i * PAGE,
                       perm=perm, last=i == pages - 1, needs_pasid=pasid is not None)

    def _do_respond(self, step: Step, t: int) -> None:
        if self._arg(step, "by") in ("user", "guest") and self._arg(step, "code") == ResponseCode.FAILURE:
            raise self._fail(step, "code", "iommufd takes only IOMMUFD_PAGE_RESP_SUCCESS or _INVALID from a fault fd "
                                           "(include/uapi/linux/iommufd.h): user space cannot send Response Failure")
        self._emit(Kind.PAGE_RESPONSE, t, device=self._arg(step, "device"), pasid=self._pasid(step),
                   prg=self._arg(step, "prg"), code=int(self._arg(step, "code")), by=self._arg(step, "by"))

    def _do_fault(self, step: Step, t: int) -> None:
        self._emit(Kind.FAULT, t, device=self._arg(step, "device"), pasid=self._pasid(step),
                   addr=self._arg(step, "addr"), reason=self._arg(step, "reason"), access=self._arg(step, "access"),
                   vendor="generic")

    def _do_map(self, step: Step, t: int) -> None:
        dev, domain, iova, size = (self._arg(step, k) for k in ("device", "domain", "iova", "size"))
        for i in range(self._arg(step, "count")):
            t = self._emit(Kind.MAP, t, device=dev, domain=domain, iova=iova + i * size, size=size,
                           paddr=0x1_0000_0000 + i * size)

    def _do_uapi(self, step: Step, t: int) -> None:
        actor, name = self._actor(step), self._arg(step, "name")
        self._emit(Kind.UAPI, t, actor, cmd=command_number(name), name=name, args=self._arg(step, "args"),
                   ret=self._arg(step, "ret"), vm=actor.vm if actor else None)

    def _do_lose(self, step: Step, t: int) -> None:
        self._emit(Kind.LOST, t, count=self._arg(step, "count"), cpu=0)

    # -- results ----------------------------------------------------------------------------------------------
    def index(self, stale_ns: int | None = None) -> RecordingIndex:
        """Index the run in memory, the same way a recording of it would be indexed."""
        idx = RecordingIndex(self.header, stale_ns=self.scenario.stale_ns if stale_ns is None else stale_ns)
        rows = [ev.to_row() for ev in self.events]
        for i in range(0, len(rows), 4096):
            idx.add_rows(rows[i:i + 4096])
        idx.finish()
        return idx

    def write(self, path: str, *, compress: bool = True) -> int:
        return write_events(path, self.header, self.events, compress=compress)

