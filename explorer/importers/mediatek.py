"""MediaTek IOMMU (M4U) faults, drivers/iommu/mtk_iommu.c mtk_iommu_isr(), in the forms it has printed:

    4.6-5.9   mtk-iommu 10205000.iommu: fault type=0x5 iova=0xfd3c0000 pa=0x0 larb=0 port=3 layer=0 read
    5.10-5.17 ... fault type=0x5 iova=0x... pa=0x... master=0x843(larb=2 port=1) layer=0 write
    5.18 on   ... bank(0) fault type=0x5 iova=0x... pa=0x... master=0x843(larb=2 port=1) layer=0 write

(iova and pa were %x before 5.10, %llx since.) The device is the master behind the IOMMU: its local arbiter
(larb) and port, which the device tree maps to one engine.
"""

from __future__ import annotations

import re

from .core import LogLine, Parser

_FAULT = re.compile(r"(?<![\w.\-])(?P<iommu>[\w.\-@]+): (?:bank\((?P<bank>\d+)\) )?fault type=0x(?P<type>[0-9a-fA-F]+) "
                    r"iova=0x(?P<iova>[0-9a-fA-F]{1,16}) pa=0x(?P<pa>[0-9a-fA-F]{1,16}) "
                    r"(?:master=0x(?P<master>[0-9a-fA-F]+)\()?larb=(?P<larb>\d+) port=(?P<port>\d+)\)? "
                    r"layer=(?P<layer>\d+) (?P<rw>read|write)")
# REG_MMU_INT_ID / REG_MMU_FAULT_ST1 bits (F_INT_* in mtk_iommu.c)
_TYPES = ((0x1, "translation fault: the address is not mapped"), (0x2, "main TLB multi-hit"),
          (0x4, "invalid physical address"), (0x8, "TLB entry replacement fault"), (0x10, "TLB miss"),
          (0x20, "miss-transaction FIFO fault"), (0x40, "prefetch FIFO fault"))


class MediaTek(Parser):
    vendor = "mediatek"
    RULES = (("fault type=", _FAULT, "_fault"),)

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        larb, port, kind = int(m["larb"]), int(m["port"]), int(m["type"], 16)
        device = f"{m['iommu']}/larb={larb}/port={port}"
        what = "; ".join(text for bit, text in _TYPES if kind & bit) or "no fault bit set"
        reason = (f"MediaTek IOMMU fault type {kind:#x} ({what}) from larb {larb} port {port}, "
                  f"{'page table layer ' + m['layer']}, physical address {int(m['pa'], 16):#x}")
        if m["bank"] is not None:
            reason += f", bank {m['bank']}"
        row = self.sink.fault_row(line, device, None, addr=int(m["iova"], 16), code=kind, vendor=self.vendor,
                                  access=m["rw"], client=f"larb {larb} port {port}", reason=reason)
        self.sink.device(device)
        self.sink.emit(row)
        return True
