"""Renesas IPMMU (VMSA) faults, drivers/iommu/ipmmu-vmsa.c ipmmu_domain_irq(), and Xen's port of it:

    3.x-4.x  ipmmu-vmsa e67b0000.mmu: Unhandled fault: status 0x00000101 iova 0xfe000000   (iova %08x)
    5.x on   ipmmu-vmsa e67b0000.mmu: Unhandled fault: status 0x00000101 iova 0x7c0000000  (iova %lx)
             ipmmu-vmsa e67b0000.mmu: Multiple TLB hits @0x...  /  Page Table Walk Abort @0x...
    Xen      (XEN) ipmmu: /soc/iommu@e67b0000: Unhandled fault: status 0x00000101 iova 0x...
             (xen/drivers/passthrough/arm/ipmmu-vmsa.c: dev_print's "ipmmu: %s: " prefix, the node's full path)

The IPMMU does not say which master faulted (the driver's TODO says so), so the device is the IPMMU.
"""

from __future__ import annotations

import re

from .core import LogLine, Parser

_NAME = r"(?<![\w.\-/@])(?P<mmu>[\w.\-/@]+): "
_FAULT = re.compile(_NAME + r"Unhandled fault: status 0x(?P<status>[0-9a-fA-F]{1,8}) "
                            r"iova 0x(?P<iova>[0-9a-fA-F]{1,16})")
_OTHER = re.compile(_NAME + r"(?P<what>Multiple TLB hits|Page Table Walk Abort) @0x(?P<iova>[0-9a-fA-F]{1,16})")
# IMSTR bits (ipmmu-vmsa.c)
_STATUS = ((1 << 0, "translation fault"), (1 << 1, "page fault"), (1 << 2, "page table walk abort"),
           (1 << 4, "multiple TLB hits"))


class Ipmmu(Parser):
    vendor = "ipmmu"
    RULES = (("Unhandled fault:", _FAULT, "_fault"), (" @0x", _OTHER, "_other"))

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        status = int(m["status"], 16)
        what = ", ".join(text for bit, text in _STATUS if status & bit) or "no known IMSTR bit"
        return self._emit(line, m, status, f"IPMMU fault, IMSTR {status:#x} ({what}): no handler took it; the "
                                           "IPMMU does not name the master")

    def _other(self, line: LogLine, m: re.Match[str]) -> bool:
        return self._emit(line, m, None, f"IPMMU {m['what'].lower()}")

    def _emit(self, line: LogLine, m: re.Match[str], status: int | None, reason: str) -> bool:
        device = m["mmu"]
        self.sink.emit(self.sink.fault_row(line, device, None, addr=int(m["iova"], 16), code=status,
                                           vendor=self.vendor, access="unknown", reason=reason))
        self.sink.device(device)
        return True
