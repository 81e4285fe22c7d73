"""PCIe extended capabilities in a function's config space, decoded as `lspci -vvv` does, for PASID, PRI and ATS.

Register layouts follow the PCIe base specification (and include/uapi/linux/pci_regs.h, which names every bit used
here: PCI_EXT_CAP_ID_PASID 0x1b, PCI_EXT_CAP_ID_PRI 0x13, PCI_EXT_CAP_ID_ATS 0x0f). Extended capabilities start at
offset 0x100; config space beyond the first 64 bytes is readable by root only, so a shorter read says "not root"
rather than "no capability".
"""

from __future__ import annotations

import struct
from typing import Any

EXT_START = 0x100
CONFIG_SIZE = 4096
USER_VISIBLE = 64  # bytes of config space sysfs gives to a user without CAP_SYS_ADMIN
CAP_ATS, CAP_PRI, CAP_PASID = 0x0F, 0x13, 0x1B
MAX_CAPS = 256  # a list longer than this loops (a corrupt or hostile dump)

PRI_RESPONSE_FAILURE = 1 << 0  # PCI_PRI_STATUS_RF
PRI_UNEXPECTED_PRG = 1 << 1  # PCI_PRI_STATUS_UPRGI
PRI_STOPPED = 1 << 8  # PCI_PRI_STATUS_STOPPED
PRI_PASID_REQUIRED = 1 << 15  # PCI_PRI_STATUS_PASID: "PRG Response PASID Required"


class BadConfig(ValueError):
    """Config space bytes that cannot be a function's (too short, a looping capability list)."""


def _u16(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<H", b, at)[0])


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def decode(config: bytes) -> dict[str, Any]:
    """The function's identity and its PASID, PRI and ATS state; `extended` is False when the bytes stop before
    the extended capabilities (a non-root read), so their absence means nothing."""
    if len(config) < USER_VISIBLE:
        raise BadConfig(f"{len(config)} bytes of config space, fewer than the {USER_VISIBLE} every function has")
    out: dict[str, Any] = {"vendor": _u16(config, 0), "device_id": _u16(config, 2),
                           "class": _u32(config, 8) >> 8, "extended": len(config) > EXT_START}
    if not out["extended"]:
        return out
    seen: set[int] = set()
    at = EXT_START
    while at and at + 4 <= len(config):
        if at in seen or len(seen) >= MAX_CAPS or at < EXT_START or at & 3:
            raise BadConfig(f"extended capability list loops or points outside extended space at {at:#x}")
        seen.add(at)
        header = _u32(config, at)
        if header in (0, 0xFFFFFFFF):
            break
        cap_id, nxt = header & 0xFFFF, header >> 20
        if at + 16 <= len(config):
            if cap_id == CAP_PASID:
                out["pasid"] = _pasid(config, at)
            elif cap_id == CAP_PRI:
                out["pri"] = _pri(config, at)
            elif cap_id == CAP_ATS:
                out["ats"] = _ats(config, at)
        at = nxt
    return out


def _pasid(b: bytes, at: int) -> dict[str, Any]:
    cap, ctrl = _u16(b, at + 4), _u16(b, at + 6)
    return {"width": cap >> 8 & 0x1F, "exec": bool(cap & 2), "priv": bool(cap & 4), "enabled": bool(ctrl & 1),
            "exec_enabled": bool(ctrl & 2), "priv_enabled": bool(ctrl & 4)}


def _pri(b: bytes, at: int) -> dict[str, Any]:
    ctrl, status = _u16(b, at + 4), _u16(b, at + 6)
    return {"enabled": bool(ctrl & 1), "status": status,
            "response_failure": bool(status & PRI_RESPONSE_FAILURE),
            "unexpected_prg_index": bool(status & PRI_UNEXPECTED_PRG), "stopped": bool(status & PRI_STOPPED),
            "prg_response_pasid_required": bool(status & PRI_PASID_REQUIRED),
            "outstanding_capacity": _u32(b, at + 8), "outstanding_allocation": _u32(b, at + 12)}


def _ats(b: bytes, at: int) -> dict[str, Any]:
    cap, ctrl = _u16(b, at + 4), _u16(b, at + 6)
    return {"enabled": bool(ctrl & 0x8000), "stu": ctrl & 0x1F, "invalidate_queue_depth": cap & 0x1F or 32,
            "page_aligned_request": bool(cap & 0x20)}
