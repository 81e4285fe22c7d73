"""Reading PASID capabilities from PCI config space for the recording's device table."""

from __future__ import annotations

import struct
from pathlib import Path

from explorer.snapshot.pci_caps import CAP_ATS, CAP_PASID, CAP_PRI
from probes.devices import pasid_device, scan


def config(*caps: tuple[int, bytes]) -> bytes:
    """A 4 KiB config space with the given extended capabilities chained from 0x100."""
    space = bytearray(4096)
    off = 0x100
    for i, (cap_id, body) in enumerate(caps):
        nxt = off + 0x40 if i + 1 < len(caps) else 0
        struct.pack_into("<I", space, off, cap_id | 1 << 16 | nxt << 20)
        space[off + 4:off + 4 + len(body)] = body
        off = nxt
    return bytes(space)


def test_a_device_with_a_pasid_capability_gets_its_width_pri_and_ats() -> None:
    pasid_cap = struct.pack("<HH", 0x0006 | 20 << 8, 0)  # exec + priv supported, 20-bit PASIDs
    space = config((CAP_ATS, b"\0" * 4), (CAP_PRI, b"\0" * 12), (CAP_PASID, pasid_cap))
    info = pasid_device("0000:6a:01.0", space, "idxd")
    assert info is not None
    assert (info.pasid_width, info.pri, info.ats, info.driver) == (20, True, True, "idxd")
    assert info.extra == {"pasid_exec": True, "pasid_priv": True}


def test_devices_without_pasid_or_with_short_or_looping_config_are_skipped() -> None:
    assert pasid_device("a", config((CAP_ATS, b"\0" * 4))) is None
    assert pasid_device("b", bytes(256)) is None  # unprivileged reads stop at the legacy 256 bytes
    looping = bytearray(config((CAP_ATS, b"")))
    struct.pack_into("<I", looping, 0x100, CAP_ATS | 1 << 16 | 0x100 << 20)  # points at itself
    assert pasid_device("c", bytes(looping)) is None


def test_scan_reads_sysfs_layout(tmp_path: Path) -> None:
    dev = tmp_path / "0000:6a:01.0"
    dev.mkdir()
    (dev / "config").write_bytes(config((CAP_PASID, struct.pack("<HH", 8 << 8, 0))))
    (dev / "driver").symlink_to(tmp_path / "idxd")
    (tmp_path / "0000:00:02.0").mkdir()
    (tmp_path / "0000:00:02.0" / "config").write_bytes(bytes(256))
    (info,) = scan(tmp_path)
    assert (info.name, info.pasid_width, info.driver, info.pri) == ("0000:6a:01.0", 8, "idxd", False)
