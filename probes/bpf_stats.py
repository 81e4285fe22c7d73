"""What the capture's own BPF programs cost, per hook: the kernel's run-time statistics, as bpftop shows them.

The kernel counts each program's runs and the time spent in them (`run_cnt`, `run_time_ns` in struct
bpf_prog_info) only while statistics are enabled: `BPF_ENABLE_STATS` turns them on for as long as the returned
fd stays open (Linux 5.8+), and the `kernel.bpf_stats_enabled` sysctl turns them on for everyone. Counting costs
two clock reads per run, so it is on only while a capture runs or `probes` measures. Needs no bcc: it reads any
program fd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
# include/uapi/linux/bpf.h, struct bpf_prog_info: run_time_ns and run_cnt follow prog_tags (5.1+)
INFO_BYTES = 256
RUN_TIME_AT = 192
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280, "loongarch64": 280}

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"the bpf() syscall number of {platform.machine()} is not known here")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(ret)


class StatsSwitch:
    """Run-time statistics kept on while this is open; `problem` says plainly why they are not, when not."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.problem: str | None = None
        try:
            self.fd = _bpf(BPF_ENABLE_STATS, ctypes.create_string_buffer(struct.pack("<I", BPF_STATS_RUN_TIME), 8))
        except OSError as e:
            if _sysctl_on():
                return  # someone (bpftop, an admin) has them on for everyone
            self.problem = _why(e)

    @property
    def on(self) -> bool:
        return self.problem is None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _sysctl_on() -> bool:
    try:
        return SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


def _why(e: OSError) -> str:
    if e.errno == errno.EPERM:
        return "BPF run-time statistics need CAP_SYS_ADMIN (root)"
    if e.errno == errno.EINVAL:
        return (f"this kernel ({platform.release()}) cannot count BPF run time (BPF_ENABLE_STATS came in Linux "
                f"5.8; 'sysctl kernel.bpf_stats_enabled=1' where it exists)")
    if e.errno == errno.EBUSY:
        return "BPF run-time statistics are held by another tool"
    return f"BPF run-time statistics could not be enabled: {e.strerror or e}"


@dataclass(frozen=True, slots=True)
class ProgStats:
    runs: int
    run_ns: int

    def __sub__(self, other: ProgStats) -> ProgStats:
        return ProgStats(self.runs - other.runs, self.run_ns - other.run_ns)

    def __add__(self, other: ProgStats) -> ProgStats:
        return ProgStats(self.runs + other.runs, self.run_ns + other.run_ns)

    @property
    def ns_per_run(self) -> float | None:
        return self.run_ns / self.runs if self.runs else None


def prog_stats(fd: int) -> ProgStats:
    """A loaded program's runs and time in it so far (zeros while statistics are off)."""
    info = ctypes.create_string_buffer(INFO_BYTES)
    attr = ctypes.create_string_buffer(struct.pack("<IIQ", fd, INFO_BYTES, ctypes.addressof(info)), 16)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    returned = struct.unpack_from("<I", attr.raw, 4)[0]
    if returned < RUN_TIME_AT + 16:
        return ProgStats(0, 0)  # a kernel older than run-time statistics
    run_ns, runs = struct.unpack_from("<QQ", info.raw, RUN_TIME_AT)
    return ProgStats(runs, run_ns)


def hook_of(program: str) -> str | None:
    """The hook a bcc program name belongs to: tracepoint__sys__event, kp_fn / kr_fn, kfunc__[vmlinux__]fn."""
    if program.startswith("tracepoint__"):
        parts = program.split("__")
        return f"{parts[1]}:{parts[2]}" if len(parts) == 3 else None
    if program.startswith(("kp_", "kr_")):
        return program[3:]
    if program.startswith(("kfunc__", "kretfunc__")):
        return program.split("__")[-1]
    return None


def per_hook(programs: dict[str, int]) -> dict[str, ProgStats]:
    """Statistics summed per hook, from program name -> fd (an entry and a return program are one hook)."""
    out: dict[str, ProgStats] = {}
    for name, fd in programs.items():
        hook = hook_of(name)
        if hook is not None:
            out[hook] = out.get(hook, ProgStats(0, 0)) + prog_stats(fd)
    return out


def describe(stats: dict[str, ProgStats], seconds: float) -> list[tuple[str, int, float | None, float]]:
    """(hook, runs, ns per run, share of one CPU) for each hook, the costliest first."""
    rows = [(h, s.runs, s.ns_per_run, s.run_ns / max(seconds, 1e-9) / 1e9) for h, s in stats.items()]
    return sorted(rows, key=lambda r: -r[3])
