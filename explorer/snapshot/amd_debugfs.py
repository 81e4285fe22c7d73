"""The AMD IOMMU's device table entry as `<debugfs>/iommu/amd/devtbl` prints it for the device last written to
`devid` (drivers/iommu/amd/debugfs.c dump_dte(), 6.17 on; 7.3.4 as read here):

    DeviceId             QWORD[3]         QWORD[2]         QWORD[1]         QWORD[0] iommu
    0000:01:00.0 0000000000000000 20000001373b8013 0000000000000038 6000000114d7b603 iommu3

or "Enter a valid device ID to 'devid' file" when none was written. The bits that say whether the device's PASIDs
can translate are in QWORD[0] (amd_iommu_types.h): V 0, TV 1, mode 11:9 (host page-table levels), PPR 52, GIOV 54,
GV 55 (guest, i.e. PASID, translation through the device's GCR3 table) and GLX 57:56 (that table's levels);
the domain ID is QWORD[1] bits 15:0.
"""

from __future__ import annotations

import re
from typing import Any

_ROW = re.compile(r"(?P<dev>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])((?: [0-9a-f]{16}){4}) iommu(?P<n>\d+)\s*$")


def devtbl(text: str) -> dict[str, Any]:
    """{"device", "iommu", "qwords" [0..3], "valid", "translation", "mode", "ppr", "giov", "gv", "glx",
    "domain_id"}, or {"device": None, "why"} when the file shows no entry (its own words)."""
    for line in text.splitlines():
        if (m := _ROW.match(line)) is not None:
            q3, q2, q1, q0 = (int(v, 16) for v in m[2].split())
            return {"device": m["dev"], "iommu": f"iommu{m['n']}", "qwords": [q0, q1, q2, q3],
                    "valid": bool(q0 & 1), "translation": bool(q0 >> 1 & 1), "mode": q0 >> 9 & 7,
                    "ppr": bool(q0 >> 52 & 1), "giov": bool(q0 >> 54 & 1), "gv": bool(q0 >> 55 & 1),
                    "glx": q0 >> 56 & 3, "domain_id": q1 & 0xFFFF}
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return {"device": None, "why": first[:120] or "empty: no IOMMU serves the device written to devid"}
