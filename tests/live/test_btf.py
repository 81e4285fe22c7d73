"""The BTF reader: member offsets through nested and anonymous structs, function arity, enum values."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from probes.btf import ARRAY, ENUM, FUNC, FUNC_PROTO, INT, PTR, STRUCT, UNION, Btf, BtfError
from probes.hooks import BY_NAME
from probes.kernel_funcs import function_flags


class Builder:
    """Writes a BTF blob the way the kernel lays it out (include/uapi/linux/btf.h)."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, size_or_type: int, extra: bytes = b"", vlen: int = 0, kflag: int = 0) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        self.count += 1
        return self.count

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]], kind: int = STRUCT) -> int:
        extra = b"".join(struct.pack("<III", self.name(n), t, off * 8) for n, t, off in members)
        return self.add(kind, name, size, extra, len(members))

    def blob(self) -> bytes:
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return header + bytes(self.types) + bytes(self.strings)


def synthetic_btf() -> Btf:
    b = Builder()
    u32 = b.add(INT, "unsigned int", 4, struct.pack("<I", 32))
    ptr = b.add(PTR, "", 0)
    b.add(ARRAY, "", 0, struct.pack("<III", u32, u32, 4))
    kobj = b.struct("kobject", 64, [("name", ptr, 0)])
    b.struct("device", 700, [("parent", ptr, 0), ("p", ptr, 8), ("kobj", kobj, 16)])
    handler = b.struct("", 16, [("handler", ptr, 0), ("handler_token", ptr, 8)])
    union = b.struct("", 16, [("", handler, 0), ("mm", ptr, 0)], kind=UNION)
    b.struct("iommu_domain", 128, [("type", u32, 0), ("", union, 64)])
    b.struct("task_struct", 4096, [("mm", ptr, 1136)])
    one = b.add(FUNC_PROTO, "", u32, struct.pack("<II", 0, ptr), 1)
    four = b.add(FUNC_PROTO, "", u32, struct.pack("<IIIIIIII", 0, ptr, 0, ptr, 0, u32, 0, ptr), 4)
    b.add(FUNC, "iommu_alloc_global_pasid", one)
    b.add(FUNC, "iommu_attach_device_pasid", four)
    b.add(ENUM, "iommu_fault_type", 4, struct.pack("<Ii", b.name("IOMMU_FAULT_PAGE_REQ"), 1), 1)
    return Btf.parse(b.blob())


def test_offsets_through_nested_and_anonymous_members() -> None:
    btf = synthetic_btf()
    assert btf.member_offset("device", "kobj.name") == 16
    assert btf.member_offset("iommu_domain", "mm") == 64  # inside an anonymous union
    assert btf.member_offset("iommu_domain", "handler_token") == 72  # anonymous struct in that union
    assert btf.member_offset("iommu_domain", "nope") is None
    assert btf.member_offset("no_such_struct", "x") is None
    assert (btf.params("iommu_alloc_global_pasid"), btf.params("iommu_attach_device_pasid")) == (1, 4)
    assert btf.enum_value("IOMMU_FAULT_PAGE_REQ") == 1 and btf.enum_value("NOPE") is None


def test_probe_flags_come_from_btf_and_say_what_is_missing() -> None:
    btf = synthetic_btf()
    flags, lacking = function_flags(btf, BY_NAME["iommu_attach_device_pasid"])
    assert lacking == ""
    assert {"-DHOOK_iommu_attach_device_pasid", "-DNARGS_iommu_attach_device_pasid=4", "-DOFF_DEV_NAME=16",
            "-DOFF_DOMAIN_TYPE=0"} <= set(flags)
    _, lacking = function_flags(btf, BY_NAME["iopf_group_response"])
    assert "iopf_group.last_fault.fault.prm.flags" in lacking


def test_not_btf_is_an_error() -> None:
    with pytest.raises(BtfError):
        Btf.parse(b"\0" * 32)


@pytest.mark.live
@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="this kernel has no BTF")
def test_the_running_kernels_btf_parses_with_the_layouts_every_kernel_has() -> None:
    btf = Btf.load()
    assert len(btf.types) > 10_000
    assert btf.member_offset("list_head", "next") == 0 and btf.member_offset("list_head", "prev") == 8
    assert btf.member_offset("task_struct", "mm") is not None
    assert btf.member_offset("device", "kobj.name") is not None
    assert btf.params("do_exit") == 1


def _iopf_btf(dequeue: bool) -> Btf:
    """The structs and functions of the page-response hooks, laid out as 6.9+ io-pgfault.c has them; `dequeue`:
    the kernel has iopf_group_dequeue() (and so no pending check in iopf_group_response())."""
    b = Builder()
    u32 = b.add(INT, "unsigned int", 4, struct.pack("<I", 32))
    void = b.add(PTR, "", 0)
    kobj = b.struct("kobject", 64, [("name", void, 0)])
    device = b.struct("device", 700, [("kobj", kobj, 16)])
    prm = b.struct("iommu_fault_page_request", 40, [("flags", u32, 0), ("pasid", u32, 4), ("grpid", u32, 8)])
    fault = b.struct("iommu_fault", 48, [("type", u32, 0), ("prm", prm, 8)])
    iopf_fault = b.struct("iopf_fault", 64, [("fault", fault, 0)])
    event = b.struct("iommu_fault_event", 80, [("fault", fault, 0)])
    param = b.struct("iommu_fault_param", 64, [("dev", void, 40)])
    group = b.struct("iopf_group", 160, [("last_fault", iopf_fault, 0), ("pending_node", void, 96),
                                         ("fault_param", void, 120)])
    resp = b.struct("iommu_page_response", 12, [("pasid", u32, 0), ("grpid", u32, 4), ("code", u32, 8)])
    p = {name: b.add(PTR, "", t) for name, t in (("device", device), ("iopf_fault", iopf_fault), ("event", event),
                                                   ("group", group), ("resp", resp), ("param", param))}
    op = b.add(FUNC_PROTO, "", 0, struct.pack("<6I", 0, p["device"], 0, p["iopf_fault"], 0, p["resp"]), 3)
    old_op = b.add(FUNC_PROTO, "", u32, struct.pack("<6I", 0, p["device"], 0, p["event"], 0, p["resp"]), 3)
    core = b.add(FUNC_PROTO, "", 0, struct.pack("<4I", 0, p["group"], 0, u32), 2)
    b.add(FUNC, "intel_iommu_page_response", op)
    b.add(FUNC, "intel_svm_page_response", old_op)
    b.add(FUNC, "iopf_group_response", core)
    if dequeue:
        b.add(FUNC, "iopf_group_dequeue", b.add(FUNC_PROTO, "", 0, struct.pack("<II", 0, p["group"]), 1))
    return Btf.parse(b.blob())


def test_page_response_hooks_take_their_shape_and_the_pending_check_from_btf() -> None:
    """io-pgfault.c: ops->page_response(dev, struct iopf_fault *, msg) from 6.9; iopf_group_response() skipped a
    group no longer pending only until iopf_group_dequeue() came (Debian 6.12.118 and 7.3 send unconditionally)."""
    for dequeue in (False, True):
        btf = _iopf_btf(dequeue)
        flags, lacking = function_flags(btf, BY_NAME["intel_iommu_page_response"])
        assert lacking == "" and {"-DOFF_DRV_EVT_FLAGS=8", "-DOFF_RESP_CODE=8"} <= set(flags)
        flags, lacking = function_flags(btf, BY_NAME["iopf_group_response"])
        assert lacking == "" and ("-DOFF_GRP_PENDING=96" in flags) == (not dequeue)
    # the pre-6.9 shape (struct iommu_fault_event *) is not read as the 6.9 one
    flags, lacking = function_flags(_iopf_btf(False), BY_NAME["intel_svm_page_response"])
    assert flags == [] and "iommu_fault_event" in lacking
