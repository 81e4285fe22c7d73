"""A seeded generator of large, realistic recordings: the shape of a busy SVA and VFIO host.

What dominates a real trace is DMA mapping traffic (iommu:map/unmap) and the VMMs' IOAS map calls; page
requests and their responses come next; PASID lifecycles (processes binding accelerators, VMMs attaching their
guests' own PASID numbers through iommufd) are rare but are what the simulator tracks. Every lifecycle is well
formed, so the only anomalies are the slow page responses the generator plants on purpose (and losses, if asked for).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from .events import R_DEVICE, R_FIELDS, R_PASID, R_TS, AllocPath, DomainType, Kind, Row
from .recording import DeviceInfo, Header, RecordingWriter
from .uapi import command_number

SVA_DEVICES = (("0000:6a:01.0", "idxd"), ("0000:e7:01.0", "idxd"), ("0000:6a:02.0", "iaa_crypto"))
VM_DEVICES = (("0000:17:00.0", "vfio-pci"), ("0000:18:00.0", "vfio-pci"))
NIC = ("0000:3d:00.0", "ice")
SRC = "workload"
IOAS_MAP, IOAS_UNMAP = command_number("IOMMU_IOAS_MAP"), command_number("IOMMU_IOAS_UNMAP")
ATTACH_PT = command_number("VFIO_DEVICE_ATTACH_IOMMUFD_PT")


def workload_devices() -> list[DeviceInfo]:
    return ([DeviceInfo(name, 20, True, True, drv) for name, drv in SVA_DEVICES + VM_DEVICES]
            + [DeviceInfo(NIC[0], 0, False, True, NIC[1])])


@dataclass(slots=True)
class _Proc:
    pid: int
    comm: str
    pasid: int
    ready_ns: int  # its first bind has completed: its devices may fault from here on
    devices: set[str] = field(default_factory=set)
    bound_ns: int = 0  # its latest bind's time: it exits after it


@dataclass(slots=True)
class _Workload:
    rng: random.Random
    slow_every: int
    loss_every: int
    t: int = 1_000_000_000
    free: list[int] = field(default_factory=list)  # freed PASIDs (a heap) below `next_pasid`
    freeing: list[tuple[int, int]] = field(default_factory=list)  # (time of the free event, PASID), a heap
    next_pasid: int = 1
    procs: dict[int, _Proc] = field(default_factory=dict)
    vm_pasids: dict[str, tuple[int, int]] = field(default_factory=dict)  # VM device -> (host PASID, ready)
    pending: dict[tuple[str, int, int], int] = field(default_factory=dict)  # open groups -> first ts
    busy: Counter[tuple[str, int]] = field(default_factory=Counter)  # open groups per (device, PASID)
    _targets: list[tuple[str, int]] | None = None  # (device, PASID) pairs that can fault; None: recompute
    prg: dict[str, int] = field(default_factory=dict)
    queue: list[tuple[int, int, list[Any]]] = field(default_factory=list)
    seq: count = field(default_factory=count)  # type: ignore[type-arg]
    groups: int = 0
    pids: count = field(default_factory=lambda: count(20000))  # type: ignore[type-arg]

    # -- PASIDs the way the IDA hands them out: lowest free first ---------------------------------------------
    def alloc(self) -> int:
        while self.freeing and self.freeing[0][0] < self.t:
            heapq.heappush(self.free, heapq.heappop(self.freeing)[1])
        if self.free:
            return heapq.heappop(self.free)
        self.next_pasid += 1
        return self.next_pasid - 1

    def release(self, pasid: int, at: int) -> None:
        """The PASID returns to the allocator when its free event happens, not before."""
        heapq.heappush(self.freeing, (at, pasid))

    def later(self, ts: int, row: Row) -> None:
        heapq.heappush(self.queue, (ts, next(self.seq), row))

    # -- one step of the host's life: returns the rows that happened at self.t ---------------------------------
    def step(self) -> list[Row]:
        rng = self.rng
        self.t += int(rng.expovariate(1 / 2000)) + 1
        t = self.t
        r = rng.random()
        if r < 0.56:
            return self.dma(t)
        if r < 0.64:
            return self.vmm_map(t)
        if r < 0.83:
            return self.page_requests(t)
        if r < 0.835:
            return self.fault(t)
        if r < 0.99:
            return self.dma(t)
        return self.lifecycle(t)

    def dma(self, t: int) -> list[Row]:
        iova = self.rng.randrange(0x1000, 1 << 40) & ~0xFFF
        size = 4096 << self.rng.randrange(0, 5)
        return [[t, Kind.MAP.value, None, None, self.rng.randrange(2), None, None, SRC,
                 {"iova": iova, "size": size, "paddr": self.rng.randrange(1 << 36) & ~0xFFF}],
                [t + 900 + self.rng.randrange(4000), Kind.UNMAP.value, None, None, self.rng.randrange(2), None, None,
                 SRC, {"iova": iova, "size": size, "unmapped": size}]]

    def vmm_map(self, t: int) -> list[Row]:
        pid = 6100 + self.rng.randrange(2)
        unmap = self.rng.random() < 0.5
        iova = self.rng.randrange(1 << 32) & ~0xFFFFF
        return [[t, Kind.UAPI.value, None, None, self.rng.randrange(2), pid, "qemu-system-x86", SRC,
                 {"cmd": IOAS_UNMAP if unmap else IOAS_MAP, "name": "IOMMU_IOAS_UNMAP" if unmap else "IOMMU_IOAS_MAP",
                  "fd": 21, "args": {"size": 40, "ioas_id": 1, "iova": iova, "length": 0x200000}, "ret": 0}]]

    def page_requests(self, t: int) -> list[Row]:
        if self._targets is None:
            self._targets = [(d, p.pasid, p.ready_ns) for p in self.procs.values() for d in sorted(p.devices)]
            self._targets += [(d, pasid, ready) for d, (pasid, ready) in sorted(self.vm_pasids.items())]
        targets = self._targets
        if not targets:
            return self.lifecycle(t)
        dev, pasid, ready = targets[self.rng.randrange(len(targets))]
        if ready > t:
            return self.dma(t)
        prg = self.prg.get(dev, 0)
        while (dev, prg, pasid) in self.pending:
            prg = (prg + 1) % 512
        self.prg[dev] = (prg + 1) % 512
        n = 1 + (self.rng.random() < 0.3) + (self.rng.random() < 0.1)
        rows = []
        addr = (0x7F00_0000_0000 + self.rng.randrange(1 << 32)) & ~0xFFF
        for i in range(n):
            rows.append([t + i * 300, Kind.PAGE_REQUEST.value, dev, pasid, self.rng.randrange(2), None, None, SRC,
                         {"prg": prg, "addr": addr + i * 4096, "perm": self.rng.choice((1, 3)), "last": i == n - 1,
                          "needs_pasid": True}])
        self.groups += 1
        slow = self.slow_every and self.groups % self.slow_every == 0
        delay = 120_000_000 if slow else int(self.rng.lognormvariate(9.5, 0.8))
        by = "guest" if dev in self.vm_pasids else "kernel"
        code = 1 if self.rng.random() < 0.01 else 0
        self.pending[(dev, prg, pasid)] = t
        self.busy[(dev, pasid)] += 1
        self.later(t + n * 300 + delay, [0, Kind.PAGE_RESPONSE.value, dev, pasid, None, None, None, SRC,
                                         {"prg": prg, "code": code, "by": by}])
        return rows

    def fault(self, t: int) -> list[Row]:
        dev = VM_DEVICES[self.rng.randrange(len(VM_DEVICES))][0]
        pasid, ready = self.vm_pasids.get(dev, (None, 0))
        if ready > t:
            pasid = None
        return [[t, Kind.FAULT.value, dev, pasid, self.rng.randrange(2), None, None, SRC,
                 {"addr": self.rng.randrange(1 << 40) & ~0xFFF, "reason": "Present bit in first-level PTE clear",
                  "code": 0x71, "vendor": "intel", "access": "write"}]]

    def lifecycle(self, t: int) -> list[Row]:
        rng = self.rng
        self._targets = None
        if self.loss_every and rng.randrange(self.loss_every) == 0:
            lost = {"count": rng.randrange(1, 64)}
            return [[t, Kind.LOST.value, None, None, rng.randrange(2), None, None, SRC, lost]]
        if len(self.vm_pasids) < len(VM_DEVICES) and rng.random() < 0.2:
            return self.vm_start(t)
        if self.procs and (len(self.procs) > 48 or rng.random() < 0.45):
            return self.proc_step(t)
        return self.proc_start(t)

    def proc_start(self, t: int) -> list[Row]:
        pid = next(self.pids)
        comm = f"dsa-worker-{pid % 100}"
        pasid = self.alloc()
        dev = SVA_DEVICES[self.rng.randrange(len(SVA_DEVICES))][0]
        self.procs[pid] = _Proc(pid, comm, pasid, t + 1000, {dev})
        owner = f"pid {pid} ({comm})"
        cpu = self.rng.randrange(2)
        return [[t, Kind.PASID_ALLOC.value, dev, pasid, cpu, pid, comm, SRC,
                 {"path": AllocPath.SVA.value, "owner": owner, "mm": pid}],
                [t + 400, Kind.PASID_ATTACH.value, dev, pasid, cpu, pid, comm, SRC,
                 {"domain": pid, "domain_type": DomainType.SVA.value}],
                [t + 800, Kind.SVA_BIND.value, dev, pasid, cpu, pid, comm, SRC, {"mm": pid}]]

    def proc_step(self, t: int) -> list[Row]:
        proc = list(self.procs.values())[self.rng.randrange(len(self.procs))]
        cpu = self.rng.randrange(2)
        head = [cpu, proc.pid, proc.comm, SRC]
        others = [d for d, _ in SVA_DEVICES if d not in proc.devices]
        if others and self.rng.random() < 0.3:
            dev = others[self.rng.randrange(len(others))]
            proc.devices.add(dev)
            proc.bound_ns = t + 400
            return [[t, Kind.PASID_ATTACH.value, dev, proc.pasid, *head,
                     {"domain": proc.pid, "domain_type": DomainType.SVA.value}],
                    [t + 400, Kind.SVA_BIND.value, dev, proc.pasid, *head, {"mm": proc.pid}]]
        if any(self.busy[(d, proc.pasid)] for d in proc.devices):
            return self.dma(t)  # the kernel drains a PASID's faults before unbinding it: try later
        rows: list[Row] = []
        del self.procs[proc.pid]
        t = max(t, proc.bound_ns + 100)  # (a step right after a bind: its unbind came before the bind it undoes)
        for i, dev in enumerate(sorted(proc.devices)):
            rows += [[t + i * 1000, Kind.SVA_UNBIND.value, dev, proc.pasid, *head, {"mm": proc.pid}],
                     [t + i * 1000 + 300, Kind.PASID_DETACH.value, dev, proc.pasid, *head,
                      {"domain": proc.pid, "domain_type": DomainType.SVA.value}]]
        end = t + len(proc.devices) * 1000
        rows += [[end, Kind.PASID_FREE.value, None, proc.pasid, *head,
                  {"path": AllocPath.SVA.value, "owner": f"pid {proc.pid} ({proc.comm})", "mm": proc.pid}],
                 [end + 200, Kind.MM_EXIT.value, None, None, *head, {"mm": proc.pid}]]
        self.release(proc.pasid, end)
        return rows

    def vm_start(self, t: int) -> list[Row]:
        dev = next(d for d, _ in VM_DEVICES if d not in self.vm_pasids)
        vm = f"guest{VM_DEVICES.index((dev, 'vfio-pci'))}"
        pid = 6100 + VM_DEVICES.index((dev, "vfio-pci"))
        # The guest picks its PASID, and the VMM attaches the device at that same number: nothing is allocated on
        # the host (VFIO_DEVICE_ATTACH_PASID, 6.15+); the number is the device's own, whatever SVA holds elsewhere.
        pasid = 1 + VM_DEVICES.index((dev, "vfio-pci"))
        self.vm_pasids[dev] = (pasid, t + 1000)
        head = [0, pid, "qemu-system-x86", SRC]
        return [[t + 500, Kind.UAPI.value, dev, pasid, *head,
                 {"cmd": ATTACH_PT, "name": "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "fd": 30,
                  "args": {"argsz": 16, "flags": 1, "pt_id": 3, "pasid": pasid}, "ret": 0, "vm": vm}],
                [t + 900, Kind.PASID_ATTACH.value, dev, pasid, *head,
                 {"domain": 3, "domain_type": DomainType.NESTED.value, "vm": vm, "fault_queue": 2}]]


def generate_rows(n_events: int, seed: int = 1, *, slow_every: int = 20_000, loss_every: int = 0
                  ) -> Iterator[list[Any]]:
    """Exactly `n_events` rows in time order. `slow_every`: one page-request group in that many is answered
    after 120 ms (an unanswered-group finding); `loss_every`: about one lifecycle step in that many is a loss."""
    w = _Workload(random.Random(seed), slow_every, loss_every)
    emitted = 0
    buffer: list[tuple[int, int, list[Any]]] = []
    while emitted < n_events:
        for row in w.step():
            heapq.heappush(buffer, (row[R_TS], next(w.seq), row))
        while w.queue and w.queue[0][0] <= w.t:
            ts, _, row = heapq.heappop(w.queue)
            row[R_TS] = ts
            if w.pending.pop((row[R_DEVICE], row[R_FIELDS]["prg"], row[R_PASID]), None) is not None:
                w.busy[(row[R_DEVICE], row[R_PASID])] -= 1
            heapq.heappush(buffer, (ts, next(w.seq), row))
        while buffer and buffer[0][0] <= w.t and emitted < n_events:
            yield heapq.heappop(buffer)[2]
            emitted += 1


def workload_header(n_events: int, seed: int) -> Header:
    return Header(source="workload", host={"kernel": "6.18.0", "hostname": "workload"}, clock="monotonic",
                  title=f"Synthetic busy host ({n_events:,} events, seed {seed})",
                  description="DSA/IAA processes binding and faulting, two VMs with guest PASIDs, DMA map "
                              "traffic; generated by `pasid-explorer generate`.",
                  devices=workload_devices())


def write_workload(path: str, n_events: int, seed: int = 1, progress: Any = None, *, replace: bool = True,
                   **kw: Any) -> int:
    with RecordingWriter(path, workload_header(n_events, seed), replace=replace) as w:
        for i, row in enumerate(generate_rows(n_events, seed, **kw)):
            w.append_row(row)
            if progress is not None and i % 65536 == 0:
                progress(i, n_events)
    return w.events_written
