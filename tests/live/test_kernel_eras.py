"""For every version range of explorer.kernel_facts, the records the probes write when that kernel runs one healthy
SVA (or iommufd) lifecycle, in the order its source fires the hooks, decode and replay with no finding at all;
the same streams with a bug planted in them are found. Records pass through the real decoder and simulator, with
the coverage a capture on that kernel would record in its header.

mm 77 is the process (the probes name an mm by its tgid); PASIDs, groups and descriptors as the kernel fills them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from explorer.events import Event
from explorer.kernel_facts import HOOK_FACTS, parse_version
from explorer.recording import Header
from explorer.simulator import Simulator, lifecycle_unobserved
from probes.capability import ATTACHED, MISSING_SYMBOL, Verdict, header_probes
from probes.decode import Decoder
from probes.hooks import HOOKS
from probes.record import Ev

from .records import batch, record

DEV = b"0000:6a:01.0"
RID = 0x6A08
MM = 77
SVA, NESTED, PAGING = 0x10 | 0x1, 0x40, 0x1 | 0x2  # iommu_domain.type bits (include/linux/iommu.h)
Recs = list[np.ndarray]


class Kernel:
    """Writes records as one kernel version's probes would: a clock, and the hooks that exist there."""

    def __init__(self, release: str) -> None:
        self.release, self.version = release, parse_version(release)
        self.t = 0
        self.recs: Recs = []

    def has(self, hook: str) -> bool:
        return bool(HOOK_FACTS[hook].in_kernel(self.version))

    def fire(self, hook: str, ev: Ev, pid: int = MM, **fields: object) -> None:
        if self.has(hook):
            self.t += 1000
            self.recs.append(record(ev, self.t, pid=pid, tgid=MM, **fields))

    # -- the hooks, with the fields the BPF programs fill ----------------------------------------------------
    def alloc(self, pasid: int) -> None:
        self.fire("ioasid_alloc", Ev.IOASID_ALLOC, cmd=pasid)
        self.fire("iommu_alloc_global_pasid", Ev.PASID_ALLOC, cmd=pasid, a=MM, b=1, **{"in": DEV})

    def attach(self, pasid: int, dtype: int = SVA, domain: int = 0xD0) -> None:
        self.fire("iommu_attach_device_pasid", Ev.PASID_ATTACH, cmd=pasid, a=domain, b=dtype, **{"in": DEV})

    def detach(self, pasid: int, dtype: int = SVA, domain: int = 0xD0) -> None:
        self.fire("iommu_detach_device_pasid", Ev.PASID_DETACH, cmd=pasid, a=domain, b=dtype, **{"in": DEV})

    def bind(self, pasid: int) -> None:
        """iommu_sva_bind_device(): allocation (ioasid_alloc <=6.3, hidden 6.4-6.5, iommu_alloc_global_pasid
        6.6+; iommu-sva.c), then iommu_attach_device_pasid() (6.2+), then its return."""
        self.alloc(pasid)
        self.attach(pasid)
        self.fire("iommu_sva_bind_device", Ev.SVA_BIND, cmd=pasid if self.version >= (5, 10) else 0xFFFFFFFF,
                  a=MM, b=0xFFFF888000001000, **{"in": DEV})

    def unbind(self, pasid: int) -> None:
        """iommu_sva_unbind_device() then iommu_detach_device_pasid() (6.2+); before 6.2 not probeable."""
        self.fire("iommu_sva_unbind_device", Ev.SVA_UNBIND, cmd=pasid, a=MM, b=0xFFFF888000001000, **{"in": DEV})
        self.detach(pasid)
        if self.version <= (5, 10):
            self.fire("ioasid_free", Ev.IOASID_FREE, cmd=pasid)  # intel svm.c frees at the last unbind
        self.fire("ioasid_put", Ev.IOASID_FREE, cmd=pasid)  # 5.11-5.17: iommu_sva_free_pasid(), true: freed

    def request(self, pasid: int | None, prg: int, tid: int = 40) -> None:
        """VT-d prq.c (svm.c up to 6.12): intel_prq_report() -> iommu_report_device_fault(), then trace_prq_report.
        Before 5.14 svm.c answered page requests itself: no hook sees them (kernel_facts request.vtd-svm)."""
        if self.version < (5, 14):
            return
        flags = 2 | (1 if pasid is not None else 0)  # LAST_PAGE | PASID_VALID
        self.fire("iommu_report_device_fault", Ev.REPORT_FAULT, pid=tid, cmd=pasid if pasid is not None else
                  0xFFFFFFFF, fd=prg, a=0x7000, b=flags | (1 << 32 if pasid is not None else 0), c=2,
                  **{"in": DEV})
        dw0 = (1 << 8 | (pasid or 0) << 32 if pasid is not None else 0) | RID << 16
        self.fire("intel_iommu:prq_report", Ev.PRQ, pid=tid, a=dw0, b=2 | 1 << 2 | prg << 3 | 0x7000,
                  **{"in": DEV})

    def respond(self, pasid: int | None, prg: int, code: int = 0, tid: int = 41, core: bool = True) -> None:
        """The core's response (iommu_page_response 5.3-6.8, iopf_group_response 6.9+) -> ops->page_response
        (intel_svm_page_response 6.9-6.12 in svm.c, intel_iommu_page_response 6.13+ in prq.c) ->
        VT-d qi_submit_sync() -> trace_qi_submit; svm.c before 5.14 wrote the descriptor itself. `core` False:
        the kernel answers through ops->page_response directly (io-pgfault.c iopf_queue_remove_device())."""
        kw = {"pid": tid, "cmd": pasid if pasid is not None else 0xFFFFFFFF, "fd": prg, "ret": code, "in": DEV}
        if self.version >= (5, 14) and core:
            self.fire("iommu_page_response", Ev.PAGE_RESPONSE, **kw)
            self.fire("iopf_group_response", Ev.PAGE_RESPONSE, **kw)
        if self.version < (6, 12):  # a 6.12 has one or the other (6.12.y took prq.c's); say the later one
            self.fire("intel_svm_page_response", Ev.DRIVER_PAGE_RESPONSE, a=0, **kw)
        self.fire("intel_iommu_page_response", Ev.DRIVER_PAGE_RESPONSE, a=1, **kw)
        vtd = {0: 0, 1: 1, 2: 0xF}[code] if self.version < (5, 14) else code
        qw0 = 9 | (1 << 4 | pasid << 32 if pasid is not None else 0) | vtd << 12 | RID << 16
        self.fire("intel_iommu:qi_submit", Ev.QI_PGRP_RESP, pid=tid, a=qw0, b=prg << 3)

    def exit(self) -> None:
        self.fire("sched:sched_process_exit", Ev.EXIT)

    def mmdrop(self, pasid: int) -> None:
        """__mmdrop() -> mm_pasid_drop(): inline ioasid_free() 5.18-6.3, a function 6.4+ that calls
        iommu_free_global_pasid() 6.6+ (iommu-sva.c). Before 5.18 the PASID went at the last unbind."""
        self.fire("mm_pasid_drop", Ev.MM_PASID_DROP, pid=90, cmd=pasid, a=MM)
        self.fire("iommu_free_global_pasid", Ev.PASID_FREE, pid=90, cmd=pasid)
        if (5, 18) <= self.version <= (6, 3):
            self.fire("ioasid_free", Ev.IOASID_FREE, pid=90, cmd=pasid)

    # -- replay --------------------------------------------------------------------------------------------
    def replay(self) -> Simulator:
        attached = {h.name for h in HOOKS if HOOK_FACTS[h.name].in_kernel(self.version) or not h.function}
        verdicts = [Verdict(h, ATTACHED if h.name in attached else MISSING_SYMBOL, "test") for h in HOOKS]
        header = Header(source="capture", host={"kernel": self.release}, probes=header_probes(verdicts))
        sources = {h.ev: f"fentry:{h.name}" for h in HOOKS if h.function and h.name in attached and h.ev}
        rows = Decoder(kfunc_sources=sources).rows(batch(*self.recs))
        sim = Simulator(kernel=self.release, unobserved=lifecycle_unobserved(header), midstream=True)
        for i, row in enumerate(rows):
            sim.apply(Event.from_row(row), i)
        sim.advance(self.t + 1_000_000_000)
        return sim


def sva_lifecycle(k: Kernel) -> None:
    """A process binds the device, it faults twice, the kernel answers, it unbinds, exits, its mm is dropped."""
    k.bind(1)
    for prg in (3, 4):
        k.request(1, prg)
        k.respond(1, prg)
    k.unbind(1)
    k.exit()
    k.mmdrop(1)


def iommufd_lifecycle(k: Kernel) -> None:
    """6.15+: a VMM attaches the guest's PASID 5 (its own number, no allocation) to a nested domain through
    VFIO_DEVICE_ATTACH_IOMMUFD_PT; the fault goes to its fault queue (eventq.c), it answers through the fault fd ->
    iopf_group_response(); detaching drains nothing left. drivers/iommu/iommufd/device.c, eventq.c."""
    k.attach(5, NESTED, domain=0xE0)
    k.request(5, 7)
    k.respond(5, 7)
    k.detach(5, NESTED, domain=0xE0)


ERAS = ["5.4", "5.10", "5.13", "5.15", "6.1", "6.3", "6.5", "6.8", "6.10", "6.12", "6.15", "6.18", "7.3"]


@pytest.mark.parametrize("release", ERAS)
def test_a_healthy_lifecycle_as_each_kernel_fires_its_hooks_replays_without_a_finding(release: str) -> None:
    k = Kernel(release)
    sva_lifecycle(k)
    if k.has("iommu_replace_device_pasid"):  # 6.15+
        iommufd_lifecycle(k)
    sim = k.replay()
    assert [(a.rule, a.explanation) for a in sim.anomalies] == []
    assert not sim.state.groups and not sim.state.binds


def test_a_free_seen_by_two_hooks_and_a_request_seen_by_two_are_one_each() -> None:
    k = Kernel("6.12")
    sva_lifecycle(k)
    rows = Decoder().rows(batch(*k.recs))
    kinds = [r[1] for r in rows]
    assert kinds.count("pasid_free") == 1 and kinds.count("page_request") == 2 and kinds.count("page_response") == 2


@pytest.mark.parametrize("release", ["6.10", "6.18"])
def test_groups_the_kernel_answers_itself_are_answered_once(release: str) -> None:
    """drivers/iommu/io-pgfault.c (6.9+): iopf_queue_remove_device() answers every pending group INVALID through
    ops->page_response, not iopf_group_response(). The driver op is its only sighting. On 6.10 (the pending check,
    before iopf_group_dequeue()) the SVA work that then finishes calls iopf_group_response() on the group no longer
    pending, which sends nothing ('Only send response if there is a fault report pending'): no response at all.
    From 6.12.y (Debian 6.12.118, 7.3) removal frees the group (iopf_free_group()), so no such late call comes."""
    k = Kernel(release)
    k.bind(1)
    k.request(1, 3)
    k.respond(1, 3, code=1, tid=99, core=False)  # the device leaves its queue: the kernel's own INVALID
    if release == "6.10":
        k.fire("iopf_group_response", Ev.PAGE_RESPONSE, pid=41, cmd=1, fd=3, ret=0, c=1, **{"in": DEV})
    rows = [r for r in Decoder().rows(batch(*k.recs)) if r[1] == "page_response"]
    assert [(r[7], r[8].get("code"), r[8].get("seen_by")) for r in rows] == [
        ("intel_svm_page_response" if release == "6.10" else "intel_iommu_page_response", 1,
         ["intel_iommu:qi_submit"])]
    assert [a.rule for a in k.replay().anomalies] == []


@pytest.mark.parametrize("release", ["5.13", "5.15", "6.8", "6.12", "6.18"])
def test_an_answer_to_a_group_requested_before_the_capture_is_uncertain(release: str) -> None:
    """A capture that starts while PRG 5 of a process bound before it is pending sees only its answer: the core's
    (iommu_page_response() 5.3-6.8, iopf_group_response() 6.9+, which answer only a pending group: iommu.c,
    io-pgfault.c 'Only send response if there is a fault report pending'), then qi_submit. Up to 5.13 svm.c answered
    requests no hook saw, so an answer alone says nothing (kernel_facts request.vtd-svm)."""
    k = Kernel(release)
    k.respond(3, 5)
    found = [(a.rule, str(a.severity)) for a in k.replay().anomalies]
    assert found == ([] if k.version < (5, 14) else [("response_without_group", "uncertain")])


@pytest.mark.parametrize("release", ["5.13", "5.15", "6.8", "6.12", "6.18"])
def test_a_page_request_vt_d_refuses_unreported_is_a_refused_request_not_a_stray_answer(release: str) -> None:
    """drivers/iommu/intel/svm.c (5.14-6.12) and prq.c (6.13+) prq_event_thread(): a request whose address is not
    canonical, a privileged or execute-with-read one, or one from a requester it does not know goes to
    handle_bad_prq_event(), which answers INVALID through qi_submit_sync(); neither iommu_report_device_fault() nor
    trace_prq_report sees the request. The capture sees a lone page-group response descriptor. Up to 5.13 svm.c
    answered every request so (kernel_facts request.vtd-svm): nothing to tell."""
    k = Kernel(release)
    k.bind(1)
    qw0 = 9 | 1 << 4 | 1 << 32 | 1 << 12 | RID << 16  # page group response, PASID 1 present, QI_RESP_INVALID
    k.fire("intel_iommu:qi_submit", Ev.QI_PGRP_RESP, pid=40, a=qw0, b=6 << 3 | 1 << 2)
    sim = k.replay()
    found = [(a.rule, str(a.severity)) for a in sim.anomalies]
    # (before 6.2 no probe can name an unbind's mm: the lifecycle is uncertain from the start, and so the finding)
    expected = "uncertain" if sim.unobserved else "warning"
    assert found == ([] if k.version < (5, 14) else [("refused_request", expected)])


def _planted(bug: Callable[[Kernel], None], release: str = "6.18") -> list[str]:
    k = Kernel(release)
    bug(k)
    return [a.rule for a in k.replay().anomalies]


def _free_before_detach(k: Kernel) -> None:
    """A driver: iommu_alloc_global_pasid(), iommu_attach_device_pasid(), then iommu_free_global_pasid() with
    no detach (the kernel does not check)."""
    k.fire("iommu_alloc_global_pasid", Ev.PASID_ALLOC, cmd=2, **{"in": DEV})
    k.attach(2, PAGING, domain=0xA0)
    k.fire("iommu_free_global_pasid", Ev.PASID_FREE, pid=55, cmd=2)


def _answered_twice(k: Kernel) -> None:
    k.bind(1)
    k.request(1, 3)
    k.respond(1, 3)
    k.respond(1, 3, tid=42)


def _request_after_failure(k: Kernel) -> None:
    k.bind(1)
    k.request(1, 3)
    k.respond(1, 3, code=2)  # Response Failure: PRI is off at the function
    k.request(1, 4)
    k.respond(1, 4)


def _attached_twice(k: Kernel) -> None:
    k.attach(5, NESTED, domain=0xE0)
    k.attach(5, NESTED, domain=0xE1)  # the kernel returns -EBUSY; a success means a detach went unseen or a bug


@pytest.mark.parametrize("bug, found", [
    (_free_before_detach, ["free_while_attached"]),
    (_answered_twice, ["duplicate_response"]),
    (_request_after_failure, ["request_after_failure"]),
    (_attached_twice, ["attach_conflict"]),
])
def test_planted_bugs_are_found(bug: Callable[[Kernel], None], found: list[str]) -> None:
    assert _planted(bug) == found
