"""AMD-Vi decoding tables: event log codes and the flag bits of each event (AMD IOMMU spec, 'Event Log').

Event numbers and flag masks follow drivers/iommu/amd/amd_iommu_types.h (EVENT_TYPE_*, EVENT_FLAG_*,
PPR_FLAG_*); the flag meanings are those of the spec's IO_PAGE_FAULT event, which the kernel prints raw.
"""

from __future__ import annotations

import functools

# Event name as printed -> (event type code, what it means).
EVENTS: dict[str, tuple[int, str]] = {
    "ILLEGAL_DEV_TABLE_ENTRY": (0x1, "the device's entry in the IOMMU device table is invalid"),
    "IO_PAGE_FAULT": (0x2, "I/O page fault"),
    "DEV_TAB_HARDWARE_ERROR": (0x3, "the IOMMU could not read the device table (hardware error)"),
    "PAGE_TAB_HARDWARE_ERROR": (0x4, "the IOMMU could not read an I/O page table (hardware error)"),
    "ILLEGAL_COMMAND_ERROR": (0x5, "the driver queued a malformed IOMMU command"),
    "COMMAND_HARDWARE_ERROR": (0x6, "the IOMMU could not read its command buffer"),
    "IOTLB_INV_TIMEOUT": (0x7, "the device never acknowledged an IOTLB (ATS) invalidation"),
    "INVALID_DEVICE_REQUEST": (0x8, "the device sent a request its device table entry does not permit"),
    "INVALID_PPR_REQUEST": (0x9, "the device sent a page request (PRI) the IOMMU could not accept"),
    "RMP_PAGE_FAULT": (0xD, "an SEV-SNP reverse-map check failed for the device's access"),
    "RMP_HW_ERROR": (0xE, "the IOMMU could not read the SEV-SNP reverse map (hardware error)"),
    "UNKNOWN": (0x0, "an event type this kernel did not know"),
}

# IO_PAGE_FAULT flags (event bits 16..27, printed as flags=0x....).
FLAG_GN = 0x001  # guest/nested: the request carried a PASID, and the "domain" field holds that PASID
FLAG_NX = 0x002  # the request asked to execute
FLAG_US = 0x004  # user (1) or supervisor (0) privilege
FLAG_I = 0x008  # an interrupt request, not a memory access
FLAG_PR = 0x010  # the page was present (the fault is about permissions, not a missing mapping)
FLAG_RW = 0x020  # a write (only meaningful when PR=1, TR=0, I=0)
FLAG_PE = 0x040  # permission error
FLAG_RZ = 0x080  # a reserved bit was set, or the page-table level encoding was invalid
FLAG_TR = 0x100  # an ATS translation request, not a DMA access

FLAG_NAMES = ((FLAG_GN, "GN"), (FLAG_NX, "NX"), (FLAG_US, "US"), (FLAG_I, "I"), (FLAG_PR, "PR"),
              (FLAG_RW, "RW"), (FLAG_PE, "PE"), (FLAG_RZ, "RZ"), (FLAG_TR, "TR"))

# PPR log entry flags (page requests through the PPR log).
PPR_FLAG_EXEC = 0x002
PPR_FLAG_READ = 0x004
PPR_FLAG_WRITE = 0x020
PPR_FLAG_US = 0x040
PPR_FLAG_RVSD = 0x080
PPR_FLAG_GN = 0x100


def flag_names(flags: int) -> str:
    names = [n for bit, n in FLAG_NAMES if flags & bit]
    return "+".join(names) if names else "none"


def page_fault_access(flags: int) -> str:
    """read, write, exec or unknown, following the spec's rule for when RW may be trusted."""
    if flags & (FLAG_I | FLAG_TR):
        return "unknown"
    if flags & FLAG_NX:
        return "exec"
    if flags & FLAG_PR:
        return "write" if flags & FLAG_RW else "read"
    return "unknown"


@functools.lru_cache(maxsize=4096)
def page_fault_reason(flags: int, domain: int | None) -> str:
    """The IO_PAGE_FAULT flags in words: what the device tried, and why the IOMMU refused."""
    if flags & FLAG_I:
        what = "an interrupt request (MSI) was blocked by interrupt remapping"
    elif flags & FLAG_TR:
        what = "an ATS translation request failed"
    elif not flags & FLAG_PR:
        what = "the address is not mapped: no present page-table entry (stale, unmapped or never-mapped DMA " \
               "address)"
    elif flags & FLAG_RZ:
        what = "a page-table entry has reserved bits set or an invalid level: a corrupted I/O page table"
    elif flags & FLAG_PE:
        what = f"the page is mapped but does not allow this {'write' if flags & FLAG_RW else 'read'}"
    else:
        what = "the page is present but the access was refused"
    where = ""
    if flags & FLAG_GN:
        where = f"; GN=1: the request carried PASID {domain:#x}" if domain is not None else "; GN=1 (PASID)"
    elif domain is not None:
        where = f" in domain {domain:#06x}" if domain else " in domain 0 (Linux never hands out domain id 0: the " \
                                                           "device had no domain set up when it did this DMA)"
    priv = "user" if flags & FLAG_US else "supervisor"
    return f"IO_PAGE_FAULT: {what}{where} [{flag_names(flags)}, {priv}]"


def ppr_perm(flags: int) -> int:
    """PPR flags as Perm bits (read 1, write 2, exec 4, privileged 8)."""
    perm = 1 if flags & PPR_FLAG_READ else 0
    perm |= 2 if flags & PPR_FLAG_WRITE else 0
    perm |= 4 if flags & PPR_FLAG_EXEC else 0
    perm |= 0 if flags & PPR_FLAG_US else 8
    return perm
