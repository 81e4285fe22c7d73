"""A live capture: checks the host, attaches what it permits, and hands out event rows in time order.

`Capture` is the `explorer.live_source.LiveSource` the UI and `record` consume. Each `poll` drains the ring buffer in
one batch, decodes it in bulk, adds a `lost` row per CPU whose loss counter moved, and holds the newest rows back
a few milliseconds so that records reserved on different CPUs come out in time order across batches.
"""

from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from explorer.collector import collector_paused
from explorer.errors import CaptureError
from explorer.events import R_TS, Kind, Row
from explorer.kernel_facts import facts_for, parse_version
from explorer.machines import this_machine
from explorer.recording import Header, this_host

from . import devices, loader
from .capability import (
    ATTACHED,
    LOCKDOWN,
    TRACEFS_DIRS,
    WILL_ATTACH,
    HostFacts,
    Verdict,
    header_probes,
    plan,
)
from .decode import Decoder
from .hooks import HOOKS
from .record import SLOT, Ev
from .ringbuf import RingReader

DEFAULT_RING_BYTES = 16 << 20
_TS = itemgetter(R_TS)


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """What to capture and how much to buffer."""

    pid: int | None = None  # only this process's iommufd/VFIO calls and exit (kernel functions: all)
    device: str | None = None  # only events about this device, and those about no device
    ring_bytes: int = DEFAULT_RING_BYTES  # the kernel ring buffer: a power of two, at least a page
    reorder_ns: int = 20_000_000  # rows younger than this wait for stragglers from other CPUs
    tracefs_dirs: tuple[Path, ...] = TRACEFS_DIRS
    machine: str | None = None  # the machine's name in the header (default: $PASID_EXPLORER_MACHINE, else host)


def preflight(facts: HostFacts, headers: Path | None) -> None:
    """The one-line reasons a capture cannot start, most fundamental first."""
    if not facts.root:
        raise CaptureError("live capture loads BPF programs and needs root: run it with sudo")
    if facts.tracefs is None:
        raise CaptureError("tracefs is not mounted: mount it with 'sudo mount -t tracefs nodev /sys/kernel/tracing'")
    if headers is None:
        raise CaptureError(f"no kernel headers for {facts.kernel}, which bcc compiles against: install "
                           f"'linux-headers-{facts.kernel}' (Debian, Ubuntu) or 'kernel-devel-{facts.kernel}' "
                           f"(Fedora)")


def host_plan(facts: HostFacts) -> list[Verdict]:
    """Verdicts for this host, after trying an fentry program when a kernel function could use one."""
    candidates = [h.name for h in HOOKS if h.function and h.name in facts.symbols
                  and facts.btf is not None and h.name in facts.btf.funcs]
    if facts.root and candidates:
        facts.fentry_error = loader.try_fentry(facts, candidates[0])
    return plan(facts)


@dataclass(slots=True)
class Survey:
    """What `pasid-explorer probes` reports: host facts, a verdict per hook, and why a capture cannot run."""

    facts: HostFacts
    verdicts: list[Verdict]
    problem: str | None = None  # the preflight's one-line reason, when a capture could not start


def survey(options: CaptureOptions = CaptureOptions(), load: bool = True) -> Survey:
    """Plan every hook for this host and, when `load`, compile and attach them once to confirm the plan."""
    facts = HostFacts.gather(options.tracefs_dirs)
    try:
        preflight(facts, loader.headers_dir())
        loader.import_bcc()
    except CaptureError as e:
        return Survey(facts, plan(facts), str(e))
    verdicts = host_plan(facts)
    if load and any(v.status == WILL_ATTACH for v in verdicts):
        try:
            loaded = loader.load(verdicts, facts, 1 << 16)
        except CaptureError as e:
            return Survey(facts, verdicts, str(e))
        verdicts = loaded.verdicts
        loaded.close()
    return Survey(facts, verdicts)


class Capture:
    """The probes, attached and running, as a `LiveSource`."""

    def __init__(self, options: CaptureOptions = CaptureOptions()) -> None:
        if options.ring_bytes < os.sysconf("SC_PAGE_SIZE") or options.ring_bytes & (options.ring_bytes - 1):
            raise CaptureError(f"ring buffer size {options.ring_bytes} is not a power of two of at least a page")
        self.options = options
        facts = HostFacts.gather(options.tracefs_dirs)
        preflight(facts, loader.headers_dir())
        loader.import_bcc()
        verdicts = host_plan(facts)
        if not any(v.status == WILL_ATTACH for v in verdicts):
            raise CaptureError(f"this kernel ({facts.kernel}) offers none of the hooks the capture uses: "
                               f"run 'pasid-explorer probes' for the reasons")
        self.loaded = loader.load(verdicts, facts, options.ring_bytes)
        self.verdicts = self.loaded.verdicts
        if not any(v.status == ATTACHED for v in self.verdicts):
            raise CaptureError("no probe could be attached: run 'pasid-explorer probes' for the reasons")
        if options.pid is not None:
            self.loaded.table("config")[0] = self.loaded.table("config").Leaf(options.pid)
        self.ring = RingReader(self.loaded.table("events").map_fd, options.ring_bytes)
        self.decoder = Decoder(
            device=options.device, fd_device=devices.vfio_device_of_fd,
            kernel_page_requests=self._attached(Kind.PAGE_REQUEST),
            kernel_page_responses=self._attached(Kind.PAGE_RESPONSE),
            kfunc_sources={int(v.hook.ev): v.source for v in self.verdicts if v.hook.ev is not None and
                           v.status == ATTACHED},
        )
        probes = header_probes(self.verdicts)
        probes["filters"] = {k: v for k, v in (("pid", options.pid), ("device", options.device)) if v is not None}
        probes["lockdown"] = facts.lockdown
        probes["kernel_facts"] = [f.key for f in facts_for(parse_version(facts.kernel))]
        probes["ring_bytes"] = options.ring_bytes
        host = this_host()
        self.header = Header(source="capture", host=host, clock="monotonic", probes=probes, devices=devices.scan(),
                             machines=[this_machine(options.machine, host["kernel"], host["boot_id"])])
        self.started_ns = time.monotonic_ns()
        self.delivered = 0
        self.lost = 0
        self._lost_seen: list[int] = []
        self._pending: list[Row] = []
        self._closed = False

    def _attached(self, kind: str) -> bool:
        return any(v.status == ATTACHED and kind in v.hook.kinds and not v.hook.partial for v in self.verdicts)

    @property
    def blocked_by_lockdown(self) -> list[str]:
        return [v.hook.name for v in self.verdicts if v.status == LOCKDOWN]

    # -- LiveSource ------------------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list[Row]:
        """Rows that arrived within `timeout_s`, oldest first."""
        if self._closed:
            return []
        self.ring.wait(timeout_s)
        self._collect()
        cut = bisect.bisect_right(self._pending, time.monotonic_ns() - self.options.reorder_ns, key=_TS)
        out, self._pending = self._pending[:cut], self._pending[cut:]
        self.delivered += len(out)
        return out

    def _collect(self) -> None:
        """Drain, decode and merge into the held-back rows, which stay in time order."""
        with collector_paused():
            rows = self.decoder.rows(self.ring.drain())
        rows += self._lost_rows()
        if rows:
            rows.sort(key=_TS)
            if self._pending and self._pending[-1][R_TS] > rows[0][R_TS]:
                self._pending += rows
                self._pending.sort(key=_TS)
            else:
                self._pending += rows

    def _lost_rows(self) -> list[Row]:
        """One `lost` row for each CPU whose drop counter moved since the last look."""
        per_cpu = list(self.loaded.table("lost")[0])
        if len(self._lost_seen) < len(per_cpu):
            self._lost_seen += [0] * (len(per_cpu) - len(self._lost_seen))
        now = time.monotonic_ns()
        rows = []
        for cpu, total in enumerate(per_cpu):
            delta = int(total) - self._lost_seen[cpu]
            if delta > 0:
                rows.append([now, Kind.LOST, None, None, cpu, None, None, "capture", {"count": delta}])
                self._lost_seen[cpu] = int(total)
                self.lost += delta
        return rows

    def status(self) -> str:
        elapsed = max((time.monotonic_ns() - self.started_ns) / 1e9, 1e-9)
        attached = sum(v.status == ATTACHED for v in self.verdicts)
        return (f"live · {self.delivered:,} events · {self.delivered / elapsed:,.0f}/s · lost {self.lost:,} · "
                f"{attached}/{len(self.verdicts)} hooks")

    def finish(self) -> list[Row]:
        """Stop the probes and return every row still in flight; the kernel's counts stay readable."""
        if self._closed:
            return []
        self.loaded.detach()
        for _ in range(1000):  # records reserved before the detach are committed within microseconds
            self._collect()
            if self.ring.pending_bytes() < SLOT.itemsize:
                break
            time.sleep(0.001)
        out, self._pending = self._pending, []
        self.delivered += len(out)
        return out

    def kernel_counts(self) -> list[dict[str, Any]]:
        """The in-kernel exact counts: one entry per (event type, command, process, PASID, device)."""
        out = []
        for k, v in self.loaded.table("counts").items():
            entry: dict[str, Any] = {"type": Ev(k.type).name.lower() if k.type in Ev._value2member_map_ else k.type,
                                     "count": int(v.value)}
            if k.cmd:
                entry["cmd"] = int(k.cmd)
            if k.tgid:
                entry["pid"] = int(k.tgid)
            if k.pasid != 0xFFFFFFFF:
                entry["pasid"] = int(k.pasid)
            if k.dev:
                entry["device"] = bytes(k.dev).split(b"\0", 1)[0].decode("utf-8", "replace")
            out.append(entry)
        return sorted(out, key=lambda e: -e["count"])

    def kernel_counts_missed(self) -> int:
        """Events the in-kernel counts could not hold (their table was full): the counts are short by this."""
        return int(sum(self.loaded.table("counts_missed")[0]))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.ring.close()
        self.loaded.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
