"""Samsung Exynos System MMU faults, drivers/iommu/exynos-iommu.c exynos_sysmmu_irq():

    3.x-5.x  exynos-sysmmu 10a60000.sysmmu: 13e00000.fimc: PAGE FAULT occurred at 0x42f00000
             (older: "PAGE FAULT occurred at 0x... by 13e00000.fimc(Page table base: 0x...)")
    6.x      exynos-sysmmu 14860000.sysmmu: 14830000.decon: [READ] PAGE FAULT occurred at 0x6715b3e0
             exynos-sysmmu 14860000.sysmmu: Page table base: 0x0000000044a14000
             exynos-sysmmu 14860000.sysmmu:   Lv1 entry: 0x4205001

The device is the master the System MMU serves, when printed, else the System MMU itself. A fault nobody handles
ends in a panic ("Unrecoverable System MMU Fault!").
"""

from __future__ import annotations

import re

from .core import LogLine, PendingParser

_FAULT = re.compile(r"(?<![\w.\-])(?P<mmu>[\w.\-@]+): (?:(?P<master>[\w.\-@]+): )?(?:\[(?P<rw>READ|WRITE)\] )?"
                    r"(?P<name>[A-Z0-9][A-Z0-9 _\-]*?) FAULT occurred at (?:0x)?(?P<addr>[0-9a-fA-F]{1,16})"
                    r"(?: by (?P<by>[\w.\-@]+))?")
_CONTEXT = re.compile(r"(?:Page table base:|Lv[12] entry:|\(?[Pp]age table base)")


class Exynos(PendingParser):
    vendor = "exynos"
    CONTEXT = _CONTEXT
    RULES = (("FAULT occurred", _FAULT, "_fault"),)

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        device = m["master"] or m["by"] or m["mmu"]
        access = m["rw"].lower() if m["rw"] else ("write" if m["name"].startswith("AW") else
                                                  "read" if m["name"].startswith("AR") else "unknown")
        reason = f"System MMU {m['name']} fault on {m['mmu']}"
        if m["name"] == "PAGE":
            reason += ": no valid page table entry for the address"
        self.hold(self.sink.fault_row(line, device, None, addr=int(m["addr"], 16), vendor=self.vendor,
                                      access=access, reason=reason))
        self.sink.device(device)
        return True
