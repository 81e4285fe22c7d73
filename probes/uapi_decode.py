"""The argument structs of iommufd and VFIO-cdev ioctls, and their decoding from the bytes a probe copied.

Layouts follow include/uapi/linux/iommufd.h and include/uapi/linux/vfio.h of Linux 6.18 (checked against
torvalds/linux). Every struct starts with its own size (`size`, or `argsz` for VFIO): user space built against
older headers passes a shorter struct, so only the fields that lie inside that size are decoded. Fields are
named as in the header; `__reserved*` padding is left out. Directions say when a field is meaningful:

- "in": read at sys_enter, what the caller asked for;
- "out": read at sys_exit, only when the call succeeded (`out_*_id` of a new object, `out_fault_fd`, ...);
- "inout": the kernel may rewrite it (MAP's iova without FIXED_IOVA, VFIO attach's pt_id): the value after a
  successful call, else the one passed in.

VFIO_DEVICE_BIND_IOMMUFD .. DETACH_IOMMUFD_PT (VFIO_BASE + 18..20) share their numbers with the sPAPR TCE
container ioctls of POWER hosts; on x86 and arm64 the numbers are unambiguous.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from explorer.uapi import COMMANDS, IOCTL_TYPE, VFIO_DEVICE_ATTACH_PASID, command_name

_SCALARS = {"u8": "B", "u16": "H", "u32": "I", "s32": "i", "u64": "Q"}
VFIO_DEVICE_DETACH_PASID = 1 << 0
IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1


@dataclass(frozen=True, slots=True)
class UField:
    """One member of a uapi struct: name, byte offset, struct format code, direction."""

    name: str
    offset: int
    fmt: str
    io: str = "in"

    @property
    def end(self) -> int:
        return self.offset + struct.calcsize("<" + self.fmt)


@dataclass(frozen=True, slots=True)
class ULayout:
    """A uapi struct: its C name and its members at their natural (C) alignment."""

    struct: str
    fields: tuple[UField, ...]
    size: int

    def visible(self, size: int) -> tuple[UField, ...]:
        """The members a caller passing `size` bytes actually supplied."""
        return tuple(f for f in self.fields if f.end <= size)


def _layout(cname: str, decl: str) -> ULayout:
    """Build a layout from 'u32 size; u32 flags; u64 iova:inout; u32 in_type|out_type' (C order, natural
    alignment; 'a|b' is a union read as `a` on entry and `b` on exit; `__reserved` members are skipped)."""
    fields: list[UField] = []
    off = 0
    for item in filter(None, (s.strip() for s in decl.split(";"))):
        ctype, name = item.split()
        count = 1
        if name.endswith("]"):
            name, n = name[:-1].split("[")
            count = int(n)
        name, _, io = name.partition(":")
        fmt = _SCALARS[ctype]
        width = struct.calcsize(fmt)
        off = (off + width - 1) // width * width
        if "|" in name:
            name_in, name_out = name.split("|")
            fields += [UField(name_in, off, fmt, "in"), UField(name_out, off, fmt, "out")]
        elif not name.startswith("__reserved"):
            fields.append(UField(name, off, fmt, io or ("out" if name.startswith("out_") else "in")))
        off += width * count
    size = (off + 7) // 8 * 8 if any(f.fmt == "Q" for f in fields) else off
    return ULayout(cname, tuple(fields), size)


LAYOUTS: dict[str, ULayout] = {name: _layout(cname, decl) for name, (cname, decl) in {
    "IOMMU_DESTROY": ("iommu_destroy", "u32 size; u32 id"),
    "IOMMU_IOAS_ALLOC": ("iommu_ioas_alloc", "u32 size; u32 flags; u32 out_ioas_id"),
    "IOMMU_IOAS_ALLOW_IOVAS": ("iommu_ioas_allow_iovas",
                               "u32 size; u32 ioas_id; u32 num_iovas; u32 __reserved; u64 allowed_iovas"),
    "IOMMU_IOAS_COPY": ("iommu_ioas_copy", "u32 size; u32 flags; u32 dst_ioas_id; u32 src_ioas_id; u64 length; "
                                           "u64 dst_iova:inout; u64 src_iova"),
    "IOMMU_IOAS_IOVA_RANGES": ("iommu_ioas_iova_ranges", "u32 size; u32 ioas_id; u32 num_iovas:inout; "
                                                         "u32 __reserved; u64 allowed_iovas; u64 out_iova_alignment"),
    "IOMMU_IOAS_MAP": ("iommu_ioas_map", "u32 size; u32 flags; u32 ioas_id; u32 __reserved; u64 user_va; "
                                         "u64 length; u64 iova:inout"),
    "IOMMU_IOAS_UNMAP": ("iommu_ioas_unmap", "u32 size; u32 ioas_id; u64 iova; u64 length:inout"),
    "IOMMU_OPTION": ("iommu_option", "u32 size; u32 option_id; u16 op; u16 __reserved; u32 object_id; "
                                     "u64 val64:inout"),
    "IOMMU_VFIO_IOAS": ("iommu_vfio_ioas", "u32 size; u32 ioas_id:inout; u16 op; u16 __reserved"),
    "IOMMU_HWPT_ALLOC": ("iommu_hwpt_alloc", "u32 size; u32 flags; u32 dev_id; u32 pt_id; u32 out_hwpt_id; "
                                             "u32 __reserved; u32 data_type; u32 data_len; u64 data_uptr; "
                                             "u32 fault_id; u32 __reserved2"),
    "IOMMU_GET_HW_INFO": ("iommu_hw_info", "u32 size; u32 flags; u32 dev_id; u32 data_len:inout; u64 data_uptr; "
                                           "u32 in_data_type|out_data_type; u8 out_max_pasid_log2; "
                                           "u8 __reserved[3]; u64 out_capabilities"),
    "IOMMU_HWPT_SET_DIRTY_TRACKING": ("iommu_hwpt_set_dirty_tracking",
                                      "u32 size; u32 flags; u32 hwpt_id; u32 __reserved"),
    "IOMMU_HWPT_GET_DIRTY_BITMAP": ("iommu_hwpt_get_dirty_bitmap",
                                    "u32 size; u32 hwpt_id; u32 flags; u32 __reserved; u64 iova; u64 length; "
                                    "u64 page_size; u64 data"),
    "IOMMU_HWPT_INVALIDATE": ("iommu_hwpt_invalidate", "u32 size; u32 hwpt_id; u64 data_uptr; u32 data_type; "
                                                       "u32 entry_len; u32 entry_num:inout; u32 __reserved"),
    "IOMMU_FAULT_QUEUE_ALLOC": ("iommu_fault_alloc", "u32 size; u32 flags; u32 out_fault_id; u32 out_fault_fd"),
    "IOMMU_IOAS_MAP_FILE": ("iommu_ioas_map_file", "u32 size; u32 flags; u32 ioas_id; s32 fd; u64 start; "
                                                   "u64 length; u64 iova:inout"),
    "IOMMU_VIOMMU_ALLOC": ("iommu_viommu_alloc", "u32 size; u32 flags; u32 type; u32 dev_id; u32 hwpt_id; "
                                                 "u32 out_viommu_id; u32 data_len; u32 __reserved; u64 data_uptr"),
    "IOMMU_VDEVICE_ALLOC": ("iommu_vdevice_alloc", "u32 size; u32 viommu_id; u32 dev_id; u32 out_vdevice_id; "
                                                   "u64 virt_id"),
    "IOMMU_IOAS_CHANGE_PROCESS": ("iommu_ioas_change_process", "u32 size; u32 __reserved"),
    "IOMMU_VEVENTQ_ALLOC": ("iommu_veventq_alloc", "u32 size; u32 flags; u32 viommu_id; u32 type; "
                                                   "u32 veventq_depth; u32 out_veventq_id; u32 out_veventq_fd; "
                                                   "u32 __reserved"),
    "IOMMU_HW_QUEUE_ALLOC": ("iommu_hw_queue_alloc", "u32 size; u32 flags; u32 viommu_id; u32 type; u32 index; "
                                                     "u32 out_hw_queue_id; u64 nesting_parent_iova; u64 length"),
    "VFIO_DEVICE_BIND_IOMMUFD": ("vfio_device_bind_iommufd", "u32 argsz; u32 flags; s32 iommufd; u32 out_devid; "
                                                             "u64 token_uuid_ptr"),
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": ("vfio_device_attach_iommufd_pt",
                                      "u32 argsz; u32 flags; u32 pt_id:inout; u32 pasid"),
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": ("vfio_device_detach_iommufd_pt", "u32 argsz; u32 flags; u32 pasid"),
}.items()}

# Records read from and written to an iommufd fault queue's fd (read(): page faults; write(): responses).
PGFAULT = _layout("iommu_hwpt_pgfault", "u32 flags; u32 dev_id; u32 pasid; u32 grpid; u32 perm; u32 __reserved; "
                                        "u64 addr; u32 length; u32 cookie")
PAGE_RESPONSE = _layout("iommu_hwpt_page_response", "u32 cookie; u32 code")

ARG_BYTES = max(layout.size for layout in LAYOUTS.values())  # what a probe copies of each argument struct
assert set(LAYOUTS) <= set(COMMANDS.values()), "a layout for a command explorer.uapi does not name"


def is_tracked(cmd: int) -> bool:
    """The commands the capture keeps: every iommufd number (known or newer) and VFIO's iommufd binding."""
    if cmd >> 8 != IOCTL_TYPE:
        return False
    nr = cmd & 0xFF
    return nr >= 0x80 or cmd in COMMANDS


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
    return out


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


__all__ = ["ARG_BYTES", "LAYOUTS", "PAGE_RESPONSE", "PGFAULT", "UField", "ULayout", "command_name",
           "decode_args", "encode_args", "is_tracked", "pasid_of"]
