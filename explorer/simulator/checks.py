"""The invariants the simulator checks, each with a title, a severity and a plain-language lesson.

An `Anomaly` is one broken invariant at one time, with the explanation filled in and the indices of the events
that prove it, so the UI can jump to the evidence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
       "A PASID is only valid between its allocation and its free; after the free the number can be handed "
       "to someone else, so a device still using it can reach another process's memory."),
    _r("use_unallocated", "PASID used but never allocated", E,
       "Every PASID comes from the global allocator, either through an mm (SVA) or through iommufd. No driver "
       "or VFIO has a private PASID space, so a number nobody allocated points at a driver or firmware bug."),
    _r("double_free", "PASID freed twice", E,
       "The allocator hands a freed number to the next caller; freeing it again can free someone else's PASID."),
    _r("free_unallocated", "PASID freed but never allocated", E,
       "Only an allocated PASID can be freed."),
    _r("free_while_attached", "PASID freed while still attached", E,
       "Detach before free: a (device, PASID) still pointing at a domain after the free lets the device use "
       "a number the allocator may give away."),
    _r("reserved_pasid", "reserved PASID 0 used as a PASID", E,
       "PASID 0 is IOMMU_NO_PASID (Intel's RID2PASID): it means 'no PASID' and is never allocated."),
    _r("beyond_width", "PASID beyond the device's width", E,
       "A device's PASID capability bounds the numbers it can carry (max PASIDs = 1 << width); the kernel "
       "refuses to attach a larger one."),
    _r("space_exhausted", "PASID space exhausted", W,
       "The allocator found no free PASID in the device's range: narrow devices run out first, since one "
       "global space serves every device."),
    _r("second_sva_pasid", "mm with two SVA PASIDs", E,
       "An mm has at most one SVA PASID: the first bind allocates it and every later bind, on any device, "
       "reuses it."),
    _r("attach_conflict", "(device, PASID) attached twice", E,
       "A (device, PASID) has at most one domain; changing it is a replace, not a second attach."),
    _r("detach_unattached", "detach of a (device, PASID) that was not attached", E,
       "Attach before use, detach once."),
    _r("fault_unattached", "page request or fault on an unattached PASID", E,
       "Faults, page requests and responses hang off a (device, PASID) pair with a domain attached. A fault on "
       "a pair with none points at a driver or firmware bug (or a device still using a torn-down PASID)."),
    _r("response_without_group", "page response with no outstanding group", E,
       "A page response answers exactly one outstanding page-request group (device, PRG index, PASID)."),
    _r("duplicate_response", "page-request group answered twice", E,
       "Each group is answered once; a second response may complete a later group that reuses the index."),
    _r("request_after_failure", "page request after Response Failure", W,
       "A PRG response of Response Failure (1111b) disables the function's Page Request Interface (PCIe 10.4.2.1); "
       "it must send no request until software enables PRI again. The kernel sends it for requests it cannot "
       "take at all (AMD ppr.c invalid PPRs, 6.10+; a core handler error). A request after it is the device's fault, "
       "or PRI was re-enabled unseen (a reset)."),
    _r("unanswered_group", "page-request group left unanswered", W,
       "The device stalls until the host answers the group: an unanswered group ages until the device's "
       "timeout, and work behind it stops."),
    _r("mm_exit_with_binds", "process exited but its binds were held on", W,
       "When a process exits, its drivers should unbind it soon after (when its files close). Binds held on "
       "keep the mm's PASID attached to a dead address space, and the PASID is never freed."),
    _r("malformed_event", "event the model cannot read: state uncertain from here", U,
       "An event whose fields are missing or of the wrong type (a damaged or hand-edited recording, a writer's "
       "bug) cannot be applied to the model; it counts as a lost event, so later findings are uncertain."),
    _r("events_lost", "events lost: state uncertain from here", U,
       "The capture dropped events, so the reconstructed state may miss allocations, binds or responses. "
       "Findings that a lost event could explain are marked uncertain instead of reported as bugs."),
)}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One broken invariant: when, where, why in words, and which events prove it."""

    rule: str
    ts_ns: int
    device: str | None
    pasid: int | None
    explanation: str
    evidence: tuple[int, ...] = ()
    severity: Severity = Severity.ERROR

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
        return {"kind": self.rule, "title": self.title, "severity": str(self.severity), "time_ns": self.ts_ns,
                "device": self.device, "pasid": self.pasid, "explanation": self.explanation,
                "evidence": list(self.evidence)}
