"""Arm SMMU decoding tables: SMMUv3 event record ids and fields, SMMUv2 fault status and syndrome bits.

SMMUv3 ids and record layout follow drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h (EVT_ID_*, EVTQ_*) and the
SMMUv3 architecture's event table; SMMUv2 bits follow drivers/iommu/arm/arm-smmu/arm-smmu.h (ARM_SMMU_CB_FSR_*,
ARM_SMMU_CB_FSYNR0_*, ARM_SMMU_sGFSR_USF) and the SMMUv2 architecture's sGFSR layout.
"""

from __future__ import annotations

from dataclasses import dataclass

# id -> (name, meaning)
V3_EVENTS: dict[int, tuple[str, str]] = {
    0x01: ("F_UUT", "unsupported upstream transaction"),
    0x02: ("C_BAD_STREAMID", "the StreamID is outside the stream table: the device is unknown to the SMMU"),
    0x03: ("F_STE_FETCH", "the stream table entry could not be fetched"),
    0x04: ("C_BAD_STE", "the device's stream table entry is invalid"),
    0x05: ("F_BAD_ATS_TREQ", "an ATS translation request was not allowed"),
    0x06: ("F_STREAM_DISABLED", "the device's stream is disabled: it is not attached"),
    0x07: ("F_TRANSL_FORBIDDEN", "the device sent a pre-translated (ATS) address while translation is forbidden"),
    0x08: ("C_BAD_SUBSTREAMID", "the SubstreamID (PASID) is invalid for this stream: a PASID the device was "
                                "never given, or one already torn down"),
    0x09: ("F_CD_FETCH", "the context descriptor for the SubstreamID could not be fetched"),
    0x0A: ("C_BAD_CD", "the context descriptor for the SubstreamID (PASID) is invalid: the PASID is not "
                       "attached"),
    0x0B: ("F_WALK_EABT", "the page-table walk hit an external abort"),
    0x10: ("F_TRANSLATION", "translation fault: the address is not mapped"),
    0x11: ("F_ADDR_SIZE", "address size fault: the address is out of range for the tables"),
    0x12: ("F_ACCESS", "access flag fault"),
    0x13: ("F_PERMISSION", "permission fault: the page is mapped but not for this access"),
    0x20: ("F_TLB_CONFLICT", "TLB conflict"),
    0x21: ("F_CFG_CONFLICT", "configuration cache conflict"),
    0x24: ("E_PAGE_REQUEST", "a speculative page request"),
    0x25: ("F_VMS_FETCH", "the virtual machine structure could not be fetched"),
}

CLASS_NAMES = ("CD fetch", "Stage 1 translation table fetch", "Input address caused fault", "Reserved")


@dataclass(frozen=True, slots=True)
class V3Event:
    """An SMMUv3 event record's fields, decoded from the four 64-bit words the kernel dumps."""

    id: int
    sid: int
    ssv: bool
    ssid: int
    stag: int
    stall: bool
    privileged: bool
    instruction: bool
    read: bool
    s2: bool
    cls: int
    iova: int
    ipa: int

    @classmethod
    def decode(cls, words: list[int]) -> V3Event:
        w = (words + [0, 0, 0, 0])[:4]
        return cls(id=w[0] & 0xFF, sid=w[0] >> 32 & 0xFFFFFFFF, ssv=bool(w[0] >> 11 & 1),
                   ssid=w[0] >> 12 & 0xFFFFF, stag=w[1] & 0xFFFF, stall=bool(w[1] >> 31 & 1),
                   privileged=bool(w[1] >> 33 & 1), instruction=bool(w[1] >> 34 & 1), read=bool(w[1] >> 35 & 1),
                   s2=bool(w[1] >> 39 & 1), cls=w[1] >> 40 & 3, iova=w[2], ipa=w[3] & 0x000FFFFFFFFFF000)

    @property
    def is_translation(self) -> bool:
        return 0x10 <= self.id <= 0x13

    def access_text(self) -> str:
        return (f"{'privileged' if self.privileged else 'unprivileged'} "
                f"{'instruction' if self.instruction else 'data'} {'read' if self.read else 'write'}, "
                f"stage {2 if self.s2 else 1}, {CLASS_NAMES[self.cls]}")


def v3_event(id_: int) -> tuple[str, str]:
    return V3_EVENTS.get(id_, (f"event {id_:#04x}", "an event id this explorer does not know"))


# SMMUv2 context bank fault status (FSR) bits, most telling first.
FSR_BITS: tuple[tuple[int, str, str], ...] = (
    (1 << 1, "TF", "translation fault: the address is not mapped for this context"),
    (1 << 3, "PF", "permission fault: mapped, but not for this access"),
    (1 << 2, "AFF", "address size fault"),
    (1 << 4, "EF", "external fault during the table walk"),
    (1 << 7, "ASF", "access flag fault"),
    (1 << 5, "TLBMCF", "TLB multi-hit: two entries match (a missing invalidation)"),
    (1 << 6, "TLBLKF", "TLB lock fault"),
    (1 << 8, "UUT", "unsupported upstream transaction"),
    (1 << 30, "SS", "the transaction is stalled, waiting for software to resume or terminate it"),
    (1 << 31, "MULTI", "more faults arrived before this one was cleared"),
)

# SMMUv2 global fault status (sGFSR) bits: faults no context bank took, so the stream is the only lead.
GFSR_BITS: tuple[tuple[int, str, str], ...] = (
    (1 << 1, "USF", "unidentified stream: a device whose StreamID matches no stream mapping entry did DMA (it is not "
                    "described to the SMMU in the device tree or IORT, or its driver never attached it), and "
                    "bypass is disabled"),
    (1 << 2, "SMCF", "stream match conflict: the StreamID matched more than one stream mapping entry"),
    (1 << 0, "ICF", "invalid context: the stream is mapped to a context bank that is not set up"),
    (1 << 3, "UCBF", "the stream is mapped to a context bank this SMMU does not implement"),
    (1 << 4, "UCIF", "unimplemented context interrupt"),
    (1 << 5, "CAF", "configuration access fault: software touched an SMMU register it may not"),
    (1 << 6, "EF", "external fault: the interconnect returned an error to the SMMU"),
    (1 << 7, "PF", "permission fault on an SMMU configuration access"),
    (1 << 8, "UUT", "unsupported upstream transaction"),
    (1 << 31, "MULTI", "more global faults arrived before this one was cleared"),
)
GFSR_USF = 1 << 1

FSYNR0_WNR = 1 << 4
FSYNR0_PNU = 1 << 5
FSYNR0_IND = 1 << 6
FSYNR0_PTWF = 1 << 10


def fsr_text(fsr: int) -> tuple[str, str]:
    """(short flag names, the first fault's meaning) for a context bank's FSR value."""
    return _bits_text(FSR_BITS, fsr)


def gfsr_text(gfsr: int) -> tuple[str, str]:
    """The same for a global fault status (sGFSR) value."""
    return _bits_text(GFSR_BITS, gfsr)


def _bits_text(bits: tuple[tuple[int, str, str], ...], value: int) -> tuple[str, str]:
    names = [n for bit, n, _ in bits if value & bit]
    meaning = next((m for bit, _, m in bits if value & bit), "no fault bit set")
    return " ".join(names) or "none", meaning


def fsynr0_text(fsynr: int) -> str:
    return (f"{'privileged' if fsynr & FSYNR0_PNU else 'unprivileged'} "
            f"{'instruction' if fsynr & FSYNR0_IND else 'data'} {'write' if fsynr & FSYNR0_WNR else 'read'}"
            f"{', during the page-table walk' if fsynr & FSYNR0_PTWF else ''}, level {fsynr & 3}")
