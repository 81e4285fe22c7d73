"""Adreno GPU faults reported by the msm DRM driver's SMMU fault handler (drivers/gpu/drm/msm/adreno/):

    4.x-5.x (a5xx_gpu.c)     *** gpu fault: iova=0000000001047dc0 flags=0 (0,0,0,0)        ("iova=%08lx, flags=%d")
    5.11 on (a6xx_gpu.c, then adreno_gpu.c adreno_fault_handler())
                             *** gpu fault: ttbr0=000000018bbd9000 iova=000000010bed0000 dir=READ type=TRANSLATION
                             source=CCU (0,0,0,1)

printed with pr_warn_ratelimited, so without a device: the device is the GPU ("adreno"). The SMMU's own line for
the same fault (arm-smmu / qcom-iommu "Unhandled context fault") is read by the Arm SMMU parser. The four numbers
are the CP scratch registers, kept in the raw text.
"""

from __future__ import annotations

import re

from .core import LogLine, Parser

DEVICE = "adreno"
_FAULT = re.compile(r"\*\*\* gpu fault: (?:ttbr0=(?P<ttbr0>[0-9a-fA-F]+) )?iova=(?:0x)?(?P<iova>[0-9a-fA-F]{1,16}),? "
                    r"(?:flags=(?P<flags>\d+)|dir=(?P<dir>READ|WRITE) type=(?P<type>\S+) source=(?P<source>\S+))")
IOMMU_FAULT_WRITE = 0x1  # include/linux/iommu.h


class MsmGpu(Parser):
    vendor = "msm-gpu"
    RULES = (("gpu fault:", _FAULT, "_fault"),)

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        if m["dir"] is not None:
            access, source = m["dir"].lower(), m["source"]
            reason = f"Adreno GPU SMMU {m['type'].lower()} fault from {source}, page table {m['ttbr0']}"
        else:
            flags = int(m["flags"])
            access, source = ("write" if flags & IOMMU_FAULT_WRITE else "read"), None
            reason = "Adreno GPU SMMU fault (this kernel printed no fault type or source)"
        row = self.sink.fault_row(line, DEVICE, None, addr=int(m["iova"], 16), vendor=self.vendor, access=access,
                                  client=source, driver="msm", reason=reason)
        self.sink.device(DEVICE, "msm")
        self.sink.emit(row)
        return True
