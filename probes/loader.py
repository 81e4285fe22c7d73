"""Compiles the BPF programs with bcc and attaches them: the one module of the project that imports bcc.

The BPF C lives in .bpf.c files beside this module; they are compiled as one text (common.bpf.c first) with -D
flags from the plan: ring size, event numbers, the tracepoints this kernel has, and for kernel functions the
attach method and BTF offsets. Tracepoint and fentry programs attach as bcc loads them; kprobes are attached
here one by one, so that one refusal costs one hook, not the capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from explorer.errors import CaptureError

from . import record
from .capability import ATTACHED, FAILED, HostFacts, Verdict, explain_fentry_failure
from .decode import FAULT_READ_CHUNK, FAULT_RECS_PER_IO, FAULT_WRITE_CHUNK
from .uapi_decode import ARG_BYTES, VFIO_BASE, VFIO_COMMANDS

PROBES_DIR = Path(__file__).resolve().parent
PROGRAMS = ("common.bpf.c", "capture.bpf.c")
KERNEL_FUNCS = "kernel_funcs.bpf.c"
INSTALL_BCC = ("bcc is not importable from this Python: install it with 'apt install python3-bpfcc' (Debian, "
               "Ubuntu) or 'dnf install python3-bcc' (Fedora); a virtualenv needs --system-site-packages")
IOMMU_FAULT_QUEUE_ALLOC = 0x3B8E
VFIO_TRACKED = sum(1 << (nr - VFIO_BASE) for nr in VFIO_COMMANDS)  # the VFIO numbers the ioctl probe keeps
QI_PGRP_RESP_TYPE = 0x9


def import_bcc() -> Any:
    """The bcc module, or a CaptureError that says which package provides it."""
    try:
        import bcc
    except ImportError:
        raise CaptureError(INSTALL_BCC) from None
    if not hasattr(bcc, "BPF"):  # PyPI's unrelated "bcc" package shadows the real one
        raise CaptureError(f"the 'bcc' module at {getattr(bcc, '__file__', '?')} is not the BPF Compiler "
                           f"Collection; {INSTALL_BCC}")
    return bcc


def headers_dir(release: str | None = None) -> Path | None:
    """Where bcc will find this kernel's headers, or None."""
    release = release or platform.release()
    for p in (Path(f"/lib/modules/{release}/build"), Path("/sys/kernel/kheaders.tar.xz")):
        if p.exists():
            return p
    return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """libbpf prints the verifier's complaints to fd 2; a trial that is expected to fail should not."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def try_fentry(facts: HostFacts, function: str) -> str | None:
    """Load a do-nothing fentry program on `function`: None when the kernel allows it, else why not."""
    bcc = import_bcc()
    try:
        with _quiet_stderr():
            b = bcc.BPF(text=f"KFUNC_PROBE({function}) {{ return 0; }}".encode())
        b.cleanup()
        return None
    except Exception as e:  # bcc raises bare Exception for every failure
        return explain_fentry_failure(str(e), facts)


def cflags(verdicts: list[Verdict], ring_bytes: int, facts: HostFacts, pid: int | None = None) -> list[str]:
    """Every -D flag the programs need for this plan; `pid` keeps only that process's calls."""
    flags = [f"-I{PROBES_DIR}", f"-DTGID_FILTER={pid or 0}",
             f"-DRINGBUF_PAGES={ring_bytes // os.sysconf('SC_PAGE_SIZE')}",
             f"-DWAKEUP_EVERY={max(1, ring_bytes // record.SLOT.itemsize // 8 // (os.cpu_count() or 1))}",
             f"-DVFIO_BASE={VFIO_BASE}", f"-DVFIO_TRACKED={VFIO_TRACKED:#x}",
             f"-DIOMMU_FAULT_QUEUE_ALLOC={IOMMU_FAULT_QUEUE_ALLOC}",
             f"-DFAULT_RECS_PER_IO={FAULT_RECS_PER_IO}", f"-DFAULT_READ_CHUNK={FAULT_READ_CHUNK}",
             f"-DFAULT_WRITE_CHUNK={FAULT_WRITE_CHUNK}", f"-DQI_PGRP_RESP_TYPE={QI_PGRP_RESP_TYPE}",
             *record.cflags()]
    assert ARG_BYTES <= record.TEXT_BYTES, "a uapi struct no longer fits a record"
    if "group_dead" in (facts.formats.get("sched:sched_process_exit") or ()):
        flags.append("-DHAVE_GROUP_DEAD")
    elif facts.btf is not None:  # else signal->live, which do_exit() has brought to 0 when the group is dead
        sig, live = facts.btf.member_offset("task_struct", "signal"), facts.btf.member_offset("signal_struct", "live")
        if sig is not None and live is not None:
            flags += [f"-DOFF_TASK_SIGNAL={sig}", f"-DOFF_SIGNAL_LIVE={live}"]
    for v in verdicts:
        if v.planned:
            flags += [f for f in v.cflags if f not in flags]
    return flags


def source(verdicts: list[Verdict]) -> str:
    names = list(PROGRAMS)
    if any(v.planned and v.hook.function for v in verdicts):
        names.append(KERNEL_FUNCS)
    return "\n".join((PROBES_DIR / n).read_text() for n in names)


@dataclasses.dataclass(slots=True)
class Loaded:
    """The compiled, attached programs and what became of each hook."""

    bpf: Any
    verdicts: list[Verdict]

    def table(self, name: str) -> Any:
        return self.bpf[name.encode()]

    def programs(self) -> dict[str, int]:
        """The loaded BPF programs: bcc's name -> fd (for their run-time statistics)."""
        return {name.decode(): fn.fd for name, fn in self.bpf.funcs.items()}

    def detach(self) -> None:
        """Stop every probe but keep the maps readable (the last counts are read after this)."""
        b = self.bpf
        for tp in list(b.tracepoint_fds):
            b.detach_tracepoint(tp)
        for ev in list(b.kprobe_fds):
            b.detach_kprobe_event(ev)
        for fn in list(b.kfunc_entry_fds):
            b.detach_kfunc(fn)
        for fn in list(b.kfunc_exit_fds):
            b.detach_kretfunc(fn)

    def close(self) -> None:
        self.bpf.cleanup()


def load(verdicts: list[Verdict], facts: HostFacts, ring_bytes: int, pid: int | None = None) -> Loaded:
    """Compile and attach everything the plan allows; hooks that fail to attach get FAILED and a reason."""
    bcc = import_bcc()
    flags = cflags(verdicts, ring_bytes, facts, pid)
    try:
        with _quiet_stderr():
            b = bcc.BPF(text=source(verdicts).encode(), cflags=flags)
    except Exception as e:
        functions = [v for v in verdicts if v.planned and v.hook.function]
        if not functions:
            raise CaptureError(f"the capture's BPF programs do not load on this kernel: {e}") from None
        # Kernel-function programs are the fragile part: keep the tracepoints, report the functions.
        why = f"{e}".splitlines()[0]
        verdicts = [dataclasses.replace(v, status=FAILED, reason=why) if v in functions else v for v in verdicts]
        return load(verdicts, facts, ring_bytes, pid)
    record.check_against(b[b"rec_layout"].Leaf)
    out = []
    for v in verdicts:
        if not v.planned:
            out.append(v)
        elif v.method == "kprobe":
            out.append(_attach_kprobe(b, v))
        else:
            out.append(dataclasses.replace(v, status=ATTACHED))
    return Loaded(b, out)


def _attach_kprobe(b: Any, v: Verdict) -> Verdict:
    fn = v.hook.name
    try:
        with _quiet_stderr():
            b.attach_kprobe(event=fn.encode(), fn_name=f"kp_{fn}".encode())
            if v.hook.returns:
                b.attach_kretprobe(event=fn.encode(), fn_name=f"kr_{fn}".encode())
    except Exception as e:
        return dataclasses.replace(v, status=FAILED, reason=str(e).splitlines()[0])
    return dataclasses.replace(v, status=ATTACHED)

