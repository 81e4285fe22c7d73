"""The argument structs of iommufd and VFIO-cdev ioctls decoded from the bytes a probe copied.

The layouts are explorer/uapi_structs.py's. User space built against older headers passes a shorter struct (its
`size` or `argsz` first), so only the fields that lie inside that size are decoded.

VFIO_DEVICE_BIND_IOMMUFD .. DETACH_IOMMUFD_PT (VFIO_BASE + 18..20) share their numbers with the sPAPR TCE
container ioctls of POWER hosts; on x86 and arm64 the numbers are unambiguous.
"""

from __future__ import annotations

import struct
from typing import Any

from explorer.uapi import (
    COMMANDS,
    IOCTL_TYPE,
    IOMMU_TEST_OPS,
    VFIO_BASE,
    VFIO_COMMANDS,
    VFIO_COMPAT_COMMANDS,
    VFIO_CONTAINER_PROBES,
    VFIO_DEVICE_ATTACH_PASID,
    command_name,
)
from explorer.uapi_structs import LAYOUTS, PAGE_RESPONSE, PGFAULT, TEST_CMD_WORDS, TEST_OP_LAYOUTS, UField, ULayout

VFIO_DEVICE_DETACH_PASID = 1 << 0
IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1
IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0  # 6.16+: in_data_type is an input only with this flag (else ignored)

ARG_BYTES = max(layout.size for layout in LAYOUTS.values())  # what a probe copies of each argument struct
assert set(LAYOUTS) <= set(COMMANDS.values()), "a layout for a command explorer.uapi does not name"


def is_tracked(cmd: int) -> bool:
    """The commands the capture keeps: every iommufd number (known or newer), VFIO's iommufd binding and the
    VFIO type1 container calls iommufd also answers."""
    if cmd >> 8 != IOCTL_TYPE:
        return False
    nr = cmd & 0xFF
    return nr >= 0x80 or cmd in COMMANDS


def _test_cmd_args(args: dict[str, Any]) -> dict[str, Any]:
    """IOMMU_TEST_CMD's union named for its op (iommufd_test.h); an op this table does not know keeps its words."""
    op = args.get("op")
    layout = TEST_OP_LAYOUTS.get(op) if isinstance(op, int) else None
    words = [args.pop(f"w{i}") for i in range(TEST_CMD_WORDS) if f"w{i}" in args]
    if op in IOMMU_TEST_OPS:
        args["op"] = IOMMU_TEST_OPS[op]
    if layout is None:
        return args
    raw = struct.pack(f"<{len(words)}I", *words)
    for f in layout.fields:
        if f.end <= len(raw):
            args[f.name] = struct.unpack_from("<" + f.fmt, raw, f.offset)[0]
    return args


def _hw_info_args(args: dict[str, Any]) -> dict[str, Any]:
    """in_data_type is an input only under IOMMU_HW_INFO_FLAG_INPUT_TYPE (6.16+); before 6.16 the same bytes
    are out_data_type alone and flags must be 0, so without the flag it is not shown as an input."""
    if not args.get("flags", 0) & IOMMU_HW_INFO_FLAG_INPUT_TYPE:
        args.pop("in_data_type", None)
    return args


REFINED = ("IOMMU_TEST_CMD", "IOMMU_GET_HW_INFO")
_REFINERS = {"IOMMU_TEST_CMD": _test_cmd_args, "IOMMU_GET_HW_INFO": _hw_info_args}
REFINED = frozenset(_REFINERS)  # commands whose arguments are not a flat layout's: decoded call by call


def refine_args(name: str, args: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decoded argument dicts made exact where a flat layout cannot be: a union chosen by an op or a flag."""
    refine = _REFINERS.get(name)
    return [refine(dict(a)) for a in args] if refine else args


def pasid_of(name: str, args: dict[str, Any]) -> int | None:
    """The PASID a call names, when it names one (VFIO attach/detach with the PASID flag)."""
    if name == "VFIO_DEVICE_ATTACH_IOMMUFD_PT" and args.get("flags", 0) & VFIO_DEVICE_ATTACH_PASID:
        return args.get("pasid")
    if name == "VFIO_DEVICE_DETACH_IOMMUFD_PT" and args.get("flags", 0) & VFIO_DEVICE_DETACH_PASID:
        return args.get("pasid")
    return None


def decode_args(name: str, entry: bytes, exit_: bytes | None, ret: int | None) -> dict[str, Any]:
    """The argument struct of call `name` as a dict, from its bytes at entry and (optionally) at exit.

    `entry` holds what the probe could copy (at most the struct's own size); unknown commands decode to {}.
    """
    layout = LAYOUTS.get(name)
    if layout is None or len(entry) < 4:
        return {}
    size = struct.unpack_from("<I", entry)[0]
    ok = ret == 0 and exit_ is not None
    out: dict[str, Any] = {}
    for f in layout.visible(min(size, len(entry))):
        if f.io == "in" or (f.io == "inout" and not ok):
            out[f.name] = struct.unpack_from("<" + f.fmt, entry, f.offset)[0]
        elif ok and f.end <= len(exit_ or b""):
            out[f.name] = struct.unpack_from("<" + f.fmt, exit_, f.offset)[0]  # type: ignore[arg-type]
    return refine_args(name, [out])[0]


def encode_args(name: str, args: dict[str, Any]) -> bytes:
    """The bytes user space would pass for `args` (tests and the load generator issue real calls with them);
    the size member defaults to the struct's full size."""
    layout = LAYOUTS[name]
    buf = bytearray(layout.size)
    size_name = layout.fields[0].name
    values = {size_name: layout.size, **args}
    for f in layout.fields:
        if f.name in values and f.io != "out":
            struct.pack_into("<" + f.fmt, buf, f.offset, values[f.name])
    return bytes(buf)


__all__ = ["ARG_BYTES", "LAYOUTS", "PAGE_RESPONSE", "PGFAULT", "VFIO_BASE", "VFIO_COMMANDS", "VFIO_COMPAT_COMMANDS",
           "VFIO_CONTAINER_PROBES", "UField", "ULayout",
           "command_name", "decode_args", "encode_args", "is_tracked", "pasid_of", "refine_args"]
