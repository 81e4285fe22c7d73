"""Devices from sysfs: which PCI functions can use PASIDs (their PASID capability), and which device a VFIO
device fd stands for.

The header's device table gives the simulator each device's PASID width; only devices whose PASID capability
is readable are listed (reading extended config space needs root).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from explorer.recording import DeviceInfo

PCI_DEVICES = Path("/sys/bus/pci/devices")
EXT_CAP_START = 0x100
CAP_ATS, CAP_PRI, CAP_PASID = 0x0F, 0x13, 0x1B


def extended_caps(config: bytes) -> dict[int, int]:
    """PCIe extended capability id -> offset, walking the list from 0x100 (PCIe base spec 7.6)."""
    caps: dict[int, int] = {}
    off = EXT_CAP_START
    while EXT_CAP_START <= off <= len(config) - 4 and off not in caps.values():
        (header,) = struct.unpack_from("<I", config, off)
        if header in (0, 0xFFFFFFFF):
            break
        caps.setdefault(header & 0xFFFF, off)
        off = header >> 20
    return caps


def pasid_device(name: str, config: bytes, driver: str | None = None) -> DeviceInfo | None:
    """A DeviceInfo when the config space shows a PASID capability, else None."""
    caps = extended_caps(config)
    off = caps.get(CAP_PASID)
    if off is None or off + 8 > len(config):
        return None
    (cap,) = struct.unpack_from("<H", config, off + 4)  # PASID Capability Register
    width = (cap >> 8) & 0x1F
    return DeviceInfo(name, pasid_width=width, pri=CAP_PRI in caps, ats=CAP_ATS in caps, driver=driver,
                      extra={"pasid_exec": bool(cap & 2), "pasid_priv": bool(cap & 4)})


def scan(root: Path = PCI_DEVICES) -> list[DeviceInfo]:
    """Every PCI function here whose PASID capability can be read."""
    out = []
    for dev in sorted(root.glob("*")) if root.is_dir() else ():
        try:
            config = (dev / "config").read_bytes()
        except OSError:
            continue
        driver = os.path.basename(os.readlink(dev / "driver")) if (dev / "driver").is_symlink() else None
        info = pasid_device(dev.name, config, driver)
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
