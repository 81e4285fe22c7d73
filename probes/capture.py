"""A live capture: checks the host, attaches what it permits, and hands out event rows in time order.

`Capture` is the `explorer.live_source.LiveSource` the UI and `record` consume. Each poll drains the ring buffer in
one batch, decodes it in bulk into encoded rows (`PackedRows`: no Python object per event), adds a `lost` row per
CPU whose loss counter moved, and holds the newest rows back a few milliseconds so that records reserved on
different CPUs come out in time order across batches. `record` stores the encoded rows as they are; the UI
decodes them (`poll`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from explorer.collector import collector_paused
from explorer.errors import CaptureError
from explorer.events import Kind, Row
from explorer.kernel_facts import facts_for, parse_version
from explorer.machines import this_machine
from explorer.recording import Header, this_host
from explorer.recording.encoded import PackedRows

from . import devices, loader
from .bpf_stats import ProgStats, StatsSwitch, describe, per_hook
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
    costs: dict[str, ProgStats] | None = None  # each attached hook's BPF runs and time over `measured_s`
    measured_s: float = 0.0
    stats_problem: str | None = None  # why the BPF run-time statistics could not be read


def survey(options: CaptureOptions = CaptureOptions(), load: bool = True, measure_s: float = 0.0) -> Survey:
    """Plan every hook for this host and, when `load`, compile and attach them once to confirm the plan, and
    measure for `measure_s` seconds what the attached programs cost on this host's own activity."""
    facts = HostFacts.gather(options.tracefs_dirs)
    try:
        preflight(facts, loader.headers_dir())
        loader.import_bcc()
    except CaptureError as e:
        return Survey(facts, plan(facts), str(e))
    verdicts = host_plan(facts)
    if not (load and any(v.status == WILL_ATTACH for v in verdicts)):
        return Survey(facts, verdicts)
    switch = StatsSwitch()
    try:
        loaded = loader.load(verdicts, facts, 1 << 16)
    except CaptureError as e:
        switch.close()
        return Survey(facts, verdicts, str(e))
    out = Survey(facts, loaded.verdicts, stats_problem=switch.problem)
    try:
        if measure_s > 0 and switch.on:
            before = attached_costs(loaded)
            start = time.monotonic()
            time.sleep(measure_s)
            out.measured_s = time.monotonic() - start
            out.costs = {h: s - before.get(h, ProgStats(0, 0)) for h, s in attached_costs(loaded).items()}
    finally:
        loaded.close()
        switch.close()
    return out


def attached_costs(loaded: loader.Loaded) -> dict[str, ProgStats]:
    """Runs and time so far of each attached hook's programs."""
    attached = {v.hook.name for v in loaded.verdicts if v.status == ATTACHED}
    return {h: s for h, s in per_hook(loaded.programs()).items() if h in attached}


def merge(pending: PackedRows, batch: PackedRows) -> PackedRows:
    """Time-ordered `pending` and `batch` as one time-ordered batch. Records reserved on other CPUs overlap the
    end of `pending` by microseconds: only that overlap is sorted, never the whole backlog (which, under a flood,
    would cost more than the drain keeping up)."""
    if not len(pending) or pending.ts[-1] <= batch.ts[0]:
        return PackedRows.concat([pending, batch])
    cut = int(np.searchsorted(pending.ts, batch.ts[0], side="right"))
    overlap = PackedRows.concat([pending.slice(cut, len(pending)), batch]).sorted()
    return PackedRows.concat([pending.slice(0, cut), overlap])


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
        self.stats = StatsSwitch()  # before loading, so that every run counts
        self.loaded = loader.load(verdicts, facts, options.ring_bytes, options.pid)
        self.verdicts = self.loaded.verdicts
        if not any(v.status == ATTACHED for v in self.verdicts):
            raise CaptureError("no probe could be attached: run 'pasid-explorer probes' for the reasons")
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
        self._costs0 = attached_costs(self.loaded)
        self._cost_line = (0, "")
        self.delivered = 0
        self.lost = 0
        self._lost_seen: list[int] = []
        self._pending = PackedRows.empty()  # rows held back for stragglers from other CPUs
        self._closed = False

    def _attached(self, kind: str) -> bool:
        return any(v.status == ATTACHED and kind in v.hook.kinds and not v.hook.partial for v in self.verdicts)

    @property
    def blocked_by_lockdown(self) -> list[str]:
        return [v.hook.name for v in self.verdicts if v.status == LOCKDOWN]

    # -- LiveSource ------------------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list[Row]:
        """Rows that arrived within `timeout_s`, oldest first."""
        return self.poll_packed(timeout_s).rows()

    def poll_packed(self, timeout_s: float) -> PackedRows:
        """The rows that arrived within `timeout_s`, oldest first, still encoded: no Python object per event."""
        if self._closed:
            return PackedRows.empty()
        self.ring.wait(timeout_s)
        self._collect()
        pending = self._pending
        cut = int(np.searchsorted(pending.ts, time.monotonic_ns() - self.options.reorder_ns, side="right"))
        out, self._pending = pending.slice(0, cut), pending.slice(cut, len(pending))
        self.delivered += len(out)
        return out

    def _collect(self) -> None:
        """Drain, decode and merge into the held-back rows, which stay in time order."""
        with collector_paused(), self.ring.records() as recs:
            batch = self.decoder.packed(recs)
        lost = self._lost_rows(int(batch.ts[-1]) if len(batch) else time.monotonic_ns())
        if lost:
            batch = PackedRows.concat([batch, PackedRows.of_rows(lost)])
        if len(batch):
            self._pending = merge(self._pending, batch)

    def _lost_rows(self, now: int) -> list[Row]:
        """One `lost` row for each CPU whose drop counter moved since the last look, at `now`: the newest record
        drained, after which the ring had no room (a later time would put the next batch out of order)."""
        per_cpu = list(self.loaded.table("lost")[0])
        if len(self._lost_seen) < len(per_cpu):
            self._lost_seen += [0] * (len(per_cpu) - len(self._lost_seen))
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
                f"{attached}/{len(self.verdicts)} hooks · {self.cost_line()}")

    def costs(self) -> dict[str, ProgStats]:
        """What each attached hook's BPF programs have cost since the capture started (empty when the kernel's
        run-time statistics are off: `stats.problem` says why)."""
        if not self.stats.on or self._closed:
            return {}
        return {h: s - self._costs0.get(h, ProgStats(0, 0)) for h, s in attached_costs(self.loaded).items()}

    def cost_line(self) -> str:
        """The probes' own cost for a status line: BPF CPU share and the costliest hook, refreshed each second."""
        now = time.monotonic_ns()
        if now - self._cost_line[0] < 1_000_000_000 and self._cost_line[1]:
            return self._cost_line[1]
        if not self.stats.on:
            line = f"BPF cost unknown: {self.stats.problem}"
        else:
            rows = describe(self.costs(), (now - self.started_ns) / 1e9)
            total = sum(r[3] for r in rows)
            line = f"BPF {total:.1%} CPU"
            if rows and rows[0][2] is not None:
                hook, runs, ns, _ = rows[0]
                line += f" (most: {hook} {ns:,.0f} ns x {runs:,})"
        self._cost_line = (now, line)
        return line

    def finish(self) -> PackedRows:
        """Stop the probes and return every row still in flight; the kernel's counts stay readable."""
        if self._closed:
            return PackedRows.empty()
        self.loaded.detach()
        for _ in range(1000):  # records reserved before the detach are committed within microseconds
            self._collect()
            if self.ring.pending_bytes() < SLOT.itemsize:
                break
            time.sleep(0.001)
        out, self._pending = self._pending, PackedRows.empty()
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
        self.stats.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
