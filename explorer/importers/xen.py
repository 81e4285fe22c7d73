"""Xen's own VT-d fault lines (`xl dmesg`, the hypervisor console), xen/drivers/passthrough/vtd/iommu.c
iommu_page_fault_do_one():

    4.x-4.15  (XEN) [VT-D]DMAR:[DMA Read] Request device [0000:00:02.0] fault addr 7b5d2000, iommu reg = ffff82c0...
              (XEN) [VT-D]DMAR: reason 06 - PTE Read access is not set
    4.16 on   (XEN) [VT-D]DMAR:[DMA Write] Request device [0000:00:1f.2] fault addr d3f4f000       (%pp names the
              device)
              (XEN) [VT-D]INTR-REMAP: Request device [0000:00:1f.0] fault index 2
              (XEN) [VT-D]INTR-REMAP: reason 22 - Present field in the IRTE entry is clear

The reason comes on the next line, as two hex digits. Xen's SMMU, SMMUv3 and IPMMU drivers print Linux's lines
after "smmu: <node>:", "SMMUv3: <node>:" and "ipmmu: <node>:", which the Arm SMMU and IPMMU parsers read.
"""

from __future__ import annotations

import re

from ..events import R_FIELDS
from ..pci import normalize_pci
from .core import LogLine, PendingParser, append_raw
from .vtd_tables import fault_reason

_FAULT = re.compile(r"\[VT-D\](?:DMAR:\[(?P<type>DMA Read|DMA Write)\]|(?P<ir>INTR-REMAP):|UNKNOWN:) Request device "
                    r"\[(?P<bdf>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\] "
                    r"fault (?:addr (?P<addr>[0-9a-fA-F]{1,16})|index (?P<index>[0-9a-fA-F]{1,16}))")
_REASON = re.compile(r"\[VT-D\](?:DMAR|INTR-REMAP|UNKNOWN): reason (?P<code>[0-9a-fA-F]{2}) - (?P<text>.*)$")


class XenVtd(PendingParser):
    vendor = "xen-vtd"
    RULES = (("[VT-D]", _FAULT, "_fault"),)

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        device = normalize_pci(m["bdf"])
        access = "unknown" if m["type"] is None else ("read" if m["type"] == "DMA Read" else "write")
        self.hold(self.sink.fault_row(line, device, None, addr=None if m["addr"] is None else int(m["addr"], 16),
                                      vendor=self.vendor, access=access,
                                      reason="reason on the next line (not seen)"))
        self.sink.device(device)
        return True

    def more(self, line: LogLine) -> bool:
        row = self.pending
        if row is None or (m := _REASON.search(line.msg)) is None:
            return False
        code = int(m["code"], 16)
        text, lesson, irq = fault_reason(code)
        fields = row[R_FIELDS]
        fields["code"] = code
        what = "interrupt remapping fault" if irq else f"DMA {fields['access']}"
        fields["reason"] = f"{what} seen by Xen: {text} (reason {code:#04x}): {lesson}"
        append_raw(row, line)
        self.close()
        return True
