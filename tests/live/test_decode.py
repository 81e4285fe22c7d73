"""Decoding raw probe records into event rows: the bulk ioctl path, vendor descriptors, fault queues, filters."""

from __future__ import annotations

import gc
import mmap
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.events import KINDS, Event, make
from explorer.pci import rid_to_pci
from explorer.recording.encoded import PackedRows
from explorer.uapi import VFIO_COMPAT_COMMANDS, command_number
from probes.capture import merge
from probes.decode import FAULT_READ_CHUNK, FAULT_RECS_PER_IO, Decoder
from probes.record import Ev
from probes.uapi_decode import LAYOUTS, PAGE_RESPONSE, PGFAULT, decode_args, encode_args

from .records import batch, record

ENOTTY = -25


def ioctl(ts: int, name: str, args: dict[str, int], ret: int = 0, out: dict[str, int] | None = None, *,
          tgid: int = 100, size: int | None = None, cmd: int | None = None) -> object:
    entry = encode_args(name, args if size is None else {**args, LAYOUTS[name].fields[0].name: size})
    exit_ = bytearray(entry)
    for f in LAYOUTS[name].fields:
        if out and f.name in out:
            struct.pack_into("<" + f.fmt, exit_, f.offset, out[f.name])
    n = len(entry) if size is None else min(size, len(entry))
    return record(Ev.IOCTL, ts, cmd=cmd if cmd is not None else command_number(name), fd=3, ret=ret, tgid=tgid,
                  pid=tgid, cpu=1, **{"in": entry[:n]}, **({"out": bytes(exit_[:n])} if ret == 0 else {}))


def valid(row: list) -> Event:  # type: ignore[type-arg]
    """The row is an event the schema accepts."""
    ev = Event.from_row(row)
    if ev.kind in KINDS:
        make(ev.kind, ev.ts_ns, device=ev.device, pasid=ev.pasid, cpu=ev.cpu, pid=ev.pid, comm=ev.comm,
             source=ev.source, **dict(ev.fields))
    return ev


def test_an_ioctl_becomes_a_uapi_event_with_out_ids_from_its_return() -> None:
    rows = Decoder().rows(batch(
        ioctl(20, "IOMMU_HWPT_ALLOC", {"flags": 4, "dev_id": 7, "pt_id": 3, "fault_id": 9}, 0, {"out_hwpt_id": 12}),
        ioctl(10, "IOMMU_IOAS_ALLOC", {}, ENOTTY),
        ioctl(30, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", {"flags": 1, "pt_id": 12, "pasid": 42}, ENOTTY),
    ))
    events = [valid(r) for r in rows]
    assert [e.ts_ns for e in events] == [10, 20, 30]
    ioas, hwpt, attach = events
    assert (ioas.kind, ioas.pid, ioas.comm, ioas.source) == ("uapi", 100, "test", "syscalls:sys_exit_ioctl")
    assert ioas.fields == {"cmd": 0x3B81, "name": "IOMMU_IOAS_ALLOC", "fd": 3, "args": {"size": 12, "flags": 0},
                           "ret": ENOTTY}
    assert hwpt.get("args") == {"size": 48, "flags": 4, "dev_id": 7, "pt_id": 3, "out_hwpt_id": 12,
                                "data_type": 0, "data_len": 0, "data_uptr": 0, "fault_id": 9}
    assert attach.pasid == 42 and attach.get("args")["pasid"] == 42


def test_unknown_iommufd_commands_are_kept_by_number() -> None:
    (row,) = Decoder().rows(batch(ioctl(5, "IOMMU_DESTROY", {"id": 1}, ENOTTY, cmd=0x3B9F)))
    assert valid(row).get("name") == "IOMMU_UNKNOWN_0x9f" and valid(row).get("args") == {}


@st.composite
def ioctl_batches(draw: st.DrawFn) -> list[tuple[int, str, dict[str, int], int, dict[str, int], int | None]]:
    out = []
    for ts in draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=40)):
        name = draw(st.sampled_from(sorted(n for n in LAYOUTS if command_number(n) & 0xFF not in VFIO_COMPAT_COMMANDS)))
        values, after = ({f.name: draw(_field_values(f.fmt)) for f in LAYOUTS[name].fields[1:]} for _ in range(2))
        size = draw(st.sampled_from([None, *(f.offset for f in LAYOUTS[name].fields[1:])]))
        out.append((ts, name, values, draw(st.sampled_from([0, ENOTTY, -(1 << 40)])), after, size))
    return out


def _field_values(fmt: str) -> st.SearchStrategy[int]:
    """Every value a field of this struct format can hold, its edges (where MessagePack changes form) likely."""
    bits = 8 * struct.calcsize(fmt)
    low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if fmt.islower() else (0, (1 << bits) - 1)
    edges = [e for e in (0, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, -1, -32, -33, -128, -129)
             if low <= e <= high]
    return st.one_of(st.sampled_from(edges + [low, high]), st.integers(low, high))


@settings(max_examples=60)
@given(ioctl_batches())
def test_bulk_decoding_equals_decoding_each_call_alone(calls) -> None:  # type: ignore[no-untyped-def]
    recs = batch(*(ioctl(ts, name, args, ret, out, size=size) for ts, name, args, ret, out, size in calls))
    rows = Decoder().rows(recs)
    assert [r[0] for r in rows] == sorted(ts for ts, *_ in calls)
    assert all(r[1:8] == ["uapi", None, None, 1, 100, "test", "syscalls:sys_exit_ioctl"] and r[8]["fd"] == 3
               for r in rows if r[8]["name"] not in ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", "VFIO_DEVICE_DETACH_IOMMUFD_PT"))
    got = sorted((r[0], r[8]["name"], r[8]["ret"], sorted(r[8]["args"].items())) for r in rows)
    expected = []
    for ts, name, args, ret, out, size in calls:
        entry = encode_args(name, args if size is None else {**args, LAYOUTS[name].fields[0].name: size})
        exit_ = bytearray(entry)
        for f in LAYOUTS[name].fields:
            if f.name in out:
                struct.pack_into("<" + f.fmt, exit_, f.offset, out[f.name])
        n = len(entry) if size is None else min(size, len(entry))
        expected.append((ts, name, ret, sorted(decode_args(name, entry[:n], bytes(exit_[:n]), ret).items())))
    assert got == sorted(expected)


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([1, 100, (1 << 32) - 1]),
                          st.sampled_from([b"gen", b"gen\0stale", b"qemu", b"\x1b[2J\xff", b""]), st.booleans()),
                min_size=1, max_size=30))
def test_each_row_names_the_process_and_cpu_of_its_record(procs) -> None:  # type: ignore[no-untyped-def]
    """Calls from several processes, names and CPUs in one batch (two names that differ only past their end
    included), mixed with exits: each row keeps its own record's."""
    recs = batch(*(ioctl(ts, "IOMMU_IOAS_ALLOC", {}, ENOTTY, tgid=tgid) if call else
                   record(Ev.EXIT, ts, tgid=tgid, pid=tgid) for ts, (_, tgid, _, call) in enumerate(procs)))
    recs["cpu"], recs["comm"] = [cpu for cpu, *_ in procs], [comm for _, _, comm, _ in procs]
    rows = Decoder().rows(recs)
    assert [(r[0], r[4], r[5], r[6]) for r in rows] == [(ts, cpu, tgid, comm.split(b"\0")[0].decode("utf-8", "replace"))
                                                         for ts, (cpu, tgid, comm, _) in enumerate(procs)]


def test_vfio_type1_calls_are_kept_on_an_iommufd_or_container_and_dropped_on_a_device_fd() -> None:
    """Numbers 112..117 are VFIO_IOMMU_* on a container or iommufd (iommufd/vfio_compat.c) and VFIO_DEVICE_*
    on a device fd: kept only on an fd that answered a container call or an iommufd call first."""
    def call(ts: int, name: str, fd: int, args: dict[str, int] | None = None, ret: int = 0) -> object:
        entry = encode_args(name, args or {}) if name in LAYOUTS else b""
        return record(Ev.IOCTL, ts, cmd=command_number(name), fd=fd, ret=ret, tgid=100, pid=100, cpu=1,
                      **{"in": entry, "out": entry})
    rows = Decoder().rows(batch(
        call(1, "VFIO_GET_API_VERSION", 3), call(2, "VFIO_IOMMU_MAP_DMA", 3, {"iova": 0x1000, "size": 4096}),
        call(3, "VFIO_GET_API_VERSION", 4, ret=ENOTTY), call(4, "VFIO_IOMMU_MAP_DMA", 4),
        call(5, "IOMMU_IOAS_ALLOC", 5), call(6, "VFIO_IOMMU_UNMAP_DMA", 5, {"iova": 0x1000, "size": 4096}),
    ))
    kept = [(r[0], r[8]["name"], r[8]["fd"]) for r in rows]
    assert kept == [(1, "VFIO_GET_API_VERSION", 3), (2, "VFIO_IOMMU_MAP_DMA", 3), (5, "IOMMU_IOAS_ALLOC", 5),
                    (6, "VFIO_IOMMU_UNMAP_DMA", 5)]
    assert rows[1][8]["args"] == {"argsz": 32, "flags": 0, "vaddr": 0, "iova": 0x1000, "size": 4096}


def test_vtd_page_request_and_group_response_descriptors() -> None:
    dev = b"0000:6a:01.0"
    # page_req_dsc: type 1, PASID present, rid 0x6a08, PASID 0x1234, exec; qw1: read+write, last, PRG 0x1a5, addr
    dw0 = 0x1 | 1 << 8 | 0x6A08 << 16 | 0x1234 << 32 | 1 << 52
    dw1 = 0b011 | 1 << 2 | 0x1A5 << 3 | 0x7F0012345000
    # QI page group response: type 9, PASID present, code 0xf (failure), rid 0x6a08, PASID 0x1234; PRG 0x1a5
    qw0 = 0x9 | 1 << 4 | 0xF << 12 | 0x6A08 << 16 | 0x1234 << 32
    qw1 = 1 << 2 | 0x1A5 << 3
    req, resp = (valid(r) for r in Decoder().rows(batch(
        record(Ev.PRQ, 1, a=dw0, b=dw1, **{"in": dev}), record(Ev.QI_PGRP_RESP, 2, a=qw0, b=qw1))))
    assert (req.kind, req.device, req.pasid) == ("page_request", "0000:6a:01.0", 0x1234)
    assert req.fields == {"prg": 0x1A5, "addr": 0x7F0012345000, "perm": 0b111, "last": True}
    assert (resp.kind, resp.device, resp.pasid) == ("page_response", rid_to_pci(0x6A08), 0x1234)
    assert resp.device == "0000:6a:01.0" and resp.fields == {"prg": 0x1A5, "code": 2}


def pgfault(dev_id: int, pasid: int, grpid: int, cookie: int, flags: int = 3) -> bytes:
    return struct.pack("<IIIIIIQII", flags, dev_id, pasid, grpid, 1, 0, 0x1000 * grpid, 0, cookie)


def test_fault_queue_responses_are_tied_to_the_faults_read_before_them() -> None:
    faults = pgfault(2, 7, 5, 100) + pgfault(2, 7, 6, 101)
    assert len(faults) == 2 * PGFAULT.size
    read = record(Ev.FAULT_READ, 1, tgid=50, cmd=9, ret=len(faults), **{"in": faults[:48], "out": faults[48:]})
    answer = struct.pack("<II", 101, 1) + struct.pack("<II", 100, 0) + struct.pack("<II", 555, 0)
    write = record(Ev.FAULT_WRITE, 2, tgid=50, cmd=9, ret=len(answer), **{"in": answer})
    assert len(answer) == 3 * PAGE_RESPONSE.size
    decoder = Decoder()
    events = [valid(r) for r in decoder.rows(batch(read, write))]
    assert [(e.kind, e.device, e.pasid, e.get("prg")) for e in events] == [
        ("page_request", "iommufd:50/dev2", 7, 5), ("page_request", "iommufd:50/dev2", 7, 6),
        ("page_response", "iommufd:50/dev2", 7, 6), ("page_response", "iommufd:50/dev2", 7, 5)]
    assert [e.get("code") for e in events[2:]] == [1, 0] and events[2].get("by") == "user"
    assert decoder.unmatched_responses == 1  # cookie 555 was never read


def test_faults_beyond_what_the_probe_copies_from_one_read_are_counted_as_lost() -> None:
    faults = b"".join(pgfault(2, 7, g, 100 + g) for g in range(20))
    per_record = FAULT_READ_CHUNK // PGFAULT.size
    reads = [record(Ev.FAULT_READ, 1, tgid=50, cmd=9, ret=len(faults), b=i,
                    **{"in": faults[i * FAULT_READ_CHUNK:][:48], "out": faults[i * FAULT_READ_CHUNK + 48:][:32]})
             for i in range(FAULT_RECS_PER_IO)]
    events = [valid(r) for r in Decoder().rows(batch(*reads))]
    seen = FAULT_RECS_PER_IO * per_record
    assert [e.get("prg") for e in events if e.kind == "page_request"] == list(range(seen))
    (lost,) = [e for e in events if e.kind == "lost"]
    assert lost.get("count") == 20 - seen and "carried 20 entries" in lost.get("why")


def test_kernel_hooks_for_page_requests_make_fault_queue_traffic_bookkeeping_only() -> None:
    faults = pgfault(2, 7, 5, 100)
    rows = Decoder(kernel_page_requests=True, kernel_page_responses=True).rows(batch(
        record(Ev.FAULT_READ, 1, tgid=50, cmd=9, ret=len(faults), **{"in": faults}),
        record(Ev.FAULT_WRITE, 2, tgid=50, cmd=9, ret=8, **{"in": struct.pack("<II", 100, 0)})))
    assert rows == []


def test_iommu_tracepoints_exits_and_the_device_filter() -> None:
    recs = batch(
        record(Ev.IO_PAGE_FAULT, 1, cmd=1, a=0xFEE00000, **{"in": b"0000:00:04.0", "out": b"nvme"}),
        record(Ev.GROUP_ADD, 2, cmd=12, **{"in": b"0000:00:05.0"}),
        record(Ev.MAP, 3, a=0x1000, b=0x2000, c=4096),
        record(Ev.EXIT, 4, tgid=77, pid=77, comm=b"qemu"),
    )
    events = [valid(r) for r in Decoder().rows(recs)]
    fault, group, mapping, exit_ = events
    assert (fault.kind, fault.device) == ("fault", "0000:00:04.0")
    assert fault.fields == {"addr": 0xFEE00000, "flags": 1, "vendor": "generic", "access": "write", "driver": "nvme"}
    assert (group.kind, group.get("group")) == ("group_add", 12)
    assert mapping.fields == {"iova": 0x1000, "paddr": 0x2000, "size": 4096}
    assert (exit_.kind, exit_.pid, exit_.comm, exit_.get("mm")) == ("mm_exit", 77, "qemu", 77)
    kept = [valid(r) for r in Decoder(device="0000:00:04.0").rows(recs)]
    assert [e.kind for e in kept] == ["fault", "map", "mm_exit"]


def test_kernel_function_records() -> None:
    invalid = 0xFFFFFFFF
    recs = batch(
        record(Ev.PASID_ALLOC, 1, cmd=5, a=77, b=1, tgid=77, comm=b"idxd", **{"in": b"0000:6a:01.0"}),
        record(Ev.PASID_ALLOC, 2, cmd=invalid, ret=-28, **{"in": b"0000:6a:01.0"}),
        record(Ev.SVA_BIND, 3, cmd=5, a=77, b=0xFFFF888012345678, **{"in": b"0000:6a:01.0"}),
        record(Ev.PASID_ATTACH, 4, cmd=5, a=0xFFFF8880AAAA0000, b=0x10, **{"in": b"0000:6a:01.0"}),
        record(Ev.REPORT_FAULT, 5, cmd=5, fd=3, a=0x7000, b=3 | 1 << 32, c=2, **{"in": b"0000:6a:01.0"}),
        record(Ev.PAGE_RESPONSE, 6, cmd=5, fd=3, ret=0, **{"in": b"0000:6a:01.0"}),
        record(Ev.MM_PASID_DROP, 7, cmd=5, a=77),
        record(Ev.PAGE_RESPONSE, 8, cmd=5, fd=4, ret=1, b=1, **{"in": b"0000:6a:01.0"}),
    )
    events = [valid(r) for r in Decoder(kfunc_sources={Ev.PASID_ALLOC: "fentry:iommu_alloc_global_pasid"})
              .rows(recs)]
    alloc, full, bind, attach, req, resp, drop, user_resp = events
    assert (alloc.pasid, alloc.source, alloc.fields) == (
        5, "fentry:iommu_alloc_global_pasid", {"path": "sva", "owner": "pid 77 (idxd)", "mm": 77})
    assert full.pasid is None and full.get("error") == -28 and full.get("path") == "driver"
    assert (bind.pasid, bind.get("mm")) == (5, 77)
    assert (attach.pasid, attach.get("domain_type"), attach.get("dma_api")) == (5, "sva", None)
    assert (req.pasid, req.get("prg"), req.get("last"), req.get("needs_pasid")) == (5, 3, True, True)
    assert (resp.get("prg"), resp.get("code"), resp.get("by")) == (3, 0, "kernel")
    assert (drop.kind, drop.pasid, drop.get("path"), drop.get("mm")) == ("pasid_free", 5, "sva", 77)
    # made inside the process's write() to its fault-queue fd (iommufd_fault_fops_write -> iopf_group_response)
    assert (user_resp.get("prg"), user_resp.get("code"), user_resp.get("by")) == (4, 1, "user")


def test_a_paging_attach_says_whether_its_domain_is_the_dma_apis() -> None:
    """include/linux/iommu.h: a kernel driver's IOMMU_DOMAIN_DMA (and _DMA_FQ) carries __IOMMU_DOMAIN_DMA_API (2);
    iommufd's paging HWPTs are IOMMU_DOMAIN_UNMANAGED, __IOMMU_DOMAIN_PAGING (1) alone. The model tells a
    driver's global PASID from user space's own number by it (6.15+)."""
    dev = {"in": b"0000:6a:01.0"}
    recs = batch(record(Ev.PASID_ATTACH, 1, cmd=1, a=0xA0, b=0x1 | 0x2, **dev),
                 record(Ev.PASID_ATTACH, 2, cmd=2, a=0xA1, b=0x1 | 0x2 | 0x8, **dev),
                 record(Ev.PASID_REPLACE, 3, cmd=3, a=0xA2, b=0x1, **dev),
                 record(Ev.PASID_DETACH, 4, cmd=1, a=0xA0, b=0x1 | 0x2, **dev))
    events = [valid(r) for r in Decoder().rows(recs)]
    assert [(e.kind, e.get("domain_type"), e.get("dma_api")) for e in events] == [
        ("pasid_attach", "paging", True), ("pasid_attach", "paging", True), ("pasid_replace", "paging", False),
        ("pasid_detach", "paging", None)]


def test_sva_era_dev_fault_and_page_response_tracepoints() -> None:
    dev = b"0000:00:04.0"
    recs = batch(
        # iommu:dev_fault of a page request: type 2, flags PASID_VALID|LAST_PAGE, PRG 9, perm read|write, PASID 3
        record(Ev.DEV_FAULT, 1, cmd=2, a=0x5000, b=9 << 32 | 3, c=3 << 32 | 3, **{"in": dev}),
        # an unrecoverable fault: type 1, reason 6, no PASID
        record(Ev.DEV_FAULT, 2, cmd=1, fd=6, a=0x6000, b=0, c=0, **{"in": dev}),
        record(Ev.DEV_PAGE_RESPONSE, 3, cmd=0, b=9, c=3, **{"in": dev}),
    )
    req, fault, resp = (valid(r) for r in Decoder().rows(recs))
    assert (req.kind, req.pasid, req.fields) == ("page_request", 3, {"prg": 9, "addr": 0x5000, "perm": 3,
                                                                     "last": True})
    assert (fault.kind, fault.pasid, fault.get("code"), fault.get("addr")) == ("fault", None, 6, 0x6000)
    assert (resp.kind, resp.device, resp.pasid, resp.fields) == ("page_response", "0000:00:04.0", 3,
                                                                 {"prg": 9, "code": 0})
    assert req.source == "iommu:dev_fault" and resp.source == "iommu:dev_page_response"


def test_one_kernel_event_seen_by_two_hooks_is_one_event_with_the_other_as_evidence() -> None:
    """As the kernel fires them, on one thread (the PRQ thread, the iopf workqueue, __mmdrop's caller):
    - 6.6+ drivers/iommu/iommu-sva.c mm_pasid_drop() calls iommu_free_global_pasid(): one free, not a double
      free (F3);
    - drivers/iommu/intel/prq.c (6.13+): intel_prq_report() -> iommu_report_device_fault(), then
      trace_prq_report() for the same descriptor; iopf_group_response() -> intel_iommu_page_response() ->
      qi_submit_sync() -> trace_qi_submit (F4, F11). The driver op's record names which op it was (`a`).
    A qi_submit with no core response before it (6.11+ iopf_error_response(), VT-d handle_bad_prq_event()) and a
    driver's own iommu_free_global_pasid() are the only sightings of their events: kept as events."""
    dev, rid = b"0000:6a:01.0", 0x6A08
    dw0 = 1 << 8 | rid << 16 | 5 << 32
    dw1 = 1 | 1 << 2 | 3 << 3 | 0x7000
    qw0 = 9 | 1 << 4 | rid << 16 | 5 << 32
    recs = batch(
        record(Ev.REPORT_FAULT, 10, pid=40, cmd=5, fd=3, a=0x7000, b=3, c=1, **{"in": dev}),
        record(Ev.PRQ, 11, pid=40, a=dw0, b=dw1, **{"in": dev}),
        record(Ev.PAGE_RESPONSE, 20, pid=41, cmd=5, fd=3, ret=0, **{"in": dev}),
        record(Ev.DRIVER_PAGE_RESPONSE, 21, pid=41, cmd=5, fd=3, ret=0, a=1, **{"in": dev}),
        record(Ev.QI_PGRP_RESP, 22, pid=41, a=qw0, b=3 << 3),
        record(Ev.QI_PGRP_RESP, 30, pid=40, a=qw0 | 1 << 12, b=4 << 3),  # the kernel's own INVALID for PRG 4
        record(Ev.MM_PASID_DROP, 40, pid=50, cmd=5, a=77),
        record(Ev.PASID_FREE, 41, pid=50, cmd=5),
        record(Ev.PASID_FREE, 50, pid=60, cmd=9),  # a driver's own free
    )
    sources = {Ev.REPORT_FAULT: "fentry:iommu_report_device_fault", Ev.PAGE_RESPONSE: "fentry:iopf_group_response",
               Ev.DRIVER_PAGE_RESPONSE: "fentry:mock_domain_page_response",
               Ev.MM_PASID_DROP: "fentry:mm_pasid_drop", Ev.PASID_FREE: "fentry:iommu_free_global_pasid"}
    events = [valid(r) for r in Decoder(kfunc_sources=sources).rows(recs)]
    assert [(e.kind, e.pasid, e.get("prg"), e.source, e.get("seen_by")) for e in events] == [
        ("page_request", 5, 3, "fentry:iommu_report_device_fault", ["intel_iommu:prq_report"]),
        ("page_response", 5, 3, "fentry:iopf_group_response",
         ["fentry:intel_iommu_page_response", "intel_iommu:qi_submit"]),
        ("page_response", 5, 4, "intel_iommu:qi_submit", None),
        ("pasid_free", 5, None, "fentry:mm_pasid_drop", ["fentry:iommu_free_global_pasid"]),
        ("pasid_free", 9, None, "fentry:iommu_free_global_pasid", None)]
    assert events[2].get("code") == 1


@pytest.mark.parametrize("kprobes", [True, False])
def test_a_vendor_tree_s_tracepoints_on_vt_d_are_sightings_of_one_request_and_one_response(kprobes: bool) -> None:
    """'trace/iommu: Add sva trace events' (never merged; openEuler OLK-5.10) traces dev_fault at the end of
    iommu_report_device_fault() and dev_page_response in iommu_page_response() before ops->page_response; VT-d's
    prq_report follows the report and qi_submit sends the response's descriptor (svm.c 5.14+): with the kernel
    functions probed or not, one request and one response."""
    dev, rid = b"0000:6a:01.0", 0x6A08
    dw0, dw1 = 1 << 8 | rid << 16 | 5 << 32, 1 | 1 << 2 | 3 << 3 | 0x7000
    qw0 = 9 | 1 << 4 | rid << 16 | 5 << 32
    recs = batch(*([record(Ev.REPORT_FAULT, 10, pid=40, cmd=5, fd=3, a=0x7000, b=3, c=1, **{"in": dev})] * kprobes),
                 record(Ev.DEV_FAULT, 11, pid=40, cmd=2, a=0x7000, b=3 << 32 | 3, c=5 << 32 | 1, **{"in": dev}),
                 record(Ev.PRQ, 12, pid=40, a=dw0, b=dw1, **{"in": dev}),
                 *([record(Ev.PAGE_RESPONSE, 20, pid=41, cmd=5, fd=3, ret=0, **{"in": dev})] * kprobes),
                 record(Ev.DEV_PAGE_RESPONSE, 21, pid=41, cmd=0, b=3, c=5, **{"in": dev}),
                 record(Ev.QI_PGRP_RESP, 22, pid=41, a=qw0, b=3 << 3))
    sources = {Ev.REPORT_FAULT: "kprobe:iommu_report_device_fault", Ev.PAGE_RESPONSE: "kprobe:iommu_page_response"}
    events = [valid(r) for r in Decoder(kfunc_sources=sources).rows(recs)]
    request = ["iommu:dev_fault", "intel_iommu:prq_report"] if kprobes else ["intel_iommu:prq_report"]
    response = ["iommu:dev_page_response", "intel_iommu:qi_submit"] if kprobes else ["intel_iommu:qi_submit"]
    assert [(e.kind, e.pasid, e.get("prg"), e.get("seen_by")) for e in events] == [
        ("page_request", 5, 3, request), ("page_response", 5, 3, response)]


@settings(max_examples=60)
@given(st.lists(st.integers(0, 50), max_size=30), st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_a_batch_overlapping_the_rows_held_back_merges_into_time_order(held: list[int], new: list[int]) -> None:
    """Records reserved on another CPU arrive in the next batch, older than the newest row held back: the capture
    sorts them into place (on a tie, the row held back first), keeping every row."""
    def packed(ts: list[int], fd: int) -> PackedRows:
        rows = Decoder().rows(batch(*(ioctl(t, "IOMMU_IOAS_ALLOC", {}, ENOTTY) for t in sorted(ts))))
        for r in rows:
            r[8]["fd"] = fd
        return PackedRows.of_rows(rows)

    rows = merge(packed(held, 1), packed(new, 2)).rows()
    assert [(r[0], r[8]["fd"]) for r in rows] == sorted([(t, 1) for t in held] + [(t, 2) for t in new])


def test_decoding_a_batch_keeps_no_view_of_the_ring_buffer() -> None:
    """The capture decodes records in the ring buffer's own memory and then hands it back to the kernel, which
    writes new records there: nothing decoded may still point into it, even in garbage not yet collected."""
    recs = batch(*(ioctl(t, "IOMMU_IOAS_ALLOC", {}, ENOTTY) for t in range(50)))  # one command: decoded in place
    ring = mmap.mmap(-1, recs.nbytes)
    view = np.frombuffer(ring, recs.dtype)
    view[:] = recs
    decoder = Decoder()
    gc.disable()
    try:
        rows = decoder.packed(view).rows()
        del view
        ring.close()  # BufferError if anything still exports its memory
    finally:
        gc.enable()
    assert [r[0] for r in rows] == list(range(50)) and rows[-1][8]["name"] == "IOMMU_IOAS_ALLOC"
