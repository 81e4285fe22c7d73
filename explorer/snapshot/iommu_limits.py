"""Each IOMMU's own PASID limit, read from the registers its driver shows in sysfs, and which IOMMU each device sits
behind: a device's usable PASIDs are min(its PCIe PASID capability, its IOMMU's limit) (drivers/iommu/iommu.c
dev_iommu_get_max_pasids(), 6.2+), and global PASIDs come from 1..max_pasids-1.

- Intel VT-d: /sys/class/iommu/dmarN/intel-iommu/ecap. dmar.c alloc_iommu(): "A value of N in PSS field of eCap
  register indicates hardware supports PASID field of N+1 bits", max_pasids = 2 << ecap_pss when
  pasid_supported() (scalable mode, ecap_smts bit 43, and ecap_pasid bit 40); ecap_pss is bits 39:35
  (drivers/iommu/intel/iommu.h). Scalable mode can be turned off on the command line (intel_iommu=sm_off), which
  sysfs does not show: the Intel debugfs's per-IOMMU mode says it where readable.
- AMD-Vi: /sys/class/iommu/ivhdN/amd-iommu/features. init.c iommu_init_pci(): with FEATURE_GT (EFR bit 4),
  max_pasids = (1 << (PASmax + 1)) - 1, PASmax = EFR bits 36:32 (FEATURE_PASMAX). The file prints one value (EFR)
  on older kernels and two (EFR and EFR2, in an order that changed between versions) on newer ones: only the
  one-value form is decoded, the other is kept as text and named as not decoded.
- Arm SMMUv3 (SSIDSIZE) and the others show no PASID limit in sysfs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_HEX = re.compile(r"\s*(?:0x)?([0-9a-fA-F]{1,16})\s*$")


def vtd_max_pasids(ecap: int) -> int:
    """dev->iommu->max_pasids a VT-d unit with this ecap gives (0: no PASID support), scalable mode assumed."""
    if not (ecap >> 43) & 1 or not (ecap >> 40) & 1:
        return 0
    return 2 << ((ecap >> 35) & 0x1F)


def amd_max_pasids(efr: int) -> int:
    """dev->iommu->max_pasids an AMD IOMMU with this EFR gives (0: no guest translation, no PASID)."""
    if not (efr >> 4) & 1:
        return 0
    return (1 << (((efr >> 32) & 0x1F) + 1)) - 1


def read_units(iommus: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """({unit: {driver, max_pasids | None, from | why}}, {what: why not}) for each IOMMU sysfs lists."""
    units: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, str] = {}
    try:
        names = sorted(p.name for p in iommus.iterdir())
    except OSError:
        return units, unreadable
    for name in names:
        unit = iommus / name
        if (unit / "intel-iommu").is_dir():
            units[name] = _decode(unit / "intel-iommu/ecap", "intel", vtd_max_pasids, "ecap PSS", unreadable)
        elif (unit / "amd-iommu").is_dir():
            units[name] = _decode(unit / "amd-iommu/features", "amd", amd_max_pasids, "EFR PASmax", unreadable)
        else:
            units[name] = {"driver": None, "max_pasids": None,
                           "why": "this IOMMU shows no PASID limit in sysfs (SMMUv3's SSIDSIZE, others)"}
    return units, unreadable


def _decode(path: Path, driver: str, decode: Any, field: str, unreadable: dict[str, str]) -> dict[str, Any]:
    try:
        text = path.read_text(errors="replace")[:200]
    except OSError as e:
        unreadable[f"iommu limit {path.parent.parent.name}"] = f"{path}: {e.strerror or e}"
        return {"driver": driver, "max_pasids": None, "why": f"{path.name} unreadable"}
    m = _HEX.match(text)
    if m is None:
        why = (f"{path}: line 1: {text.strip()[:60]!r} is two registers (EFR, EFR2) in a kernel-dependent order, "
               "not decoded" if ":" in text else f"{path}: line 1: not a hex register value")
        unreadable[f"iommu limit {path.parent.parent.name}"] = why
        return {"driver": driver, "max_pasids": None, "why": why, "raw": text.strip()[:60]}
    return {"driver": driver, "max_pasids": decode(int(m.group(1), 16)), "from": f"{path.name} {field}"}


def device_unit(device: Path) -> str | None:
    """The IOMMU a PCI function sits behind (its sysfs `iommu` link), or None."""
    link = device / "iommu"
    try:
        return link.resolve().name if link.is_symlink() else None
    except OSError:
        return None


def limit_width(cap_width: int, max_pasids: int | None) -> int:
    """The PASID width the kernel lets a device use: its capability's, narrowed to the IOMMU's limit."""
    if max_pasids is None:
        return cap_width
    return min(cap_width, max(max_pasids - 1, 0).bit_length())
