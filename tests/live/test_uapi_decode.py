"""The iommufd / VFIO argument structs: layouts as the kernel headers define them, and decoding by direction."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from explorer.uapi import COMMANDS, command_number
from probes.uapi_decode import ARG_BYTES, LAYOUTS, PAGE_RESPONSE, PGFAULT, decode_args, encode_args, is_tracked

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
    assert not is_tracked(0x3B64)  # VFIO_GET_API_VERSION: VFIO, but not the iommufd binding
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
    name = draw(st.sampled_from(sorted(LAYOUTS)))
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
