"""The iommufd / VFIO argument structs: layouts as the kernel headers define them, and decoding by direction."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from explorer.uapi import COMMANDS, command_number
from probes.uapi_decode import (
    ARG_BYTES,
    LAYOUTS,
    PAGE_RESPONSE,
    PGFAULT,
    REFINED,
    decode_args,
    encode_args,
    is_tracked,
)

# sizeof() of each struct in include/uapi/linux/iommufd.h and vfio.h (Linux 6.18), with a few member offsets that
# natural alignment decides (a u64 after an odd number of u32s).
SIZES = {
    "IOMMU_DESTROY": 8, "IOMMU_IOAS_ALLOC": 12, "IOMMU_IOAS_ALLOW_IOVAS": 24, "IOMMU_IOAS_COPY": 40,
    "IOMMU_IOAS_IOVA_RANGES": 32, "IOMMU_IOAS_MAP": 40, "IOMMU_IOAS_UNMAP": 24, "IOMMU_OPTION": 24,
    "IOMMU_VFIO_IOAS": 12, "IOMMU_HWPT_ALLOC": 48, "IOMMU_GET_HW_INFO": 40, "IOMMU_HWPT_SET_DIRTY_TRACKING": 16,
    "IOMMU_HWPT_GET_DIRTY_BITMAP": 48, "IOMMU_HWPT_INVALIDATE": 32, "IOMMU_FAULT_QUEUE_ALLOC": 16,
    "IOMMU_IOAS_MAP_FILE": 40, "IOMMU_VIOMMU_ALLOC": 40, "IOMMU_VDEVICE_ALLOC": 24, "IOMMU_IOAS_CHANGE_PROCESS": 8,
    "IOMMU_VEVENTQ_ALLOC": 32, "IOMMU_HW_QUEUE_ALLOC": 40, "VFIO_DEVICE_BIND_IOMMUFD": 24,
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": 16, "VFIO_DEVICE_DETACH_IOMMUFD_PT": 12,
    "VFIO_IOMMU_GET_INFO": 24, "VFIO_IOMMU_MAP_DMA": 32, "VFIO_IOMMU_UNMAP_DMA": 24,
    "IOMMU_TEST_CMD": 48,  # iommu_test_cmd is 72 bytes (6.12 .. 7.3); a record holds its first 48
}
OFFSETS = {
    ("IOMMU_IOAS_UNMAP", "iova"): 8, ("IOMMU_HWPT_ALLOC", "data_uptr"): 32, ("IOMMU_HWPT_ALLOC", "fault_id"): 40,
    ("IOMMU_GET_HW_INFO", "out_max_pasid_log2"): 28, ("IOMMU_GET_HW_INFO", "out_capabilities"): 32,
    ("IOMMU_OPTION", "val64"): 16, ("IOMMU_VDEVICE_ALLOC", "virt_id"): 16, ("IOMMU_HWPT_INVALIDATE", "data_uptr"): 8,
    ("VFIO_DEVICE_BIND_IOMMUFD", "token_uuid_ptr"): 16, ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", "pasid"): 12,
}


def test_every_layout_has_the_kernel_headers_size_and_offsets() -> None:
    assert {name: layout.size for name, layout in LAYOUTS.items()} == SIZES
    for (name, member), offset in OFFSETS.items():
        assert {f.name: f.offset for f in LAYOUTS[name].fields}[member] == offset
    assert (PGFAULT.size, PAGE_RESPONSE.size) == (40, 8)
    assert ARG_BYTES == 48


def test_command_numbers_follow_the_headers_and_only_they_are_tracked() -> None:
    assert command_number("IOMMU_HWPT_ALLOC") == 0x3B89
    assert command_number("IOMMU_FAULT_QUEUE_ALLOC") == 0x3B8E
    assert command_number("VFIO_DEVICE_BIND_IOMMUFD") == 0x3B76  # VFIO_BASE 100 + 18
    assert command_number("VFIO_DEVICE_ATTACH_IOMMUFD_PT") == 0x3B77
    assert all(is_tracked(cmd) for cmd in COMMANDS)
    assert is_tracked(0x3B9F)  # an iommufd command newer than this version still counts
    assert is_tracked(0x3B64)  # VFIO_GET_API_VERSION: a type1 container call, which iommufd answers too
    assert is_tracked(0x3B71)  # VFIO_IOMMU_MAP_DMA (VFIO_BASE + 13)
    assert not is_tracked(0x3B67)  # VFIO_DEVICE_GET_INFO: a VFIO device call, nothing iommufd answers
    assert command_number("IOMMU_TEST_CMD") == 0x3BA0  # iommufd_test.h: _IO(IOMMUFD_TYPE, CMD_BASE + 32)
    assert not is_tracked(0xC0183B89)  # same number with direction/size bits is another ioctl
    assert not is_tracked(0x5401)  # TCGETS


def _values(draw: st.DrawFn, name: str) -> dict[str, int]:
    out = {}
    for f in LAYOUTS[name].fields[1:]:
        bits = 8 * struct.calcsize(f.fmt)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if f.fmt.islower() else (0, (1 << bits) - 1)
        out[f.name] = draw(st.integers(lo, hi))
    return out


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, int], dict[str, int], int, int]:
    name = draw(st.sampled_from(sorted(set(LAYOUTS) - set(REFINED))))
    entry, after = _values(draw, name), _values(draw, name)
    size = draw(st.sampled_from([LAYOUTS[name].size, *(f.offset for f in LAYOUTS[name].fields[1:])]))
    ret = draw(st.sampled_from([0, -25, -22]))
    return name, entry, after, size, ret


@given(calls())
def test_decoding_reads_in_fields_at_entry_and_out_fields_only_after_success(call) -> None:  # type: ignore[no-untyped-def]
    name, entry, after, size, ret = call
    layout = LAYOUTS[name]
    size_name = layout.fields[0].name
    at_entry = encode_args(name, {**entry, size_name: size})
    at_exit = bytearray(encode_args(name, {**after, size_name: size}))
    for f in layout.fields:  # out fields are written by the kernel: encode_args leaves them to us
        if f.io == "out" and f.name in after:
            struct.pack_into("<" + f.fmt, at_exit, f.offset, after[f.name])
    got = decode_args(name, at_entry[:size], bytes(at_exit[:size]), ret)
    expected = {size_name: size}
    for f in layout.fields[1:]:
        if f.end > size:
            continue
        if f.io == "in" or (f.io == "inout" and ret != 0):
            expected[f.name] = entry[f.name]
        elif ret == 0:
            expected[f.name] = after[f.name]
    assert got == expected
    assert not any(k.startswith("__reserved") for k in got)


def test_selftest_command_is_decoded_by_its_op() -> None:
    """IOMMU_TEST_CMD (drivers/iommu/iommufd/iommufd_test.h, Linux 6.12 and 7.3): the union is named for the op;
    TRIGGER_IOPF (op 15) carries the page request the mock device reports."""
    head = struct.pack("<IIII", 72, 15, 0, 0)
    trigger = struct.pack("<IIIIQ", 3, 0x42, 7, 3, 0x200000)
    entry = (head + trigger).ljust(48, b"\0")
    assert decode_args("IOMMU_TEST_CMD", entry, entry, 0) == {
        "size": 72, "op": "TRIGGER_IOPF", "id": 0, "dev_id": 3, "pasid": 0x42, "grpid": 7, "perm": 3,
        "addr": 0x200000}
    mock_in = struct.pack("<IIII", 72, 2, 5, 0).ljust(48, b"\0")  # MOCK_DOMAIN on IOAS 5: out ids on success
    mock_out = (struct.pack("<IIII", 72, 2, 5, 0) + struct.pack("<III", 6, 7, 8)).ljust(48, b"\0")
    assert decode_args("IOMMU_TEST_CMD", mock_in, mock_out, 0) == {
        "size": 72, "op": "MOCK_DOMAIN", "id": 5, "out_stdev_id": 6, "out_hwpt_id": 7, "out_idev_id": 8}
    unknown = struct.pack("<IIII", 72, 99, 0, 0).ljust(48, b"\0")
    assert decode_args("IOMMU_TEST_CMD", unknown, unknown, 0)["op"] == 99


def test_hw_info_input_type_only_under_its_flag() -> None:
    """6.12's iommu_hw_info has only out_data_type at offset 24 (flags must be 0); 6.16+ makes it a union with
    in_data_type, an input only with IOMMU_HW_INFO_FLAG_INPUT_TYPE."""
    plain = encode_args("IOMMU_GET_HW_INFO", {"dev_id": 1, "in_data_type": 0})
    assert "in_data_type" not in decode_args("IOMMU_GET_HW_INFO", plain, None, -22)
    flagged = encode_args("IOMMU_GET_HW_INFO", {"flags": 1, "dev_id": 1, "in_data_type": 3})
    assert decode_args("IOMMU_GET_HW_INFO", flagged, None, -22)["in_data_type"] == 3
