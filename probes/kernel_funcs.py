"""Compiler flags for the kernel-function probes (kernel_funcs.bpf.c), taken from the running kernel's BTF.

The probes read struct members through byte offsets (-DOFF_*) found in /sys/kernel/btf/vmlinux, trying the
member paths of each kernel era in turn, and list exactly as many arguments as the function takes (-DNARGS_*,
which fexit programs need). A hook whose members this kernel does not have is reported, not guessed at.
"""

from __future__ import annotations

from explorer.kernel_facts import rules_for

from .btf import Btf
from .hooks import Hook

# Offset name -> (struct, member path) alternatives, newest kernel layout first.
OFFSETS: dict[str, tuple[tuple[str, str], ...]] = {
    "DEV_NAME": (("device", "kobj.name"),),
    "TASK_MM": (("task_struct", "mm"),),
    "SVA_DEV": (("iommu_sva", "dev"),),
    "SVA_DOMAIN": (("iommu_sva", "handle.domain"), ("iommu_sva", "domain")),
    "DOMAIN_MM": (("iommu_domain", "mm"),),
    "DOMAIN_TYPE": (("iommu_domain", "type"),),
    "EVT_TYPE": (("iopf_fault", "fault.type"), ("iommu_fault_event", "fault.type")),
    "EVT_FLAGS": (("iopf_fault", "fault.prm.flags"), ("iommu_fault_event", "fault.prm.flags")),
    "EVT_PASID": (("iopf_fault", "fault.prm.pasid"), ("iommu_fault_event", "fault.prm.pasid")),
    "EVT_GRPID": (("iopf_fault", "fault.prm.grpid"), ("iommu_fault_event", "fault.prm.grpid")),
    "EVT_PERM": (("iopf_fault", "fault.prm.perm"), ("iommu_fault_event", "fault.prm.perm")),
    "EVT_ADDR": (("iopf_fault", "fault.prm.addr"), ("iommu_fault_event", "fault.prm.addr")),
    "GRP_FLAGS": (("iopf_group", "last_fault.fault.prm.flags"),),
    "GRP_PASID": (("iopf_group", "last_fault.fault.prm.pasid"),),
    "GRP_GRPID": (("iopf_group", "last_fault.fault.prm.grpid"),),
    "GRP_PARAM": (("iopf_group", "fault_param"),),
    "PARAM_DEV": (("iommu_fault_param", "dev"),),
    "RESP_PASID": (("iommu_page_response", "pasid"),),
    "RESP_GRPID": (("iommu_page_response", "grpid"),),
    "RESP_CODE": (("iommu_page_response", "code"),),
    "DRV_EVT_FLAGS": (("iopf_fault", "fault.prm.flags"),),
}
# Members a probe reads where the kernel has them, and does without where it does not (-DOFF_<name> only then).
# iopf_group.pending_node: from 6.9 iopf_group_response() sent nothing for a group no longer pending (io-pgfault.c,
# "Only send response if there is a fault report pending"), until iopf_group_dequeue() came (iommufd dequeues a
# group it hands to user space, so the check went: 6.12.y and 7.3 send unconditionally). Read only before that.
OPTIONAL = {"iopf_group_response": {"GRP_PENDING": (("iopf_group", "pending_node"),)}}
PENDING_CHECK_UNTIL = "iopf_group_dequeue"  # a kernel with this function has no pending check
def offset(btf: Btf, name: str) -> int | None:
    for struct_name, path in OFFSETS[name]:
        off = btf.member_offset(struct_name, path)
        if off is not None:
            return off
    return None


def mm_pasid_flags(btf: Btf) -> list[str]:
    """How to read an mm's SVA PASID here: mm->iommu_mm->pasid (6.8+), mm->pasid (5.x to 6.7), or not at all."""
    via, pasid = btf.member_offset("mm_struct", "iommu_mm"), btf.member_offset("iommu_mm_data", "pasid")
    if via is not None and pasid is not None:
        return ["-DHAVE_IOMMU_MM", f"-DOFF_MM_IOMMU_MM={via}", f"-DOFF_IOMMU_MM_PASID={pasid}"]
    direct = btf.member_offset("mm_struct", "pasid")
    return [] if direct is None else ["-DHAVE_MM_PASID", f"-DOFF_MM_PASID={direct}"]


# The struct each probed function's first argument must point to. 6.9 has a static iommu_page_response(group, msg)
# whose first argument is a struct iopf_group *: the probe, written for (dev, msg) of 5.3-6.8, must not attach there.
FIRST_ARG = {"iommu_page_response": "device", "iommu_report_device_fault": "device",
             "iopf_group_response": "iopf_group", "iommu_attach_device_pasid": "iommu_domain"}
# The drivers' page_response ops are probed in their 6.9+ shape only (dev, struct iopf_fault *, msg): before, the
# second argument was a struct iommu_fault_event * (read differently) and the core's iommu_page_response() saw them.
SECOND_ARG = {name: "iopf_fault" for name in ("intel_svm_page_response", "intel_iommu_page_response",
                                               "amd_iommu_page_response", "arm_smmu_page_response",
                                               "mock_domain_page_response")}


def function_flags(btf: Btf, hook: Hook, release: str | None = None) -> tuple[list[str], str]:
    """The -D flags that compile `hook`'s probe for kernel `release`, or ([], what this kernel's BTF lacks)."""
    name = hook.name
    flags = [f"-DHOOK_{name}"]
    first = btf.param_struct(name, 0)
    if name in FIRST_ARG and first not in (None, FIRST_ARG[name]):
        return [], f"a {name}(struct {FIRST_ARG[name]} *, ...); this kernel's takes a struct {first} *"
    second = btf.param_struct(name, 1) if name in SECOND_ARG else None
    if second not in (None, SECOND_ARG.get(name)):
        return [], f"a {name}(dev, struct {SECOND_ARG[name]} *, msg); this kernel's takes a struct {second} *"
    nargs = btf.params(name)
    if nargs is not None:
        flags.append(f"-DNARGS_{name}={nargs}")
    lacking = []
    for off_name in hook.reads:
        value = offset(btf, off_name)
        if value is None:
            lacking.append(" or ".join(f"{s}.{p}" for s, p in OFFSETS[off_name]))
        else:
            flags.append(f"-DOFF_{off_name}={value}")
    optional = OPTIONAL.get(name, {}) if btf.params(PENDING_CHECK_UNTIL) is None else {}
    for off_name, paths in optional.items():
        value = next((v for s, p in paths if (v := btf.member_offset(s, p)) is not None), None)
        if value is not None:
            flags.append(f"-DOFF_{off_name}={value}")
    if name in ("iommu_sva_bind_device", "iommu_sva_unbind_device", "mm_pasid_drop"):
        mm = mm_pasid_flags(btf)
        if not mm and name == "mm_pasid_drop":
            lacking.append("mm_struct.iommu_mm or mm_struct.pasid")
        flags += mm
    if name == "iommu_report_device_fault":
        page_req = btf.enum_value("IOMMU_FAULT_PAGE_REQ")
        if page_req is None:
            lacking.append("enum IOMMU_FAULT_PAGE_REQ")
        else:
            flags.append(f"-DFAULT_PAGE_REQ={page_req}")
        # A #define, invisible to BTF: 1 << 3 up to 6.9, 1 << 2 from 6.10 (kernel_facts, request.needs-pasid-*).
        flags.append(f"-DNEEDS_PASID_FLAG={rules_for(release).needs_pasid_bit}")
    return flags, "; ".join(lacking)
