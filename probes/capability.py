"""What this host lets the capture see: facts read from the kernel, and for every hook a verdict with its reason.

`HostFacts.gather()` reads tracefs, /proc/kallsyms, the lockdown level, BTF and the kernel-header locations;
`plan()` turns facts into one `Verdict` per hook without touching the kernel, so the rules are unit-tested with
made-up facts. The loader then attaches what the plan allows and reports what really happened.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from explorer.events import Kind

from .btf import VMLINUX_BTF, Btf, BtfError
from .hooks import ALWAYS_VISIBLE, HOOKS, NOT_CAPTURED, Hook
from .kernel_funcs import function_flags

TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
LOCKDOWN_FILE = Path("/sys/kernel/security/lockdown")

# Verdicts, as the `probes` report prints them.
ATTACHED = "attached"
WILL_ATTACH = "available"  # planned, not yet tried
MISSING = "missing"
MISSING_SYMBOL = "missing symbol"
FORMAT_DIFFERS = "format differs"
LOCKDOWN = "blocked by lockdown"
NO_KPROBES = "no kprobes"
NEEDS_ROOT = "needs root"
NOT_TRACEABLE = "not traceable"
NO_BTF = "no BTF"
FAILED = "failed"


@dataclass(slots=True)
class HostFacts:
    """The kernel's answers to the questions the plan asks; each has a safe 'unknown' value."""

    kernel: str = ""
    root: bool = False
    tracefs: Path | None = None  # a tracefs directory with events/, None when tracefs is not mounted
    lockdown: str | None = None  # none / integrity / confidentiality; None when securityfs is not mounted
    kprobes: bool = False  # the kernel can create kprobes (kprobe_events file or kprobe PMU)
    btf: Btf | None = None
    symbols: frozenset[str] = frozenset()  # hook functions in /proc/kallsyms
    traceable: frozenset[str] | None = None  # hook functions in available_filter_functions (None: unreadable)
    fentry_error: str | None = "not tried"  # None: an fentry program loaded here; else why it did not
    formats: dict[str, frozenset[str] | None] = field(default_factory=dict)  # tracepoint -> fields (None: absent)

    @classmethod
    def gather(cls, tracefs_dirs: Iterable[Path] = TRACEFS_DIRS) -> HostFacts:
        facts = cls(kernel=platform.release(), root=os.geteuid() == 0)
        facts.tracefs = next((d for d in tracefs_dirs if _is_dir(d / "events")), None)
        try:
            text = LOCKDOWN_FILE.read_text()
            facts.lockdown = text[text.index("[") + 1:text.index("]")]
        except (OSError, ValueError):
            facts.lockdown = None
        facts.kprobes = _exists(Path("/sys/bus/event_source/devices/kprobe")) or bool(
            facts.tracefs and _exists(facts.tracefs / "kprobe_events"))
        try:
            facts.btf = Btf.load(VMLINUX_BTF)
        except BtfError:
            facts.btf = None
        wanted = {h.name for h in HOOKS if h.function}
        facts.symbols = frozenset(_names_in(Path("/proc/kallsyms"), wanted, column=2))
        if facts.tracefs is not None:
            found = _names_in(facts.tracefs / "available_filter_functions", wanted, column=0)
            facts.traceable = None if found is None else frozenset(found)
            facts.formats = {h.name: read_format(facts.tracefs, h) for h in HOOKS if not h.function}
        return facts

    @property
    def lockdown_active(self) -> bool:
        return self.lockdown not in (None, "none")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # tracefs is root-only: EACCES says nothing about whether it is mounted
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _names_in(path: Path, wanted: set[str], column: int) -> set[str] | None:
    """Which of `wanted` appear as the `column`-th word of a line of `path` (None when it cannot be read)."""
    try:
        with path.open() as f:
            found = set()
            for line in f:
                parts = line.split()
                if len(parts) > column and parts[column] in wanted:
                    found.add(parts[column])
            return found
    except OSError:
        return None


def read_format(tracefs: Path, hook: Hook) -> frozenset[str] | None:
    """A tracepoint's field names from its format file; None when the kernel does not have it."""
    try:
        text = (tracefs / "events" / hook.system / hook.event / "format").read_text()
    except OSError:
        return None
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("field:"):
            decl = line[len("field:"):].split(";", 1)[0]
            names.add(decl.split()[-1].split("[", 1)[0])
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of one hook here: a status from the list above, a reason, and how it attaches."""

    hook: Hook
    status: str
    reason: str = ""
    method: str = ""  # tracepoint, fentry or kprobe
    cflags: tuple[str, ...] = ()  # what the BPF program needs to include this hook

    @property
    def planned(self) -> bool:
        return self.status in (WILL_ATTACH, ATTACHED)

    @property
    def source(self) -> str:
        """The `source` of events from this hook: the tracepoint, or method:function."""
        return self.hook.name if not self.hook.function else f"{self.method}:{self.hook.name}"


def plan(facts: HostFacts, hooks: Iterable[Hook] = HOOKS) -> list[Verdict]:
    """A verdict for every hook, from the facts alone."""
    return [_tracepoint(facts, h) if not h.function else _function(facts, h) for h in hooks]


def _tracepoint(facts: HostFacts, hook: Hook) -> Verdict:
    if not facts.root:
        return Verdict(hook, NEEDS_ROOT, "BPF programs can only be loaded as root")
    if facts.tracefs is None:
        return Verdict(hook, MISSING, "tracefs is not mounted")
    fields = facts.formats.get(hook.name)
    if fields is None:
        return Verdict(hook, MISSING, "this kernel has no such tracepoint")
    if facts.lockdown == "confidentiality":
        # LOCKDOWN_BPF_READ_KERNEL is a confidentiality reason: tracing programs lose bpf_probe_read_kernel{,_str},
        # which these read device names and descriptors with (include/linux/security.h, kernel/trace/bpf_trace.c)
        return Verdict(hook, LOCKDOWN, "lockdown=confidentiality withholds bpf_probe_read_kernel from tracing "
                                       "programs")
    lacking = [f for f in hook.fields if f not in fields]
    if lacking:
        return Verdict(hook, FORMAT_DIFFERS, f"its format lacks {', '.join(lacking)}")
    return Verdict(hook, WILL_ATTACH, method="tracepoint", cflags=(f"-DHAVE_TP_{hook.system}__{hook.event}",))


def _function(facts: HostFacts, hook: Hook) -> Verdict:
    if not facts.root:
        return Verdict(hook, NEEDS_ROOT, "BPF programs can only be loaded as root")
    if hook.name not in facts.symbols:
        return Verdict(hook, MISSING_SYMBOL, "not in /proc/kallsyms (not built into this kernel)")
    if facts.traceable is not None and hook.name not in facts.traceable:
        return Verdict(hook, NOT_TRACEABLE, "not in available_filter_functions (inlined or notrace)")
    if facts.btf is None:
        return Verdict(hook, NO_BTF, "no /sys/kernel/btf/vmlinux: struct offsets and fentry need BTF")
    flags, lacking = function_flags(facts.btf, hook, facts.kernel)
    if lacking:
        return Verdict(hook, FORMAT_DIFFERS, f"BTF lacks {lacking}, which the probe reads")
    if facts.fentry_error is None and hook.name in facts.btf.funcs:
        return Verdict(hook, WILL_ATTACH, method="fentry", cflags=("-DUSE_FENTRY", *flags))
    fentry_why = f"fentry: {facts.fentry_error}"
    if not facts.kprobes:
        status = LOCKDOWN if "lockdown" in (facts.fentry_error or "") else NO_KPROBES
        return Verdict(hook, status, f"{fentry_why}; kprobes: not built into this kernel")
    if facts.lockdown == "confidentiality":  # LOCKDOWN_KPROBES is past LOCKDOWN_INTEGRITY_MAX: integrity allows
        return Verdict(hook, LOCKDOWN, f"{fentry_why}; kprobes: refused under lockdown={facts.lockdown}")
    return Verdict(hook, WILL_ATTACH, method="kprobe", cflags=flags)


def explain_fentry_failure(error: str, facts: HostFacts) -> str:
    """Why an fentry program would not load, in the report's words."""
    if not facts.root:
        return "needs root"
    if "ermission" in error or "not permitted" in error or "super-user" in error:
        if facts.lockdown_active:
            return f"blocked by lockdown ({facts.lockdown})"
        return f"refused by the kernel ({error})"
    return error


@dataclass(frozen=True, slots=True)
class Coverage:
    """Per event kind: visible, partly visible (with why), or invisible (with why)."""

    visible: tuple[str, ...]
    partial: dict[str, str]
    invisible: dict[str, str]


def coverage(verdicts: Iterable[Verdict]) -> Coverage:
    verdicts = list(verdicts)
    visible, partial, invisible = list(ALWAYS_VISIBLE), {}, {}
    for kind in Kind:
        if kind in ALWAYS_VISIBLE or kind in NOT_CAPTURED:
            continue
        mine = [v for v in verdicts if kind in v.hook.kinds]
        full = [v for v in mine if not v.hook.partial]
        if any(v.planned for v in full):
            visible.append(str(kind))
            continue
        why = "; ".join(f"{v.hook.name}: {v.status}" for v in full) or "no hook shows it"
        if any(v.planned for v in mine):
            partial[str(kind)] = f"only for faults handled through iommufd fault queues ({why})"
        else:
            invisible[str(kind)] = why
    return Coverage(tuple(str(k) for k in visible), partial, invisible)


def header_probes(verdicts: Iterable[Verdict]) -> dict[str, object]:
    """The recording header's `probes` entry: what was attached, what was not and why, what is invisible."""
    verdicts = list(verdicts)
    cov = coverage(verdicts)
    return {
        "attached": [v.source for v in verdicts if v.status == ATTACHED],
        "unavailable": {v.hook.name: f"{v.status}: {v.reason}" for v in verdicts if v.status != ATTACHED},
        "invisible_kinds": cov.invisible,
        "partial_kinds": cov.partial,
    }
