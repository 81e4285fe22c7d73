"""The invariants the simulator checks, each with a title, a severity and a plain-language lesson.

An `Anomaly` is one broken invariant at one time, with the explanation filled in and the indices of the events
that prove it, so the UI can jump to the evidence.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, Kind, make


class Severity(enum.StrEnum):
    ERROR = "error"  # the kernel or a driver broke a rule
    WARNING = "warning"  # legal but harmful: a stalled device, an exhausted space
    UNCERTAIN = "uncertain"  # cannot be verified: events were lost, or the recording could not see them


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    title: str
    severity: Severity
    lesson: str  # why the rule exists, in the model's terms


def _r(name: str, title: str, severity: Severity, lesson: str) -> Rule:
    return Rule(name, title, severity, lesson)


E, W, U = Severity.ERROR, Severity.WARNING, Severity.UNCERTAIN  # short names for the table below
RULES: dict[str, Rule] = {r.name: r for r in (
    _r("use_after_free", "PASID used after it was freed", E,
       "All versions: an SVA bind or SVA attach must carry its mm's live PASID. Once freed, the allocator (ioasid "
       "up to 6.3, the IDA since) may give the number to another mm or driver; a bind still using it names a "
       "number that is no longer its own."),
    _r("use_unallocated", "PASID used but never allocated", E,
       "All versions: an SVA PASID always comes from the kernel's allocator at the mm's first bind (ioasid up to "
       "6.3, the SVA IDA 6.4-6.5, iommu_alloc_global_pasid() 6.6+). Checked only for SVA and only where the "
       "recording saw every allocation from the start: iommufd/VFIO PASIDs (6.15+) are chosen by user space and "
       "never allocated."),
    _r("double_free", "PASID freed twice", E,
       "All versions: the allocator hands a freed number to the next caller (ida_free() WARNs on a double free, "
       "6.4+); freeing it again can free someone else's PASID. Since 6.6 mm_pasid_drop() calls "
       "iommu_free_global_pasid(): that is one free, recorded once."),
    _r("double_alloc", "PASID handed out twice", E,
       "All versions: the allocator never hands out a number it holds (ioasid_alloc() 5.5-6.3, the SVA IDA 6.4-6.5, "
       "iommu_alloc_global_pasid() 6.6+); a second allocation of a live PASID means its free went unseen (a lost "
       "event makes this uncertain) or two allocators share its numbers."),
    _r("free_unallocated", "PASID freed but never allocated", E,
       "All versions: only an allocated PASID can be freed (ioasid_free() and iommu_free_global_pasid() of an "
       "unknown number WARN or do nothing)."),
    _r("free_while_attached", "PASID freed while still attached", E,
       "6.2+ (per-PASID attach): detach before free. The kernel does not check: the device's PASID-table entry "
       "keeps pointing at its domain while the allocator may give the number away, and its new owner's attach "
       "on that device then fails with -EBUSY. From 6.15 only SVA, a driver's DMA-API attach (dma_api) and an "
       "identity domain count: user space's iommufd PASIDs are its own numbers, and a paging attach of an unknown "
       "domain is not judged."),
    _r("reserved_pasid", "reserved PASID 0 used as a PASID", E,
       "All versions: PASID 0 is IOMMU_NO_PASID (VT-d RID2PASID, SMMU SSID 0, AMD 'no PASID'): it means 'no "
       "PASID' and is never allocated. iommu_attach_device_pasid() refuses it from 6.9 (c404f55c26fc); 6.2-6.8 the "
       "core let it through to the driver."),
    _r("beyond_width", "PASID beyond the device's width", E,
       "6.2+: a device carries max_pasids = min(its PCIe capability's 1 << width, its IOMMU's limit) "
       "(dev_iommu_get_max_pasids()); iommu_attach_device_pasid() refuses a larger one with -EINVAL from 6.9 "
       "(c404f55c26fc; before, only a driver's own table bounds it), and an SVA bind of an mm whose PASID is larger "
       "fails with -EOVERFLOW."),
    _r("space_exhausted", "PASID space exhausted", W,
       "All versions: the allocator found no free PASID below the device's max_pasids. Narrow devices run out "
       "first, since one space serves every device (-ENOSPC 6.4+, -ENOMEM from ioasid before). A device with no "
       "PASID past 0 (width 0, or no PASID capability: max_pasids 0) has none to exhaust: iommu_alloc_global_pasid() "
       "refuses it at once, which is no finding."),
    _r("second_sva_pasid", "mm with two SVA PASIDs", E,
       "5.18+ (and within one bind-to-unbind span before): an mm has at most one SVA PASID; the first bind "
       "allocates it and every later bind, on any device, reuses it."),
    _r("attach_conflict", "(device, PASID) attached twice", E,
       "6.2+: a (group, PASID) slot holds one domain; iommu_attach_device_pasid() refuses a second with -EBUSY "
       "(SVA and iommufd share the slots), and changing it is a replace (6.15+). A second successful attach "
       "means a detach went unseen or the kernel broke its rule."),
    _r("detach_unattached", "detach of a (device, PASID) that was not attached", E,
       "6.2+: a detach (or an unbind) undoes one attach (or bind); one with nothing to undo means an event went "
       "unseen or a caller detached twice."),
    _r("fault_unattached", "page request on a PASID with no domain", W,
       "5.14+ (VT-d reports requests; AMD 6.10+): a device sent a page request on a PASID with nothing attached "
       "there, and the kernel answered it itself (Invalid Request: iopf_error_response() 6.11+). With a "
       "user-managed PASID table (SMMUv3 nesting, the iommufd mock) the RID's nested domain takes every PASID, "
       "so only the kernel's own refusal counts. On a capture, a PASID allocated before it began may have had its "
       "domain attached unseen: uncertain."),
    _r("response_without_group", "page response with no outstanding group", E,
       "All versions: a response answers one outstanding group, matched by PRG index and, when the function "
       "needs it, PASID. Up to 6.8 iommu_page_response() dropped an unmatched one ('no pending PRQ'); 6.9+ a "
       "response is bound to its iopf_group; iommufd rejects an unknown cookie with -EINVAL. On a capture, an answer "
       "on a PASID allocated before it began may close a group requested before it: uncertain within the stale "
       "threshold of its start; later, a WARNING (such a group stalled its device past the threshold)."),
    _r("refused_request", "page request the IOMMU driver refused unreported", W,
       "5.14+ (VT-d): the driver's page-request thread refuses a request it cannot serve, without reporting it to "
       "the core, and answers it Invalid Request itself (handle_bad_prq_event(): svm.c, prq.c from 6.13): an "
       "address that is not canonical, a privileged or execute-with-read request, a requester it does not know, or "
       "(until the PASID-less requests PRI users need were let through) no PASID; up to 6.8 (svm.c) also one "
       "iommu_report_device_fault() could not report, as with no fault handler. No hook sees such a request: a "
       "capture sees only the answer, a page-group response descriptor (intel_iommu:qi_submit) that no response "
       "of the core or the driver's page_response op came before, answering Invalid Request (any other code there "
       "is an answer the other hooks missed). The device's access fails: it, or whoever gave "
       "it the address, asked for what the kernel does not serve."),
    _r("duplicate_response", "page-request group answered twice", E,
       "All versions: a group is answered once. 6.9+ its handler frees the group right after answering it "
       "(iopf_group_response() then iopf_free_group(): iommu-sva.c, iommufd's fault write), so a second answer is "
       "a use after free in the caller; up to 6.8 a second iommu_page_response() was dropped, or completed a "
       "newer group reusing the index."),
    _r("request_after_failure", "page request after Response Failure", W,
       "PCIe (every version): a Response Failure (1111b) disables the function's Page Request Interface until "
       "software enables it again (PCIe 10.4.2.1). The kernel sends it for requests it cannot take at all (AMD "
       "ppr.c invalid PPRs, 6.10+; a core abort). A request after it is the device's fault, or PRI was "
       "re-enabled unseen (a reset). Only a function with PRI: not one the device table says has none, nor an "
       "SMMUv3 stall device, whose Failure (arm_smmu_page_response(): CMD_RESUME with ABORT, 6.9+) ends one stalled "
       "access."),
    _r("unanswered_group", "page-request group left unanswered", W,
       "All versions: the device holds a group's index and its outstanding-request credit until the host answers; "
       "page requests are posted, so no completion timeout ends the wait, and work behind it stops. User-space "
       "fault queues (6.11+) answer only when the VMM writes back; detaching a PASID drains what is left (VT-d "
       "waits for its handlers) or answers it Invalid (iommufd), and a device leaving its fault queue has every "
       "pending group answered Invalid (iopf_queue_remove_device(), 6.9+). The kernel handles a group only once its "
       "request with Last comes (io-pgfault.c: the others wait on the device's partial list), so its answer is "
       "awaited from that request; a wait for Last itself is the device's (or a lost event's), reported uncertain."),
    _r("mm_exit_with_binds", "process exited but its binds were held on", W,
       "5.18+: an exiting process's binds normally go as its files close, right after sched_process_exit. Binds "
       "held long after keep the SVA domain, and so the mm (mmgrab) and its PASID, which mm_pasid_drop() frees "
       "only after the last of them: late, until a driver lets go."),
    _r("malformed_event", "event the model cannot read: state uncertain from here", U,
       "An event whose fields are missing or of the wrong type (a damaged or hand-edited recording, a writer's "
       "bug) cannot be applied to the model; it counts as a lost event, so later findings are uncertain."),
    _r("events_lost", "events lost: state uncertain from here", U,
       "The capture dropped events, so the reconstructed state may miss allocations, binds or responses. "
       "Findings that a lost event could explain are marked uncertain instead of reported as bugs."),
)}


@dataclass(slots=True)
class Repeats:
    """Findings folded into an earlier one of the same rule on the same (device, PASID): how many, and the last
    one's time. A million faults on one PASID make one finding that says so, not a million."""

    count: int = 0
    last_ns: int | None = None

    def add(self, ts: int) -> None:
        self.count += 1
        self.last_ns = ts


@dataclass(slots=True)
class Anomaly:
    """One broken invariant: when, where, why in words, and which events prove it. Readers on other threads hold
    it while the model runs: it is only ever appended to the model's list, and changed in one way only (`revise`)."""

    rule: str
    ts_ns: int
    device: str | None
    pasid: int | None
    explanation: str
    evidence: tuple[int, ...] = ()
    severity: Severity = Severity.ERROR
    repeats: Repeats = field(default_factory=lambda: Repeats(), compare=False)  # later ones folded into this one
    machine: int = 0  # the machine it happened on (explorer/machines.py)

    def revise(self, explanation: str, evidence: Iterable[int], severity: Severity) -> None:
        """What an event after the finding taught (a group reported unanswered was answered late): the same
        finding, at the same time and place, in the words and with the evidence it would have had if the model had
        seen that event first. Its time stays, so its place among the findings does."""
        self.evidence = tuple(i for i in evidence if i >= 0)
        self.severity = severity
        self.explanation = explanation

    @property
    def count(self) -> int:
        """Findings this one stands for: itself and those folded into it."""
        return 1 + self.repeats.count

    @property
    def title(self) -> str:
        r = RULES.get(self.rule)
        return r.title if r else self.rule

    @property
    def lesson(self) -> str:
        r = RULES.get(self.rule)
        return r.lesson if r else ""

    def to_event(self) -> Event:
        return make(Kind.ANOMALY, self.ts_ns, device=self.device, pasid=self.pasid, source="simulator",
                    rule=self.rule, explanation=self.explanation, evidence=list(self.evidence),
                    severity=str(self.severity))

    def as_dict(self) -> dict[str, Any]:
        """`check --json`'s finding: `rule`, `ts_ns` and `count` as the exports name them (`kind`, `time_ns` and
        `repeats`, the count less one, are the names scripts written before them read)."""
        return {"rule": self.rule, "kind": self.rule, "title": self.title, "severity": str(self.severity),
                "ts_ns": self.ts_ns, "time_ns": self.ts_ns, "device": self.device, "pasid": self.pasid,
                "explanation": self.explanation, "evidence": list(self.evidence), "count": 1 + self.repeats.count,
                "repeats": self.repeats.count, "last_ns": self.repeats.last_ns,
                **({"machine": self.machine} if self.machine else {})}
