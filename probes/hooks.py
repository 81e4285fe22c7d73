"""Every place in the kernel the capture can listen, each declared once: its name, the record its BPF program
writes, what the program reads, the decoder of its records; its kernel versions, argument layout and event kinds
come from the kernel facts table (explorer.kernel_facts), by name.

A hook is a tracepoint (stable) or a kernel function (fentry/fexit where the host lets
BPF attach to it, else a kprobe, else nothing). Several hooks can show the same kind, from different kernel eras
or vendors; a kind is invisible only when none of them is attached. Fault-queue I/O shows page requests and
responses only for the faults user space handles through iommufd, so on its own it makes those kinds partly
visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from explorer.events import Kind
from explorer.kernel_facts import HOOK_FACTS, HookFact

from .record import Ev


@dataclass(frozen=True, slots=True)
class Hook:
    """One probe point: its name as reported, what the probe reads from it and the record it writes. Its kernel
    versions, argument layout and the kinds it shows are the kernel facts table's (`fact`)."""

    name: str  # "iommu:io_page_fault" for a tracepoint, the function's name for a kernel function
    doc: str
    fields: tuple[str, ...] = ()  # tracepoint fields the program reads (checked against the format file)
    ev: Ev | None = None  # the record type the probe writes (its BPF program: capture.bpf.c, kernel_funcs.bpf.c)
    decoder: str = ""  # the probes.decode.Decoder method that turns its records into event rows
    partial: bool = False  # sees only what passes through user space (iommufd fault queues)
    reads: tuple[str, ...] = ()  # a kernel function's struct members, probes.kernel_funcs.OFFSETS names
    returns: bool = False  # a kernel function probed at its return too (fexit or kretprobe): its result counts
    shares: str = ""  # the kernel event it may see with another hook (free, request, response): one event

    @property
    def fact(self) -> HookFact:
        return HOOK_FACTS[self.name]

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.fact.kinds

    @property
    def function(self) -> bool:
        return ":" not in self.name

    @property
    def system(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def event(self) -> str:
        return self.name.split(":", 1)[1]


def _tp(name: str, doc: str, *fields: str, ev: Ev | None = None, decoder: str = "", partial: bool = False,
        shares: str = "") -> Hook:
    return Hook(name, doc, fields, ev, decoder, partial, shares=shares)


def _fn(name: str, ev: Ev, decoder: str, doc: str, *reads: str, returns: bool = False, shares: str = "") -> Hook:
    return Hook(name, doc, ev=ev, decoder=decoder, reads=reads, returns=returns, shares=shares)


_DEV = "DEV_NAME"
_EVT = ("EVT_TYPE", "EVT_FLAGS", "EVT_PASID", "EVT_GRPID", "EVT_PERM", "EVT_ADDR")


FAULT_QUEUE = "iommufd fault queues only"
# The drivers' page_response ops, in the order kernel_funcs.bpf.c numbers them in a record's `a`.
DRIVER_RESPONSE_OPS = ("intel_svm_page_response", "intel_iommu_page_response", "amd_iommu_page_response",
                       "arm_smmu_page_response", "mock_domain_page_response")
VENDOR = "vendor trees only, never mainline"
HOOKS: tuple[Hook, ...] = (
    _tp("syscalls:sys_enter_ioctl", "iommufd / VFIO ioctls: arguments", "fd", "cmd", "arg"),
    _tp("syscalls:sys_exit_ioctl", "iommufd / VFIO ioctls: results and out_* ids", "ret", ev=Ev.IOCTL),
    _tp("sched:sched_process_exit", "a process that did PASID work exits", "pid", ev=Ev.EXIT, decoder="_exit"),
    _tp("syscalls:sys_enter_read", "page faults read from a fault queue", "fd", "buf", partial=True),
    _tp("syscalls:sys_exit_read", "page faults read from a fault queue", "ret", ev=Ev.FAULT_READ,
        decoder="_fault_reads", partial=True),
    _tp("syscalls:sys_enter_write", "page responses written to a fault queue", "fd", "buf", partial=True),
    _tp("syscalls:sys_exit_write", "page responses written to a fault queue", "ret", ev=Ev.FAULT_WRITE,
        decoder="_fault_writes", partial=True),
    _tp("syscalls:sys_enter_close", "forgets a closed fault-queue fd", "fd"),
    _tp("iommu:io_page_fault", "unrecoverable DMA faults (report_iommu_fault)", "device", "driver", "iova", "flags",
        ev=Ev.IO_PAGE_FAULT, decoder="_io_page_fault"),
    _tp("iommu:map", "IOVA mappings", "iova", "paddr", "size", ev=Ev.MAP, decoder="_map"),
    _tp("iommu:unmap", "IOVA unmappings", "iova", "size", "unmapped_size", ev=Ev.UNMAP, decoder="_unmap"),
    _tp("iommu:add_device_to_group", "a device joins an IOMMU group", "gid", "device", ev=Ev.GROUP_ADD,
        decoder="_group"),
    _tp("iommu:remove_device_from_group", "a device leaves its IOMMU group", "gid", "device", ev=Ev.GROUP_REMOVE,
        decoder="_group"),
    _tp("iommu:attach_device_to_domain", "a device's domain changes", "device", ev=Ev.DOMAIN_ATTACH,
        decoder="_domain_attach"),
    _tp("iommu:dev_fault", f"faults and page requests ({VENDOR})", "device", "type", "reason", "addr", "pasid",
        "grpid", "flags", "prot", ev=Ev.DEV_FAULT, decoder="_old_dev_fault", shares="request"),
    _tp("iommu:dev_page_response", f"page responses ({VENDOR})", "device", "code", "pasid", "grpid",
        ev=Ev.DEV_PAGE_RESPONSE, decoder="_old_dev_page_response", shares="response"),
    _tp("intel_iommu:prq_report", "Intel VT-d page request descriptors (evidence on the reported request)", "dw0",
        "dw1", "seq", "dev", ev=Ev.PRQ, decoder="_prq", shares="request"),
    _tp("intel_iommu:qi_submit", "Intel VT-d page group responses, the kernel's automatic ones included", "qw0",
        "qw1", "iommu", ev=Ev.QI_PGRP_RESP, decoder="_qi_page_response", shares="response"),
    _fn("iommu_alloc_global_pasid", Ev.PASID_ALLOC, "_pasid_alloc", "the global PASID allocator", _DEV,
        returns=True),
    _fn("iommu_free_global_pasid", Ev.PASID_FREE, "_pasid_free",
        "global PASID frees (an mm's: evidence on mm_pasid_drop)", shares="free"),
    _fn("iommu_sva_bind_device", Ev.SVA_BIND, "_sva_bind", "SVA binds of an mm to a device", _DEV, "TASK_MM",
        returns=True),
    _fn("iommu_sva_unbind_device", Ev.SVA_UNBIND, "_sva_unbind", "SVA unbinds", _DEV, "TASK_MM", "SVA_DEV",
        "SVA_DOMAIN", "DOMAIN_MM"),
    _fn("iommu_attach_device_pasid", Ev.PASID_ATTACH, "_pasid_domain", "a (device, PASID) gets a domain", _DEV,
        "DOMAIN_TYPE", returns=True),
    _fn("iommu_detach_device_pasid", Ev.PASID_DETACH, "_pasid_domain", "a (device, PASID) loses it", _DEV,
        "DOMAIN_TYPE"),
    _fn("iommu_replace_device_pasid", Ev.PASID_REPLACE, "_pasid_domain", "a (device, PASID) switches domain", _DEV,
        "DOMAIN_TYPE", returns=True),
    _fn("iommu_report_device_fault", Ev.REPORT_FAULT, "_report_fault", "page requests the IOMMU reports", _DEV,
        *_EVT, shares="request"),
    _fn("iopf_group_response", Ev.PAGE_RESPONSE, "_kernel_page_response", "page-group responses", _DEV,
        "GRP_FLAGS", "GRP_PASID", "GRP_GRPID", "GRP_PARAM", "PARAM_DEV", shares="response"),
    *(_fn(name, Ev.DRIVER_PAGE_RESPONSE, "_driver_page_response", f"{vendor} page responses as sent, the kernel's "
          "automatic ones included (evidence on the core's response)", _DEV, "DRV_EVT_FLAGS", "RESP_PASID",
          "RESP_GRPID", "RESP_CODE", shares="response")
      for name, vendor in zip(DRIVER_RESPONSE_OPS, ("VT-d", "VT-d", "AMD-Vi", "SMMUv3", "iommufd selftest mock"),
                              strict=True)),
    _fn("iommu_page_response", Ev.PAGE_RESPONSE, "_kernel_page_response", "page responses", _DEV, "RESP_PASID",
        "RESP_GRPID", "RESP_CODE", shares="response"),
    _fn("mm_pasid_drop", Ev.MM_PASID_DROP, "_pasid_free", "an mm's SVA PASID freed with the mm", shares="free"),
    _fn("ioasid_alloc", Ev.IOASID_ALLOC, "_pasid_alloc", "the ioasid allocator", returns=True),
    _fn("ioasid_free", Ev.IOASID_FREE, "_pasid_free", "the ioasid allocator's frees"),
    _fn("ioasid_put", Ev.IOASID_FREE, "_pasid_free", "the ioasid allocator's frees through a last reference",
        returns=True),
)
assert all(h.name in HOOK_FACTS for h in HOOKS), "every hook has its row in explorer.kernel_facts.HOOKS"
BY_NAME = {h.name: h for h in HOOKS}

# Kinds the capture itself makes, whatever the kernel offers.
ALWAYS_VISIBLE = (Kind.LOST,)
# Kinds no kernel hook produces: they come from scenarios, tools or the simulator.
NOT_CAPTURED = (Kind.MARKER, Kind.ANOMALY)
