"""Plain-language accounts of events in the kernel's terms, from the simulator's state around them.

The UI's event panel shows these; so can any script. Each account says what the kernel did, where the PASID came
from (the kernel's allocator, or user space's choice for one device), and for anomalies what broke and which
earlier events prove it. One describer per event kind, in `_DESCRIBE`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from .events import R_KIND, AllocPath, Event, Kind, ResponseCode, perm_text
from .index import RecordingIndex
from .simulator import Anomaly, SimState
from .summary import evidence_brief
from .uapi import VFIO_DEVICE_ATTACH_PASID
from .units import fmt_ns

_PATHS = {
    AllocPath.SVA: "from an mm: a process's first SVA bind allocates its one global PASID, and every later bind of "
                   "that mm, on any device, reuses it (for the mm's whole life since 5.18; before, until its last "
                   "unbind)",
    AllocPath.DRIVER: "by a kernel driver for its own use (iommu_alloc_global_pasid(), 6.6+), from the same global "
                      "IDA as SVA",
    AllocPath.IOASID: "by the ioasid allocator (5.5-6.3), which SVA binds took their PASIDs from",
    AllocPath.IOMMUFD: "as an earlier version of this tool recorded it: iommufd allocates no PASID (user space "
                       "chooses the number per device, 6.15+), so this path names no kernel allocator",
}
_BIND_REFUSALS = {  # why iommu_sva_bind_device() returns each error (drivers/iommu/iommu-sva.c unless named)
    errno.EOVERFLOW: "the mm already has its PASID, from an earlier bind, and it is beyond this device's max_pasids "
                     "(iommu_alloc_mm_data() 6.8+, iommu_sva_alloc_pasid() before)",
    errno.ENOSPC: "this was the mm's first bind and no PASID was free below this device's max_pasids, or the device "
                  "takes none at all (iommu_alloc_global_pasid() returns IOMMU_PASID_INVALID, 6.6+; the IDA's "
                  "ida_alloc_range() ran out, 6.4-6.5)",
    errno.ENOMEM: "the kernel was out of memory, or, on a kernel of the ioasid allocator, the PASID space was full "
                  "(iommu_sva_alloc_pasid() turned ioasid_alloc()'s failure into -ENOMEM, up to 6.3)",
    errno.EBUSY: "the (device, PASID) slot holds another domain (iommu_attach_device_pasid(), drivers/iommu/iommu.c "
                 "6.2+), or the mm's page tables cannot be shared with a device (arch_pgtable_dma_compat(): x86 "
                 "LAM, 6.4+)",
}
_DOMAINS = {
    "sva": "an SVA domain: the device walks the process's own CPU page table",
    "paging": "a paging domain: an I/O page table (an iommufd IOAS or a kernel DMA domain)",
    "nested": "a nested domain: a guest's stage-1 page table over the VMM's nesting parent (stage 2)",
    "identity": "the identity domain: DMA addresses are physical addresses",
    "blocked": "the blocked domain: all DMA is refused",
}
_RESPONSES = {
    ResponseCode.SUCCESS: "success: the page is now present, the device retries its access",
    ResponseCode.INVALID: "invalid request: the page cannot be made present; the device gets an error for this "
                          "access (no retry) but keeps working",
    ResponseCode.FAILURE: "response failure: the function's Page Request Interface is disabled until software "
                          "enables it again (PCIe 10.4.2.1); a fault fd cannot send it, only the kernel does",
}
_ROUTES = {
    "kernel": "the kernel: its I/O page-fault handler (iopf) resolves it in the bound process's mm",
    "user": "user space: the group is queued on an iommufd fault queue and answered by writing to its fd",
    "guest": "the guest: the VMM reads it from its fault queue, forwards it into the VM and relays the answer",
    "auto": "nobody: no fault handler takes it, so the kernel answers Invalid Request itself (iopf_error_response() "
            "6.11+, the IOMMU driver before); the drivers' page_response hooks (6.9+) and VT-d's qi_submit show it",
}


_EVIDENCE: WeakKeyDictionary[RecordingIndex, tuple[int, dict[int, list[Anomaly]]]] = WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Account:
    """What the event panel shows: a headline and paragraphs."""

    headline: str
    paragraphs: tuple[str, ...]


_FOLDED = re.compile("[ \t\n]+")


def prose(text: str) -> str:
    """Scenario text as one flowing paragraph: YAML block scalars keep their line breaks, a panel should not. Only
    spaces, tabs and newlines fold: a carriage return or another control character in a stranger's text stays, to be
    shown escaped (`str.split` would drop it without a trace)."""
    return _FOLDED.sub(" ", text).strip(" ")


def model_progress(index: RecordingIndex) -> str:
    """How far a model still running has got, in words for the panels."""
    return f"the model has replayed {index.modelled / index.n:.0%} of the recording so far"


def explain(index: RecordingIndex, i: int, shown: Anomaly | None = None,
            state_at: Callable[[int], SimState] | None = None) -> Account:
    """Explain event `i` of `index` using the simulator's state just after it; `shown`, an anomaly already on
    screen beside it, is left out of the account. `state_at` seeks the model (the index's own by default; the
    explorer passes one that keeps the last state, which its allocator panel asked for at the same time)."""
    ev = index.event(i)
    if not index.covers(ev.ts_ns):
        return Account(ev.brief(), (f"{model_progress(index).capitalize()}: what this event did, and any anomaly "
                                    "it proves, shows when it gets here.",))
    st = (state_at or index.state_at)(ev.ts_ns)
    st = st.of_machine(ev.machine) or SimState(machine=ev.machine)  # a merged recording's guest: its own state
    paras = [p for p in _describe(ev, st, index) if p]
    if ev.get("same_as"):
        paras.append(_passed_on(index, ev))
    for a in anomalies_of(index, i):
        if a is shown:
            continue
        proves = a.evidence[-1] != i and a.ts_ns != ev.ts_ns
        paras.append(anomaly_text(a, index, f"EVIDENCE for the anomaly at +{fmt_ns(a.ts_ns - index.start_ns)}"
                                  if proves else "ANOMALY"))
    if st.uncertain and ev.kind != Kind.LOST:
        paras.append(f"State is uncertain: {uncertainty(index, st)}. What is shown may miss allocations, binds or "
                     "responses, so findings are marked uncertain rather than reported as bugs.")
    headline = ev.brief()
    if ev.kind == Kind.MARKER:
        step = ev.get("step")
        headline = " ".join(x for x in (f"Step {step}:" if step is not None else "", ev.get("title") or "") if x)
    return Account(headline or "Marker", tuple(paras))


def _passed_on(index: RecordingIndex, ev: Event) -> str:
    """A merged recording's link (`same_as`, explorer/merge.py): this group's event on the other machine."""
    ts, machine, device = ev.get("same_as")
    names = [m.name for m in index.header.machines]
    other = names[machine] if machine < len(names) else f"machine {machine}"
    what = "page request" if ev.kind == Kind.PAGE_REQUEST else "page response"
    found = linked_event(index, ev)
    at = f" (#{found})" if found is not None else ""
    request = ev.kind == Kind.PAGE_REQUEST
    if machine == 0:
        way = "the VMM read it from the host's fault queue and injected it here" if request else \
            "the VMM carried this answer back to the host"
    else:
        way = f"the VMM injected it into {other}" if request else f"it is {other}'s answer, carried back by the VMM"
    return (f"LINKED: the same group as the {'host' if machine == 0 else other}'s {what} on {device} at "
            f"+{fmt_ns(ts - index.start_ns)}{at}: {way}. (Linked only where it is the one match, within the "
            "link window, after the clocks' alignment.)")


def linked_event(index: RecordingIndex, ev: Event) -> int | None:
    """The index of the event a merged recording links `ev` to (its `same_as`), or None when not found."""
    ts, _, device = ev.get("same_as")
    for t, key in enumerate(index.tracks):
        if key.device == device and key.pasid == ev.pasid:
            at = int(index.track_search(t, ts))
            for j in index.track_events(t)[at:at + 8].tolist():
                if int(index.ts[j]) == ts and index.row(j)[R_KIND] == ev.kind:
                    return j
    return None


def uncertainty(index: RecordingIndex, st: SimState) -> str:
    """Why the model cannot be sure at this point: a recording blind to the lifecycle, or events lost."""
    why = []
    unobserved = index.sim.unobserved_of(st.machine)
    if unobserved:
        why.append(f"this recording cannot show the PASID lifecycle ({unobserved})")
    if st.lost:
        since = "?" if st.uncertain_since is None else fmt_ns(st.uncertain_since - index.start_ns)
        why.append(f"{st.lost:,} event(s) lost since +{since}")
    return "; ".join(why) or "state uncertain"


def anomalies_of(index: RecordingIndex, i: int) -> list[Anomaly]:
    """Anomalies whose evidence includes event `i` (before or after the finding's own time)."""
    found = index.anomalies
    cached = _EVIDENCE.get(index)
    if cached is None or cached[0] != len(found):
        by_event: dict[int, list[Anomaly]] = {}
        for a in found:
            for j in a.evidence:
                by_event.setdefault(j, []).append(a)
        cached = _EVIDENCE[index] = (len(found), by_event)
    return cached[1].get(i, [])


def anomaly_text(a: Anomaly, index: RecordingIndex, role: str = "ANOMALY") -> str:
    proof = "; ".join(evidence_brief(index, j) for j in a.evidence[:4] if 0 <= j < index.n)
    more = f" (and {len(a.evidence) - 4} more)" if len(a.evidence) > 4 else ""
    return (f"{role} ({a.severity}) {a.title}: {a.explanation} Why it matters: {a.lesson}"
            + (f" Evidence: {proof}{more}." if proof else ""))


def _since(index: RecordingIndex, ts: int) -> str:
    return f"+{fmt_ns(ts - index.start_ns)}"


def _describe(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    """The paragraphs for one event, by its kind (unknown kinds get a line saying so)."""
    describe = _DESCRIBE.get(ev.kind)
    if describe is None:
        return [f"A {ev.kind} event." + ("" if ev.known_kind else " This version does not know this kind; its "
                                         "fields are kept as recorded.")]
    return describe(ev, st, index)


def _errno(code: object) -> str:
    """A failed call's result as the kernel source names it (-28 (-ENOSPC)); a number no errno has, as it is."""
    name = errno.errorcode.get(-code) if isinstance(code, int) else None
    return f"{code} (-{name})" if name else str(code)


def _free_rule(index: RecordingIndex) -> str:
    if index.sim.policy.sva_free_at == "mmdrop":
        return ("Since 5.18 an mm's SVA PASID is freed by mm_pasid_drop() from __mmdrop(): after the process exits "
                "and after the last SVA domain drops its reference, that is after the last unbind.")
    return "Before 5.18 an mm's SVA PASID was freed at its last unbind."


def _alloc(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f, p = ev.fields, ev.pasid
    if f.get("error"):
        return [f"The allocation failed with error {_errno(f['error'])}: no PASID was handed out."]
    path = f.get("path", "?")
    return [f"PASID {p} was allocated {_PATHS.get(path, f'by path {path!r}')}.",
            f"Owner: {f.get('owner') or ev.comm or '?'}" + (f", for VM {f['vm']}" if f.get("vm") else "")
            + f". The allocator hands out the lowest free number, so after this the next would be "
            f"{st.lowest_free()}."]


def _free(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    seen = f" (also seen by {', '.join(ev.get('seen_by'))}: one free)" if ev.get("seen_by") else ""
    # (5.5-6.3 an mm's SVA PASID goes back with ioasid_free() or ioasid_put(), whose probes name no mm)
    ioasid = ev.get("path") == AllocPath.IOASID
    return [f"PASID {ev.pasid} went back to the {'ioasid' if ioasid else 'global'} allocator{seen}; the number can "
            "now be handed to anyone. A device that still has it attached keeps pointing at its old domain until it "
            "is detached.", _free_rule(index) if ioasid or ev.get("path") in (None, AllocPath.SVA) else ""]


def _bind(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f, p, dev = ev.fields, ev.pasid, ev.device
    live = st.pasids.get(p) if p is not None else None
    mm = f.get("mm")
    if f.get("error"):
        why = _BIND_REFUSALS.get(-f["error"]) if isinstance(f["error"], int) else None
        return [f"{ev.comm or 'A process'} tried to bind mm {mm} to {dev}; the kernel refused with "
                f"{_errno(f['error'])}{f': {why}' if why else ''}."]
    b = st.binds.get((mm, dev)) if mm is not None else None
    first = b is not None and b.refs == 1 and not (set(st.binds_of(mm)) - {dev})
    reuse = (f"It reuses the mm's PASID {p}, allocated {_since(index, live.since_ns)} by {live.owner}: one "
             "PASID per mm, whatever the device." if live is not None and not first else
             f"This was the mm's first bind, so it allocated the mm's PASID {p}.")
    refs = f" The bind handle now holds {b.refs} reference(s)." if b is not None else ""
    return [f"{ev.comm or 'A process'} bound its address space (mm {mm}) to {dev} for SVA. {reuse}{refs}"]


def _unbind(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    keep = ("The PASID stays with the mm until the mm is dropped." if index.sim.policy.sva_free_at == "mmdrop"
            else "On this kernel (before 5.18) the last unbind frees the PASID.")
    return [f"{ev.device} dropped a bind of mm {ev.get('mm')} on PASID {ev.pasid}; the last one detaches the SVA "
            f"domain. {keep}"]


def _exit(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    return [f"{ev.comm or 'A process'} exited (sched_process_exit fires after exit_mm(), before exit_files()): "
            "binds its drivers hold usually go as its files close right after. " + _free_rule(index)]


def _attach(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f, p, dev = ev.fields, ev.pasid, ev.device
    dt = f.get("domain_type", "?")
    verb = "now points at" if ev.kind == Kind.PASID_REPLACE else "was attached to"
    out = [f"({dev}, PASID {p}) {verb} {_DOMAINS.get(dt, f'a {dt} domain')}."]
    live = st.pasids.get(p) if p is not None else None
    att = st.attachments.get((dev, p)) if p is not None and dev is not None else None
    if att is not None and not att.global_pasid:
        out.append(f"PASID {p} did not come from the kernel's allocator: user space (a VMM, through iommufd/VFIO, "
                   "6.15+) chose it for this device. It lives in the device's PASID table beside SVA's, where a "
                   "number already taken is refused with -EBUSY.")
    elif live is not None:
        out.append(f"PASID {p} was allocated {_since(index, live.since_ns)} via {live.path} for {live.owner}.")
    if f.get("guest_pasid") is not None:
        out.append(f"The recording names a guest number {f['guest_pasid']}; nothing in mainline translates a "
                   "guest's PASID, so the device carries the number attached here.")
    if att is not None:
        out.append(f"Its page requests are answered by {_ROUTES.get(att.route, att.route)}.")
    return out


def _detach(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    return [f"({ev.device}, PASID {ev.pasid}) no longer has a domain: DMA tagged with this PASID is now blocked. "
            "Groups still pending on it are drained or answered Invalid Request by the kernel "
            "(iommufd_auto_response_faults(), VT-d's PRQ drain)."]


def _request(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f, p, dev = ev.fields, ev.pasid, ev.device
    g = st.groups.find(dev, f.get("prg"), p)
    route = g.route if g is not None else "kernel"
    last = ("It carries Last: the group is complete and now waits for one response."
            if f.get("last") else "More requests of this group may follow; the one with Last closes it.")
    seen = f" (VT-d's {', '.join(f['seen_by'])} saw the same descriptor.)" if f.get("seen_by") else ""
    return [f"{dev} asked the IOMMU to make {f.get('addr', 0):#x} present ({perm_text(f.get('perm', 0))}) "
            f"for PASID {p} in page-request group {f.get('prg')}. {last}{seen}",
            f"Who answers: {_ROUTES.get(route, route)}. The device holds this group until then; nothing times it "
            "out."]


def _response(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f = ev.fields
    code = f.get("code", 0)
    text = _RESPONSES.get(code, f"code {code}") if code in (0, 1, 2) else f"code {code}"
    seen = f" The descriptor sent was seen too ({', '.join(f['seen_by'])})." if f.get("seen_by") else ""
    return [f"Group {f.get('prg')} on ({ev.device}, PASID {ev.pasid}) was answered by {f.get('by') or 'the kernel'}: "
            f"{text}.{seen}"]


def _fault(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f, p, dev = ev.fields, ev.pasid, ev.device
    if f.get("pasid_space"):
        vm = f" (GPU VM {f['vmid']})" if f.get("vmid") is not None else ""
        return [f"A fault in {dev}'s own page tables{vm}, on {f['pasid_space']}'s PASID {p}: "
                f"{f.get('reason') or 'no reason given'}.",
                f"{f['pasid_space']} numbers these PASIDs itself (amdgpu_pasid_alloc() in amdgpu_ids.c), one per GPU "
                f"VM: PASID {p} is not an entry of the IOMMU's global space, so the model checks it against no "
                "allocation."]
    att = st.attachments.get((dev, p)) if p is not None and dev is not None else None
    where = ("with no PASID (the device's own requester ID)" if p is None else
             f"on PASID {p}, attached to a {att.domain_type} domain" if att is not None else
             f"on PASID {p}, with no domain attached on {dev} as far as this recording shows")
    code = f" ({f.get('vendor', 'vendor')} code {f['code']:#x})" if f.get("code") is not None else ""
    return [f"A DMA fault the IOMMU reported from {dev} {where}: {f.get('reason') or 'no reason given'}{code}.",
            "Most faults are unrecoverable: the IOMMU blocked the access and logged it. A stalled SMMUv3 event is "
            "a page request instead, printed because no handler took it, and the kernel has already terminated it."]


def _uapi(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f = ev.fields
    args = f.get("args") or {}
    ret = f.get("ret")
    res = "" if ret is None else " It succeeded." if ret >= 0 else f" The kernel refused it ({_errno(ret)})."
    extra = (f" It attaches the device at PASID {args.get('pasid')}, a number the caller chose: iommufd allocates "
             "none." if args.get("flags", 0) & VFIO_DEVICE_ATTACH_PASID and "ATTACH" in str(f.get("name")) else "")
    return [f"{ev.comm or 'A process'} called {f.get('name')} on fd {f.get('fd', '?')}: the user interface "
            f"(iommufd / VFIO) at work.{extra}{res}"]


def _lost(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    return [f"The capture dropped {ev.get('count', 0):,} event(s) here. From now on the model may miss "
            "allocations, binds or responses, so its findings are marked uncertain."]


def _marker(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    return [prose(str(ev.get("text", "")))]


def _mapping(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    f = ev.fields
    return [f"DMA mapping traffic in domain {f.get('domain', '?')}: iova {f.get('iova', 0):#x}, "
            f"{f.get('size', 0):,} bytes. Not PASID state, shown for context."]


def _group(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    verb = "joined" if ev.kind == Kind.GROUP_ADD else "left"
    return [f"{ev.device} {verb} IOMMU group {ev.get('group', '?')}. The devices of one group share one "
            "pasid_array (6.2+, iommu.c): a PASID attached on one is taken for all of them."]


def _rid_attach(ev: Event, st: SimState, index: RecordingIndex) -> list[str]:
    return [f"{ev.device}'s own (RID) domain changed: DMA without a PASID now goes through it. With a user-managed "
            "PASID table (SMMUv3 nesting) a nested domain here takes every PASID's page requests too."]


_DESCRIBE: dict[str, Callable[[Event, SimState, RecordingIndex], list[str]]] = {
    Kind.PASID_ALLOC: _alloc, Kind.PASID_FREE: _free, Kind.SVA_BIND: _bind, Kind.SVA_UNBIND: _unbind,
    Kind.MM_EXIT: _exit, Kind.PASID_ATTACH: _attach, Kind.PASID_REPLACE: _attach, Kind.PASID_DETACH: _detach,
    Kind.PAGE_REQUEST: _request, Kind.PAGE_RESPONSE: _response, Kind.FAULT: _fault, Kind.UAPI: _uapi,
    Kind.LOST: _lost, Kind.MARKER: _marker, Kind.MAP: _mapping, Kind.UNMAP: _mapping, Kind.GROUP_ADD: _group,
    Kind.GROUP_REMOVE: _group, Kind.DOMAIN_ATTACH: _rid_attach,
}
