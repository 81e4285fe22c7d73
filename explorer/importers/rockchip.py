"""Rockchip IOMMU faults, drivers/iommu/rockchip-iommu.c rk_iommu_irq() (since 4.0):

    rk_iommu ff930300.iommu: Page fault at 0x00af1000 of type read
    rk_iommu ff930300.iommu: iova = 0x00af1000: dte_index: 0x2 pte_index: 0xf1 page_offset: 0x0
    rk_iommu ff930300.iommu: mmu_dte_addr: 0x2e4f0000 dte@0x2e4f0008: 0x2e4e5001 valid: 1 pte@0x... ...
    rk_iommu ff930300.iommu: BUS_ERROR occurred at 0x00af1000

The walk lines (log_iova()) stay with the fault they explain.
"""

from __future__ import annotations

import re

from .core import LogLine, PendingParser

_NAME = r"(?<![\w.\-])(?P<iommu>[\w.\-@]+): "
_FAULT = re.compile(_NAME + r"Page fault at (?:0x)?(?P<iova>[0-9a-fA-F]{1,16}) of type (?P<rw>read|write)")
_BUS = re.compile(_NAME + r"BUS_ERROR occurred at (?:0x)?(?P<iova>[0-9a-fA-F]{1,16})")
_WALK = re.compile(r"(?:iova = (?:0x)?[0-9a-fA-F]+: dte_index:|mmu_dte_addr: )")


class Rockchip(PendingParser):
    vendor = "rockchip"
    CONTEXT = _WALK
    RULES = (("Page fault at", _FAULT, "_fault"), ("BUS_ERROR", _BUS, "_bus"))

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        return self._hold(line, m, m["rw"], "page fault: the IOMMU found no valid page table entry for the "
                                            "address (log_iova's walk, when printed, shows which level was empty)")

    def _bus(self, line: LogLine, m: re.Match[str]) -> bool:
        return self._hold(line, m, "unknown", "bus error: the IOMMU's own page-table walk read failed")

    def _hold(self, line: LogLine, m: re.Match[str], access: str, reason: str) -> bool:
        device = m["iommu"]
        self.hold(self.sink.fault_row(line, device, None, addr=int(m["iova"], 16), vendor=self.vendor,
                                      access=access, reason=reason))
        self.sink.device(device)
        return True
