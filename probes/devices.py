"""Devices from sysfs: which PCI functions can use PASIDs (their PASID capability), and which device a VFIO
device fd stands for.

The header's device table gives the simulator each device's PASID width; only devices whose PASID capability
is readable are listed (reading extended config space needs root).
"""

from __future__ import annotations

import os
from pathlib import Path

from explorer.recording import DeviceInfo
from explorer.snapshot import iommu_limits, pci_caps

PCI_DEVICES = Path("/sys/bus/pci/devices")
IOMMUS = Path("/sys/class/iommu")


def pasid_device(name: str, config: bytes, driver: str | None = None, iommu: str | None = None,
                 iommu_max_pasids: int | None = None) -> DeviceInfo | None:
    """A DeviceInfo when the config space shows a PASID capability (decoded as a snapshot decodes it), else None.
    `iommu_max_pasids`, the IOMMU's own limit where sysfs shows it, is kept beside the capability's width: the
    kernel gives the device min(both) (dev_iommu_get_max_pasids())."""
    try:
        fn = pci_caps.decode(config)
    except pci_caps.BadConfig:
        return None
    cap = fn.get("pasid")
    if cap is None:
        return None
    extra: dict[str, object] = {"pasid_exec": cap["exec"], "pasid_priv": cap["priv"]}
    if iommu is not None:
        extra["iommu"] = iommu
    if iommu_max_pasids is not None:
        extra["iommu_max_pasids"] = iommu_max_pasids
    return DeviceInfo(name, pasid_width=cap["width"], pri="pri" in fn, ats="ats" in fn, driver=driver, extra=extra)


def scan(root: Path = PCI_DEVICES, iommus: Path = IOMMUS) -> list[DeviceInfo]:
    """Every PCI function here whose PASID capability can be read, with its IOMMU's PASID limit where shown."""
    out = []
    units = iommu_limits.read_units(iommus)[0]
    for dev in sorted(root.glob("*")) if root.is_dir() else ():
        try:
            config = (dev / "config").read_bytes()
        except OSError:
            continue
        driver = os.path.basename(os.readlink(dev / "driver")) if (dev / "driver").is_symlink() else None
        unit = iommu_limits.device_unit(dev)
        info = pasid_device(dev.name, config, driver, unit, units.get(unit or "", {}).get("max_pasids"))
        if info is not None:
            out.append(info)
    return out


def vfio_device_of_fd(tgid: int, fd: int) -> str | None:
    """The PCI device behind a process's VFIO device fd (/dev/vfio/devices/vfioN), while the fd is open."""
    try:
        target = os.readlink(f"/proc/{tgid}/fd/{fd}")
        if not target.startswith("/dev/vfio/devices/"):
            return None
        return Path(f"/sys/class/vfio-dev/{os.path.basename(target)}/device").resolve().name
    except OSError:
        return None
