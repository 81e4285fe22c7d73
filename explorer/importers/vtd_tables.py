"""Intel VT-d decoding tables: fault reasons, the fault status register, and page-request/response descriptors.

The reason strings are the kernel's own (drivers/iommu/intel/dmar.c: dma_remap_fault_reasons,
dma_remap_sm_fault_reasons, irq_remap_fault_reasons); the lessons after them say what the reason usually means
for the device and its driver, which is what the kernel's one-liner leaves to the reader.
"""

from __future__ import annotations

# Legacy (non-scalable) DMA remapping reasons, 0x00-0x0d.
DMA_REASONS: dict[int, tuple[str, str]] = {
    0x00: ("Software", "a reason the hardware leaves to software"),
    0x01: ("Present bit in root entry is clear",
           "the IOMMU has no translation for this bus at all: the device is not attached to any domain "
           "(often firmware DMA before the OS took over, or a device the driver never set up)"),
    0x02: ("Present bit in context entry is clear",
           "the device has no context entry: it issued DMA while detached from every domain"),
    0x03: ("Invalid context entry", "the device's context entry is malformed"),
    0x04: ("Access beyond MGAW", "the address is wider than the domain's guest address width"),
    0x05: ("PTE Write access is not set",
           "the device wrote to an I/O address mapped read-only, or not mapped at all"),
    0x06: ("PTE Read access is not set",
           "the device read an I/O address that is not mapped for reads: usually a stale or never-mapped "
           "DMA address (use after unmap, or a buffer the driver never mapped)"),
    0x07: ("Next page table ptr is invalid", "a page-table walk hit a missing level: the address is unmapped"),
    0x08: ("Root table address invalid", "the root table pointer is bad (IOMMU set up wrongly)"),
    0x09: ("Context table ptr is invalid", "the context table pointer is bad"),
    0x0A: ("non-zero reserved fields in RTP", "reserved bits set in the root table pointer"),
    0x0B: ("non-zero reserved fields in CTP", "reserved bits set in the context table pointer"),
    0x0C: ("non-zero reserved fields in PTE", "a page-table entry has reserved bits set: corrupted I/O page table"),
    0x0D: ("PCE for translation request specifies blocking", "the device's ATS translation request was blocked"),
}

# Interrupt remapping reasons, 0x20-0x26: these faults carry an interrupt index, not an address.
IRQ_REASONS: dict[int, tuple[str, str]] = {
    0x20: ("Detected reserved fields in the decoded interrupt-remapped request",
           "the device's MSI write has reserved bits set"),
    0x21: ("Interrupt index exceeded the interrupt-remapping table size",
           "the device raised an interrupt index the table does not hold"),
    0x22: ("Present field in the IRTE entry is clear",
           "the device raised an interrupt that was never set up (or already torn down)"),
    0x23: ("Error accessing interrupt-remapping table pointed by IRTA_REG", "the remapping table is unreachable"),
    0x24: ("Detected reserved fields in the IRTE entry", "the interrupt remapping entry is malformed"),
    0x25: ("Blocked a compatibility format interrupt request",
           "an old-style (non-remapped) interrupt was blocked, typically firmware or an IOAPIC left in "
           "compatibility mode"),
    0x26: ("Blocked an interrupt request due to source-id verification failure",
           "the interrupt came from a requester id the entry does not allow"),
}

_SM_PASID = ("the PASID table has no valid entry for the PASID looked up: for a request with a PASID, that PASID "
             "is not attached on this device (never set up, or already detached); for a request without one "
             "(NO_PASID), the entry consulted is RID_PASID (PASID 0), so the device's ordinary DMA is unattached")
# Scalable-mode reasons, 0x30 onwards: the translation path that carries PASIDs.
SM_REASONS: dict[int, tuple[str, str]] = {
    0x30: ("SM: Invalid Root Table Address", "the scalable-mode root table pointer is bad"),
    0x31: ("SM: TTM 0 for request with PASID", "a request with PASID arrived while the root table is legacy mode"),
    0x32: ("SM: TTM 0 for page group request", "a page request arrived while the root table is legacy mode"),
    0x38: ("SM: Error attempting to access Root Entry", "the root entry could not be read"),
    0x39: ("SM: Present bit in Root Entry is clear", "no translation for this bus: the device is not attached"),
    0x3A: ("SM: Non-zero reserved field set in Root Entry", "the root entry is malformed"),
    0x40: ("SM: Error attempting to access Context Entry", "the context entry could not be read"),
    0x41: ("SM: Present bit in Context Entry is clear", "the device has no context entry: it is not attached"),
    0x42: ("SM: Non-zero reserved field set in the Context Entry", "the context entry is malformed"),
    0x43: ("SM: Invalid Context Entry", "the context entry is inconsistent"),
    0x44: ("SM: DTE field in Context Entry is clear", "device TLB (ATS) is not enabled for this device"),
    0x45: ("SM: PASID Enable field in Context Entry is clear",
           "the device sent a PASID but PASID is not enabled for it: the driver never enabled PASID"),
    0x46: ("SM: PASID is larger than the max in Context Entry",
           "the PASID is beyond the size of the device's PASID table: a number nothing attached on it"),
    0x47: ("SM: PRE field in Context-Entry is clear", "the device sent a page request but PRI is not enabled"),
    0x48: ("SM: RID_PASID field error in Context-Entry", "the RID2PASID (PASID 0) setup is wrong"),
    0x50: ("SM: Error attempting to access the PASID Directory Entry", "the PASID directory could not be read"),
    0x51: ("SM: Present bit in Directory Entry is clear", _SM_PASID),
    0x52: ("SM: Non-zero reserved field set in PASID Directory Entry", "the PASID directory entry is malformed"),
    0x58: ("SM: Error attempting to access PASID Table Entry", "the PASID table entry could not be read"),
    0x59: ("SM: Present bit in PASID Table Entry is clear", _SM_PASID),
    0x5A: ("SM: Non-zero reserved field set in PASID Table Entry", "the PASID table entry is malformed"),
    0x5B: ("SM: Invalid Scalable-Mode PASID Table Entry", "the PASID table entry's translation type is invalid"),
    0x5C: ("SM: ERE field is clear in PASID Table Entry", "an execute request on a PASID that forbids execute"),
    0x5D: ("SM: SRE field is clear in PASID Table Entry",
           "a privileged (supervisor) request on a PASID set up for user mode only"),
    0x70: ("SM: Error attempting to access first-level paging entry", "the first-level table could not be read"),
    0x71: ("SM: Present bit in first-level paging entry is clear",
           "the address is not mapped in the first-level page table used: an ordinary unmapped-IOVA fault "
           "of a DMA-API domain on scalable-mode VT-d (which uses first-level tables), or, for SVA or a guest's "
           "PASID, no page there and no page request used to fault it in"),
    0x72: ("SM: Non-zero reserved field set in first-level paging entry", "the first-level entry is malformed"),
    0x73: ("SM: Error attempting to access FL-PML4 entry", "the first-level root could not be read"),
    0x74: ("SM: First-level entry address beyond MGAW in Nested translation", "nested walk went out of range"),
    0x75: ("SM: Read permission error in FL-PML4 entry in Nested translation", "nested read permission fault"),
    0x76: ("SM: Read permission error in first-level paging entry in Nested translation",
           "nested read permission fault"),
    0x77: ("SM: Write permission error in first-level paging entry in Nested translation",
           "nested write permission fault"),
    0x78: ("SM: Error attempting to access second-level paging entry", "the second-level table could not be read"),
    0x79: ("SM: Read/Write permission error in second-level paging entry",
           "the address is not mapped (or not writable) in the second-level (IOVA or guest-physical) table"),
    0x7A: ("SM: Non-zero reserved field set in second-level paging entry", "the second-level entry is malformed"),
    0x7B: ("SM: Invalid second-level page table pointer", "the second-level table pointer is bad"),
    0x7C: ("SM: A/D bit update needed in second-level entry when set up in no snoop", "A/D update not allowed"),
    0x80: ("SM: Address in first-level translation is not canonical", "the device used a non-canonical address"),
    0x81: ("SM: U/S set 0 for first-level translation with user privilege",
           "a user-mode request hit a supervisor page"),
    0x82: ("SM: No execute permission for request with PASID and ER=1", "execute request on a non-executable page"),
    0x83: ("SM: Address beyond the DMA hardware max", "the address exceeds what the hardware translates"),
    0x84: ("SM: Second-level entry address beyond the max", "second-level walk went out of range"),
    0x85: ("SM: No write permission for Write/AtomicOp request", "the page is mapped read-only"),
    0x86: ("SM: No read permission for Read/AtomicOp request", "the page is not readable"),
    0x87: ("SM: Invalid address-interrupt address", "an address in the interrupt range was used for DMA"),
    0x90: ("SM: A/D bit update needed in first-level entry when set up in no snoop", "A/D update not allowed"),
}


def fault_reason(code: int) -> tuple[str, str, bool]:
    """(kernel text, lesson, is an interrupt-remapping fault) for a VT-d fault reason code."""
    if code in IRQ_REASONS:
        return (*IRQ_REASONS[code], True)
    table = SM_REASONS if code >= 0x30 else DMA_REASONS
    if code in table:
        return (*table[code], False)
    return ("Unknown", f"fault reason {code:#x} is not in the VT-d tables this explorer knows", False)


# Fault status register bits, as "DRHD: handling fault status reg N" prints them.
FAULT_STATUS_BITS: tuple[tuple[int, str], ...] = (
    (1 << 0, "PFO: the fault recording registers overflowed, so later faults were dropped by the hardware"),
    (1 << 1, "PPF: primary faults pending"),
    (1 << 2, "AFO: advanced fault log overflowed"),
    (1 << 3, "APF: advanced faults pending"),
    (1 << 4, "IQE: the invalidation queue hit an error (a malformed descriptor)"),
    (1 << 5, "ICE: an invalidation completion error (a device TLB invalidation failed)"),
    (1 << 6, "ITE: an invalidation timed out (a device never acknowledged a device TLB invalidation)"),
    (1 << 7, "PRO: the page request queue overflowed, so page requests were dropped"),
)


def status_notes(status: int) -> list[str]:
    """What a fault status value says beyond 'faults are pending'."""
    return [text for bit, text in FAULT_STATUS_BITS if status & bit and bit != 1 << 1]


# Queued-invalidation descriptor types (intel_iommu:qi_submit), and the page group response's fields.
QI_PGRP_RESP_TYPE = 0x9
QI_RESP_CODES = {0x0: 0, 0x1: 1, 0xF: 2}  # VT-d response code -> ResponseCode (success, invalid, failure)


def decode_page_group_response(qw0: int, qw1: int) -> dict[str, int | bool]:
    """Fields of a VT-d page group response descriptor (VT-d spec, 'Page Group Response Descriptor')."""
    return {
        "pasid_present": bool(qw0 >> 4 & 1),
        "code": QI_RESP_CODES.get(qw0 >> 12 & 0xF, qw0 >> 12 & 0xF),
        "rid": qw0 >> 16 & 0xFFFF,
        "pasid": qw0 >> 32 & 0xFFFFF,
        "prg": qw1 >> 3 & 0x1FF,
        "last": bool(qw1 >> 2 & 1),
    }
