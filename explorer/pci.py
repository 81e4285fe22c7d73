"""PCI device names as the kernel prints them ('0000:6a:01.0'), from whatever a log, a trace or a hardware
descriptor gives: importers and probes name a device the same way, so their recordings line up."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4096)
def normalize_pci(bdf: str, segment: str | None = None) -> str:
    """'03:00.0', '0x03:0x00.0' or '0000:03:00.0' to the kernel's device name '0000:03:00.0' (anything else is
    kept as printed)."""
    s = bdf.lower().replace("0x", "")
    parts = s.split(":")
    if len(parts) == 3:
        seg, bus, devfn = parts
    else:
        seg, bus, devfn = (segment or "0000"), parts[0], parts[-1]
    dev, _, fn = devfn.partition(".")
    try:
        return f"{int(seg, 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{int(fn or '0', 16):x}"
    except ValueError:
        return bdf


def rid_to_pci(rid: int, segment: int = 0) -> str:
    """A 16-bit requester id (bus << 8 | devfn) as a PCI device name."""
    return f"{segment:04x}:{rid >> 8 & 0xFF:02x}:{rid >> 3 & 0x1F:02x}.{rid & 7:x}"
