"""The argument structs of iommufd and VFIO-cdev ioctls: their members, offsets and directions.

Layouts follow include/uapi/linux/iommufd.h and include/uapi/linux/vfio.h of Linux 6.18 (checked against
torvalds/linux). Every struct starts with its own size (`size`, or `argsz` for VFIO). Fields are named as in the
header; `__reserved*` padding is left out. Directions say when a field is meaningful:

- "in": read at sys_enter, what the caller asked for;
- "out": read at sys_exit, only when the call succeeded (`out_*_id` of a new object, `out_fault_fd`, ...);
- "inout": the kernel may rewrite it (MAP's iova without FIXED_IOVA, VFIO attach's pt_id): the value after a
  successful call, else the one passed in.

The probes decode captured bytes with them (probes/uapi_decode.py); scenarios check the `args` they write against
them, so a scenario names only fields a capture could show.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_SCALARS = {"u8": "B", "u16": "H", "u32": "I", "s32": "i", "u64": "Q"}
TEST_CMD_WORDS = 8  # the union's first 32 bytes: all a record carries (TEXT_BYTES) after the 16-byte head


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

    @property
    def bounds(self) -> tuple[int, int]:
        """The values the member holds: 0..2^bits-1, or the signed range of an s32 (an fd)."""
        bits = 8 * struct.calcsize("<" + self.fmt)
        return (-(1 << bits - 1), (1 << bits - 1) - 1) if self.fmt.islower() else (0, (1 << bits) - 1)


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
    # iommu_test_cmd: a head and a union chosen by `op`; read as raw words, named per op by `refine_args`.
    "IOMMU_TEST_CMD": ("iommu_test_cmd", "u32 size; u32 op; u32 id:inout; u32 __reserved; "
                                         + "; ".join(f"u32 w{i}:inout" for i in range(TEST_CMD_WORDS))),
    # VFIO type1 container calls (also answered by iommufd); GET_API_VERSION, CHECK_EXTENSION and SET_IOMMU
    # take no struct (an int by value), so they decode to no arguments.
    "VFIO_IOMMU_GET_INFO": ("vfio_iommu_type1_info", "u32 argsz; u32 flags:inout; u64 iova_pgsizes:inout; "
                                                    "u32 cap_offset:inout; u32 __reserved"),
    "VFIO_IOMMU_MAP_DMA": ("vfio_iommu_type1_dma_map", "u32 argsz; u32 flags; u64 vaddr; u64 iova; u64 size"),
    "VFIO_IOMMU_UNMAP_DMA": ("vfio_iommu_type1_dma_unmap", "u32 argsz; u32 flags; u64 iova; u64 size:inout"),
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

# The union members of iommu_test_cmd by op, offsets from the union's start (op numbers: explorer.uapi).
TEST_OP_LAYOUTS: dict[int, ULayout] = {op: _layout(f"iommu_test_cmd.{name}", decl) for op, (name, decl) in {
    1: ("add_reserved", "u64 start; u64 length"),
    2: ("mock_domain", "u32 out_stdev_id; u32 out_hwpt_id; u32 out_idev_id"),
    3: ("check_map", "u64 iova; u64 length; u64 uptr"),
    4: ("check_refs", "u64 length; u64 uptr; u32 refs"),
    5: ("create_access", "u32 out_access_fd; u32 flags"),
    6: ("destroy_access_pages", "u32 access_pages_id"),
    7: ("access_pages", "u32 flags; u32 out_access_pages_id; u64 iova; u64 length; u64 uptr"),
    8: ("access_rw", "u64 iova; u64 length; u64 uptr; u32 flags"),
    9: ("memory_limit", "u32 limit"),
    10: ("mock_domain_replace", "u32 pt_id"),
    11: ("access_replace_ioas", "u32 ioas_id"),
    12: ("mock_domain_flags", "u32 out_stdev_id; u32 out_hwpt_id; u32 out_idev_id; u32 dev_flags"),
    13: ("dirty", "u32 flags; u64 iova; u64 length; u64 page_size"),
    14: ("check_iotlb", "u32 id; u32 iotlb"),
    15: ("trigger_iopf", "u32 dev_id; u32 pasid; u32 grpid; u32 perm; u64 addr"),
    16: ("check_dev_cache", "u32 id; u32 cache"),
    17: ("trigger_vevent", "u32 dev_id"),
    18: ("pasid_attach", "u32 pasid; u32 pt_id"),
    19: ("pasid_replace", "u32 pasid; u32 pt_id"),
    20: ("pasid_detach", "u32 pasid"),
    21: ("pasid_check", "u32 pasid; u32 hwpt_id"),
}.items()}


def members(name: str, op: object = None) -> dict[str, UField]:
    """The members a call of `name` carries once decoded (probes/uapi_decode.py decode_args()): its layout's, and
    for IOMMU_TEST_CMD the head and the union member its `op` names (the raw words w0.. for an op none names)."""
    layout = LAYOUTS.get(name)
    fields = {f.name: f for f in layout.fields} if layout else {}
    union = TEST_OP_LAYOUTS.get(op) if name == "IOMMU_TEST_CMD" and isinstance(op, int) else None
    if union is not None:
        fields = {k: f for k, f in fields.items() if not k.startswith("w")} | {f.name: f for f in union.fields}
    return fields
