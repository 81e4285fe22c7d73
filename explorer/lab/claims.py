"""Which of the capture's hooks the lab fires on each lab kernel, and which it cannot, with why.

The lab attaches every hook its kernel has; only some of them can fire there. What it claims to fire is held to
the recordings (tests/lab/test_claims.py: every claimed hook fired in a lab test); what it cannot fire is said
here and in `pasid-explorer lab status`, never left for a reader to assume.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from explorer.events import Event
from explorer.kernel_facts import parse_version
from explorer.recording import open_recording
from probes.hooks import BY_NAME

_IOMMUFD = ("syscalls:sys_enter_ioctl", "syscalls:sys_exit_ioctl", "syscalls:sys_enter_read",
            "syscalls:sys_exit_read", "syscalls:sys_enter_write", "syscalls:sys_exit_write",
            "sched:sched_process_exit", "iommu:add_device_to_group", "iommu:remove_device_from_group",
            "iommu:attach_device_to_domain", "iommu_report_device_fault", "iopf_group_response")
_VTD = ("iommu:map", "iommu:unmap")  # the scalable-mode VT-d boot's virtio DMA
_GLOBAL = ("iommu_alloc_global_pasid", "iommu_free_global_pasid")  # pasidlab.ko, 6.6+
FIRES: dict[str, tuple[str, ...]] = {
    "6.1": ("ioasid_alloc", "ioasid_free"),  # pasidlab.ko: no iommufd, no mock device, no lab VT-d boot on 6.1
    "6.12": _IOMMUFD + _VTD + _GLOBAL,
    "7.3": _IOMMUFD + _VTD + _GLOBAL + ("iommu_attach_device_pasid", "iommu_detach_device_pasid",
                                        "iommu_replace_device_pasid"),
}

_NO_SVA = ("no lab IOMMU takes an SVA domain: the iommufd selftest's mock IOMMU has no SVA domain "
           "(drivers/iommu/iommufd/selftest.c), and QEMU 7.2's VT-d has no first-stage tables and no page requests "
           "(ecap FLTS=0, PRS=0) with no emulated device carrying PASID or PRI")
_NO_PRQ = "QEMU 7.2's VT-d makes no page requests (ecap PRS=0) and no emulated device has PRI"
CANNOT: dict[str, str] = {
    "iommu_sva_bind_device": _NO_SVA,
    "iommu_sva_unbind_device": _NO_SVA,
    "mm_pasid_drop": "it frees only an mm's SVA PASID, which only an SVA bind allocates: " + _NO_SVA,
    "iommu:io_page_fault": "only report_iommu_fault() fires it, for an unrecoverable DMA fault; neither the mock "
                           "IOMMU nor VT-d calls it, and the lab's DMA never faults",
    "intel_iommu:prq_report": _NO_PRQ,
    "intel_iommu:qi_submit": "it is recorded only for page-group responses, and " + _NO_PRQ,
    "intel_iommu_page_response": _NO_PRQ,
    "intel_svm_page_response": _NO_PRQ,
    "mock_domain_page_response": "it fires under iopf_group_response(), but its record is evidence merged into the "
                                 "core's event and its kernel count shares a type with the other drivers' ops: "
                                 "no recording shows it apart",
    "amd_iommu_page_response": "the lab kernels build no AMD IOMMU driver (the guest is Intel q35 or mock only)",
    "arm_smmu_page_response": "the lab kernels are x86: no SMMUv3 driver",
    "iommu_page_response": "6.1 has no iommufd and no device that makes page requests (no mock, no PRI)",
    "syscalls:sys_enter_close": "it writes no record of its own (it forgets a closed fault-queue fd)",
    "iommu_attach_device_pasid": "the 6.12 mock device takes no PASID (MOCK_FLAGS_DEVICE_PASID is 6.15+)",
    "iommu_detach_device_pasid": "the 6.12 mock device takes no PASID (MOCK_FLAGS_DEVICE_PASID is 6.15+)",
}
# A hook shown only by its kernel-side count (an enter half or a syscall whose event another hook makes): the
# count types (probes.record.Ev names) that prove it fired.
_COUNTED = {"syscalls:sys_enter_ioctl": "ioctl", "syscalls:sys_exit_ioctl": "ioctl",
            "syscalls:sys_enter_read": "fault_read", "syscalls:sys_exit_read": "fault_read",
            "syscalls:sys_enter_write": "fault_write", "syscalls:sys_exit_write": "fault_write"}


def fired(recording: Path) -> set[str]:
    """The hooks a recording proves fired: each event's source hook, and the syscall hooks by their counts."""
    rec = open_recording(recording)
    try:
        sources = {Event.from_row(r).source for i in range(len(rec.chunks)) for r in rec.chunk_rows(i)}
        counted = {e["type"] for e in (rec.footer or {}).get("kernel_counts", []) if e.get("count")}
    finally:
        rec.close()
    names = {s.rsplit(":", 1)[-1] if s.startswith(("fentry:", "fexit:", "kprobe:", "kretprobe:")) else s
             for s in sources}
    return {h for h in BY_NAME if h in names} | {h for h, t in _COUNTED.items() if t in counted}


_NO_IOMMUFD = ("6.1 predates iommufd (6.2): no fault queue, no mock device; and the lab's VT-d boot (the only "
               "source of iommu:map traffic) runs on 6.12 and 7.3 only")


def present(version: str) -> list[str]:
    """The capture's hooks that mainline `version` has (explorer.kernel_facts): what the lab attaches there."""
    v = parse_version(version)
    return [h.name for h in BY_NAME.values() if h.fact.in_kernel(v)]


def cannot(version: str, attached: Iterable[str]) -> dict[str, str]:
    """The attached hooks the lab cannot fire on `version`, each with why ("unexplained" where the table has
    no reason: a gap that tests/lab/test_claims.py fails on)."""
    out = {}
    for h in sorted(set(attached) - set(FIRES[version])):
        old = version == "6.1" and h in _IOMMUFD + _VTD
        out[h] = _NO_IOMMUFD if old else CANNOT.get(h, "unexplained")
    return out
