"""Whether a recording could see the PASID lifecycle at all, read from what its header says it could not see.

A kernel log, an ftrace of the iommu tracepoints, or a capture on a host where the kernel's PASID functions
cannot be probed (no kprobes, fentry refused under lockdown) shows faults on PASIDs whose allocation, bind and
attach happened unseen. The simulator then starts uncertain, as after a loss: findings a missing lifecycle
event could explain are uncertain, not errors. This module is the one place that rule lives.
"""

from __future__ import annotations

from typing import Any

from ..events import Kind
from ..kernel_facts import blind_spots, parse_version
from ..machines import Machine
from ..recording.header import LIFECYCLE, Header

# The events without which a fault, a bind or a free looks like a bug. A replace only changes the domain of a
# pair already attached, so missing one explains no finding.
LIFECYCLE_KINDS = frozenset(str(k) for k in (
    Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.SVA_BIND, Kind.SVA_UNBIND, Kind.PASID_ATTACH, Kind.PASID_DETACH))
# A capture's verdict for a kernel function this kernel does not have (probes.capability.MISSING_SYMBOL): no
# event of that kind can happen here, so none was missed.
_NOT_IN_KERNEL = "missing symbol"


def lifecycle_unobserved(header: Header, guest: Machine | None = None) -> str | None:
    """Why this recording (or the part of a merged one from `guest`, a machine other than the first) cannot show
    every PASID allocation, bind and attach; None when it can.

    The header decides: an importer's `unavailable` entry for the lifecycle, a capture's `invisible_kinds`
    naming a lifecycle kind that this kernel has but that no probe could attach to, or an imported recording
    whose header predates coverage notes (a log never shows the lifecycle). A merged recording's other machines
    have the source and probes of the recording each came from in their entries (`merge`); one merged before
    they did keeps only the first recording's, which say nothing of the others."""
    if guest is None:
        return _unobserved(header.source, header.kernel, header.probes or {})
    probes = guest.extra.get("probes")
    if probes is None:
        return "merged by a version that kept no probe notes of this machine: what its capture saw is not known"
    if not _notes_readable(probes):  # (the header reader refuses the same of the first machine's)
        return "the probe notes of the recording it came from are unreadable"
    return _unobserved(str(guest.extra.get("source", "")), guest.kernel, probes)


def starts_midstream(header: Header, guest: Machine | None = None) -> bool:
    """Whether this recording (or the part of a merged one from `guest`) began with the kernel's PASID state
    already there: a capture does, a scenario starts empty. A machine merged before its source was kept is
    taken to be the first's kind."""
    return str(guest.extra.get("source", header.source) if guest is not None else header.source) == "capture"


def _notes_readable(probes: Any) -> bool:
    """Probe notes of the shape recording.header requires of a header's: `attached` a list, `unavailable` and
    `invisible_kinds` maps."""
    return isinstance(probes, dict) and isinstance(probes.get("attached", []), list) and \
        isinstance(probes.get("unavailable", {}), dict) and isinstance(probes.get("invisible_kinds", {}), dict)


def _unobserved(source: str, kernel: str | None, probes: dict[str, Any]) -> str | None:
    unavailable = probes.get("unavailable") or {}
    if isinstance(unavailable, dict):
        for name in (LIFECYCLE, *sorted(LIFECYCLE_KINDS)):
            if name in unavailable:
                return f"{name}: {unavailable[name]}"
    if source == "capture":
        version = parse_version(kernel)
        # hook -> 'status: reason'; a function this kernel was built without is no blind spot
        hooks_gone = {h: str(why) for h, why in unavailable.items() if not str(why).startswith(_NOT_IN_KERNEL)} \
            if isinstance(unavailable, dict) else {}
        blind = {k: why for k, why in blind_spots(version, hooks_gone).items() if k in LIFECYCLE_KINDS}
        if blind:
            kind = sorted(blind)[0]
            return f"this kernel's {kind} is a blind spot: {blind[kind]}"
    invisible = probes.get("invisible_kinds") or {}
    missed = sorted(k for k in LIFECYCLE_KINDS & set(invisible) if not _absent_from_kernel(str(invisible[k])))
    if missed:
        return f"the capture could not see {', '.join(missed)} ({invisible[missed[0]]})"
    if source.startswith("import:") and not probes:
        return f"imported from a log ({source.removeprefix('import:')}), which shows no PASID lifecycle"
    return None


def _absent_from_kernel(why: str) -> bool:
    """Is every hook for the kind (listed 'hook: status; ...') a function this kernel does not have?"""
    statuses = [part.split(": ", 1)[1] if ": " in part else part for part in why.split("; ")]
    return bool(statuses) and all(s == _NOT_IN_KERNEL for s in statuses)
