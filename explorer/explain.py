"""Plain-language accounts of events in the kernel's terms, from the simulator's state around them.

The UI's event panel shows these; so can any script. Each account says what the kernel did, which of the two
ways the PASID came from, and for anomalies what broke and which earlier events prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from .events import AllocPath, Event, Kind, ResponseCode, perm_text
from .index import RecordingIndex
from .simulator import Anomaly, SimState
from .summary import evidence_brief
from .uapi import VFIO_DEVICE_ATTACH_PASID
from .units import fmt_ns

_PATHS = {
    AllocPath.SVA: "from an mm: a process's first SVA bind allocates its one global PASID, and every later bind of "
                   "that mm, on any device, reuses it",
    AllocPath.IOMMUFD: "through iommufd, the one user interface that creates and controls PASIDs (for a process "
                       "or a virtual machine)",
    AllocPath.DRIVER: "by a kernel driver for its own use (iommu_alloc_global_pasid()); it still comes from the "
                      "one global space, not from a private one",
    AllocPath.IOASID: "by the 5.x ioasid allocator, which older kernels used for both SVA and guest PASIDs",
}
_DOMAINS = {
    "sva": "an SVA domain: the device walks the process's own CPU page table",
    "paging": "a paging domain: an I/O page table (an iommufd IOAS or a kernel DMA domain)",
    "nested": "a nested domain: the guest's stage-1 page table on top of the VM's stage-2, so this is a VM's PASID",
    "identity": "the identity domain: DMA addresses are physical addresses",
    "blocked": "the blocked domain: all DMA is refused",
}
_RESPONSES = {
    ResponseCode.SUCCESS: "success: the page is now present, the device retries its access",
    ResponseCode.INVALID: "invalid request: the page cannot be made present; the device gets an error for this "
                          "access (no retry) but keeps working",
    ResponseCode.FAILURE: "response failure: a catastrophic error; the device disables its Page Request Interface "
                          "until software resets it",
}
_ROUTES = {
    "kernel": "the kernel: its I/O page-fault handler (iopf) resolves it (for SVA, in the bound process's mm)",
    "user": "user space: the group is queued on an iommufd fault queue and answered by writing to its fd",
    "guest": "the guest: the VMM forwards the request into the VM and relays the guest's answer back",
}


_EVIDENCE: WeakKeyDictionary[RecordingIndex, tuple[int, dict[int, list[Anomaly]]]] = WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Account:
    """What the event panel shows: a headline and paragraphs."""

    headline: str
    paragraphs: tuple[str, ...]


def prose(text: str) -> str:
    """Scenario text as one flowing paragraph: YAML block scalars keep their line breaks, a panel should not."""
    return " ".join(text.split())


def model_progress(index: RecordingIndex) -> str:
    """How far a model still running has got, in words for the panels."""
    return f"the model has replayed {index.modelled / index.n:.0%} of the recording so far"


def explain(index: RecordingIndex, i: int, shown: Anomaly | None = None) -> Account:
    """Explain event `i` of `index` using the simulator's state just after it; `shown`, an anomaly already on
    screen beside it, is left out of the account."""
    ev = index.event(i)
    if not index.covers(ev.ts_ns):
        return Account(ev.brief(), (f"{model_progress(index).capitalize()}: what this event did, and any anomaly "
                                    "it proves, shows when it gets here.",))
    st = index.state_at(ev.ts_ns)
    paras = [p for p in _describe(ev, st, index) if p]
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


def uncertainty(index: RecordingIndex, st: SimState) -> str:
    """Why the model cannot be sure at this point: a recording blind to the lifecycle, or events lost."""
    why = []
    if index.sim.unobserved:
        why.append(f"this recording cannot show the PASID lifecycle ({index.sim.unobserved})")
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
    k, f, p, dev = ev.kind, ev.fields, ev.pasid, ev.device
    live = st.pasids.get(p) if p is not None else None
    if k == Kind.PASID_ALLOC:
        path = f.get("path", "?")
        out = [f"PASID {p} was allocated {_PATHS.get(path, f'by path {path!r}')}."]
        if f.get("error"):
            return [f"The allocation failed with error {f['error']}: no PASID was handed out."]
        out.append(f"Owner: {f.get('owner') or ev.comm or '?'}" + (f", for VM {f['vm']}" if f.get("vm") else "")
                   + f". The allocator hands out the lowest free number, so after this the next would be "
                   f"{st.lowest_free()}.")
        return out
    if k == Kind.PASID_FREE:
        when = ("An SVA PASID is freed when its mm goes away (mm_pasid_drop), not at the last unbind."
                if index.sim.policy.sva_free_at == "mmdrop" else
                "On this kernel an SVA PASID is freed at the process's last unbind.")
        return [f"PASID {p} went back to the global allocator; the number can now be handed to anyone.",
                when if f.get("path") in (None, AllocPath.SVA) else ""]
    if k == Kind.SVA_BIND:
        mm = f.get("mm")
        b = st.binds.get((mm, dev)) if mm is not None else None
        first = b is not None and b.refs == 1 and not (set(st.binds_of(mm)) - {dev})
        reuse = (f"It reuses the mm's PASID {p}, allocated {_since(index, live.since_ns)} by {live.owner}: one "
                 "PASID per mm, whatever the device." if live is not None and not first else
                 f"This was the mm's first bind, so it allocated the mm's PASID {p}.")
        refs = f" The bind handle now holds {b.refs} reference(s)." if b is not None else ""
        return [f"{ev.comm or 'A process'} bound its address space (mm {mm}) to {dev} for SVA. {reuse}{refs}"]
    if k == Kind.SVA_UNBIND:
        keep = ("The PASID stays allocated until the mm exits." if index.sim.policy.sva_free_at == "mmdrop"
                else "On this kernel the last unbind frees the PASID.")
        return [f"{dev} dropped a bind of mm {f.get('mm')} on PASID {p}. {keep}"]
    if k == Kind.MM_EXIT:
        return [f"The address space of {ev.comm or 'a process'} (mm {f.get('mm')}) was torn down. Its SVA PASID, if "
                "it had one, is freed now; binds still held on it are a driver's bug."]
    if k in (Kind.PASID_ATTACH, Kind.PASID_REPLACE):
        dt = f.get("domain_type", "?")
        verb = "now points at" if k == Kind.PASID_REPLACE else "was attached to"
        out = [f"({dev}, PASID {p}) {verb} {_DOMAINS.get(dt, f'a {dt} domain')}."]
        if f.get("guest_pasid") is not None:
            out.append(f"The guest calls this PASID {f['guest_pasid']}; the host's number is {p}.")
        att = st.attachments.get((dev, p)) if p is not None and dev is not None else None
        if att is not None:
            out.append(f"Its page requests are answered by {_ROUTES.get(att.route, att.route)}.")
        if live is not None:
            out.append(f"PASID {p} was allocated {_since(index, live.since_ns)} via {live.path} for {live.owner}.")
        return out
    if k == Kind.PASID_DETACH:
        return [f"({dev}, PASID {p}) no longer has a domain: DMA tagged with this PASID is now blocked."]
    if k == Kind.PAGE_REQUEST:
        g = next((g for (d, _prg, gp), g in st.groups.items() if d == dev and gp == p and _prg == f.get("prg")), None)
        route = g.route if g is not None else "kernel"
        last = ("It carries Last: the group is complete and now waits for one response."
                if f.get("last") else "More requests of this group may follow; the one with Last closes it.")
        return [f"{dev} asked the IOMMU to make {f.get('addr', 0):#x} present ({perm_text(f.get('perm', 0))}) "
                f"for PASID {p} in page-request group {f.get('prg')}. {last}",
                f"Who answers: {_ROUTES.get(route, route)}. The device stalls this work until it does."]
    if k == Kind.PAGE_RESPONSE:
        code = f.get("code", 0)
        text = _RESPONSES.get(code, f"code {code}") if code in (0, 1, 2) else f"code {code}"
        return [f"Group {f.get('prg')} on ({dev}, PASID {p}) was answered by {f.get('by') or 'the kernel'}: {text}."]
    if k == Kind.FAULT and f.get("pasid_space"):
        vm = f" (GPU VM {f['vmid']})" if f.get("vmid") is not None else ""
        return [f"A fault in {dev}'s own page tables{vm}, on {f['pasid_space']}'s PASID {p}: "
                f"{f.get('reason') or 'no reason given'}.",
                f"{f['pasid_space']} numbers these PASIDs itself (amdgpu_pasid_alloc() in amdgpu_ids.c), one per GPU "
                f"VM: PASID {p} is not an entry of the IOMMU's global space, so the model checks it against no "
                "allocation."]
    if k == Kind.FAULT:
        att = st.attachments.get((dev, p)) if p is not None and dev is not None else None
        where = ("with no PASID (the device's own requester ID)" if p is None else
                 f"on PASID {p}, attached to a {att.domain_type} domain" if att is not None else
                 f"on PASID {p}, which has no domain attached on {dev}")
        code = f" ({f.get('vendor', 'vendor')} code {f['code']:#x})" if f.get("code") is not None else ""
        return [f"An unrecoverable DMA fault from {dev} {where}: {f.get('reason') or 'no reason given'}{code}.",
                "Unlike a page request, nobody can fix this access up: the IOMMU blocked it and logged it."]
    if k == Kind.UAPI:
        args = f.get("args") or {}
        ret = f.get("ret")
        res = "" if ret is None else " It succeeded." if ret >= 0 else f" The kernel refused it ({ret})."
        extra = (" It asked for a PASID: the device's (RID, PASID) is attached, not just its RID."
                 if args.get("flags", 0) & VFIO_DEVICE_ATTACH_PASID and "ATTACH" in str(f.get("name")) else "")
        return [f"{ev.comm or 'A process'} called {f.get('name')} on fd {f.get('fd', '?')}: the user interface "
                f"(iommufd / VFIO) at work.{extra}{res}"]
    if k == Kind.LOST:
        return [f"The capture dropped {f.get('count', 0):,} event(s) here. From now on the model may miss "
                "allocations, binds or responses, so its findings are marked uncertain."]
    if k == Kind.MARKER:
        return [prose(str(f.get("text", "")))]
    if k in (Kind.MAP, Kind.UNMAP):
        return [f"DMA mapping traffic in domain {f.get('domain', '?')}: iova {f.get('iova', 0):#x}, "
                f"{f.get('size', 0):,} bytes. Not PASID state, shown for context."]
    return [f"A {k} event." + ("" if ev.known_kind else " This version does not know this kind; its fields are "
                               "kept as recorded.")]
