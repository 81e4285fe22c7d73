"""Every place in the kernel the capture can listen, and which event kinds each one makes visible.

A hook is a tracepoint (stable, allowed under lockdown) or a kernel function (fentry/fexit where the host lets
BPF attach to it, else a kprobe, else nothing). Several hooks can show the same kind, from different kernel eras
or vendors; a kind is invisible only when none of them is attached. Fault-queue I/O shows page requests and
responses only for the faults user space handles through iommufd, so on its own it makes those kinds partly
visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from explorer.events import Kind

from .record import Ev


@dataclass(frozen=True, slots=True)
class Hook:
    """One probe point: its name as reported, the kinds it yields, and what the probe reads from it."""

    name: str  # "iommu:io_page_fault" for a tracepoint, the function's name for a kernel function
    kinds: tuple[str, ...]
    doc: str
    fields: tuple[str, ...] = ()  # tracepoint fields the program reads (checked against the format file)
    ev: Ev | None = None  # the record type a kernel-function probe writes
    partial: bool = False  # sees only what passes through user space (iommufd fault queues)

    @property
    def function(self) -> bool:
        return ":" not in self.name

    @property
    def system(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def event(self) -> str:
        return self.name.split(":", 1)[1]


def _tp(name: str, kinds: tuple[str, ...], doc: str, *fields: str, partial: bool = False) -> Hook:
    return Hook(name, kinds, doc, fields, partial=partial)


def _fn(name: str, kinds: tuple[str, ...], ev: Ev, doc: str) -> Hook:
    return Hook(name, kinds, doc, ev=ev)


FAULT_QUEUE = "iommufd fault queues only"
HOOKS: tuple[Hook, ...] = (
    _tp("syscalls:sys_enter_ioctl", (Kind.UAPI,), "iommufd / VFIO ioctls: arguments", "fd", "cmd", "arg"),
    _tp("syscalls:sys_exit_ioctl", (Kind.UAPI,), "iommufd / VFIO ioctls: results and out_* ids", "ret"),
    _tp("sched:sched_process_exit", (Kind.MM_EXIT,), "a process that did PASID work exits", "pid"),
    _tp("syscalls:sys_enter_read", (Kind.PAGE_REQUEST,), "page faults read from a fault queue", "fd", "buf",
        partial=True),
    _tp("syscalls:sys_exit_read", (Kind.PAGE_REQUEST,), "page faults read from a fault queue", "ret",
        partial=True),
    _tp("syscalls:sys_enter_write", (Kind.PAGE_RESPONSE,), "page responses written to a fault queue", "fd", "buf",
        partial=True),
    _tp("syscalls:sys_exit_write", (Kind.PAGE_RESPONSE,), "page responses written to a fault queue", "ret",
        partial=True),
    _tp("syscalls:sys_enter_close", (), "forgets a closed fault-queue fd", "fd"),
    _tp("iommu:io_page_fault", (Kind.FAULT,), "unrecoverable DMA faults (report_iommu_fault)", "device",
        "driver", "iova", "flags"),
    _tp("iommu:map", (Kind.MAP,), "IOVA mappings", "iova", "paddr", "size"),
    _tp("iommu:unmap", (Kind.UNMAP,), "IOVA unmappings", "iova", "size", "unmapped_size"),
    _tp("iommu:add_device_to_group", (Kind.GROUP_ADD,), "a device joins an IOMMU group", "gid", "device"),
    _tp("iommu:remove_device_from_group", (Kind.GROUP_REMOVE,), "a device leaves its IOMMU group", "gid",
        "device"),
    _tp("iommu:attach_device_to_domain", (Kind.DOMAIN_ATTACH,), "a device's domain changes", "device"),
    _tp("iommu:dev_fault", (Kind.PAGE_REQUEST, Kind.FAULT), "SVA-era kernels: faults and page requests",
        "device", "type", "reason", "addr", "pasid", "grpid", "flags", "prot"),
    _tp("iommu:dev_page_response", (Kind.PAGE_RESPONSE,), "SVA-era kernels: page responses", "device", "code",
        "pasid", "grpid"),
    _tp("intel_iommu:prq_report", (Kind.PAGE_REQUEST,), "Intel VT-d page request descriptors", "dw0", "dw1",
        "seq", "dev"),
    _tp("intel_iommu:qi_submit", (Kind.PAGE_RESPONSE,), "Intel VT-d page group responses", "qw0", "qw1", "iommu"),
    _fn("iommu_alloc_global_pasid", (Kind.PASID_ALLOC,), Ev.PASID_ALLOC, "the global PASID allocator (6.6+)"),
    _fn("iommu_free_global_pasid", (Kind.PASID_FREE,), Ev.PASID_FREE, "global PASID frees (6.6+)"),
    _fn("iommu_sva_bind_device", (Kind.SVA_BIND,), Ev.SVA_BIND, "SVA binds of an mm to a device"),
    _fn("iommu_sva_unbind_device", (Kind.SVA_UNBIND,), Ev.SVA_UNBIND, "SVA unbinds"),
    _fn("iommu_attach_device_pasid", (Kind.PASID_ATTACH,), Ev.PASID_ATTACH, "a (device, PASID) gets a domain"),
    _fn("iommu_detach_device_pasid", (Kind.PASID_DETACH,), Ev.PASID_DETACH, "a (device, PASID) loses it"),
    _fn("iommu_replace_device_pasid", (Kind.PASID_REPLACE,), Ev.PASID_REPLACE, "a (device, PASID) switches domain"),
    _fn("iommu_report_device_fault", (Kind.PAGE_REQUEST,), Ev.REPORT_FAULT, "page requests the IOMMU reports"),
    _fn("iopf_group_response", (Kind.PAGE_RESPONSE,), Ev.PAGE_RESPONSE, "page-group responses (6.10+)"),
    _fn("iommu_page_response", (Kind.PAGE_RESPONSE,), Ev.PAGE_RESPONSE, "page responses (before 6.10)"),
    _fn("mm_pasid_drop", (Kind.PASID_FREE,), Ev.MM_PASID_DROP, "an mm's SVA PASID freed with the mm"),
    _fn("ioasid_alloc", (Kind.PASID_ALLOC,), Ev.IOASID_ALLOC, "the 5.x ioasid allocator"),
    _fn("ioasid_free", (Kind.PASID_FREE,), Ev.IOASID_FREE, "the 5.x ioasid allocator's frees"),
)
BY_NAME = {h.name: h for h in HOOKS}

# Kinds the capture itself makes, whatever the kernel offers.
ALWAYS_VISIBLE = (Kind.LOST,)
# Kinds no kernel hook produces: they come from scenarios, tools or the simulator.
NOT_CAPTURED = (Kind.MARKER, Kind.ANOMALY)
