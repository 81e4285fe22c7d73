"""The probes' ring-buffer record (`struct rec` in probes/common.bpf.c) as a numpy dtype, and the event numbers
the BPF code uses.

Python is the one source of the EV_* numbers: the loader passes them to the compiler as -D flags. The record's
layout is written twice (C and here); the loader compares this dtype with the C struct as bcc sees it at load
time, so a change to one side without the other is an error, never silent misreading.
"""

from __future__ import annotations

import enum

import numpy as np

TEXT_BYTES = 48


class Ev(enum.IntEnum):
    """What one record is."""

    IOCTL = 1  # an iommufd / VFIO ioctl, at its return
    EXIT = 2  # a process that did PASID work exited
    IO_PAGE_FAULT = 3  # iommu:io_page_fault
    MAP = 4
    UNMAP = 5
    GROUP_ADD = 6
    GROUP_REMOVE = 7
    DOMAIN_ATTACH = 8
    FAULT_READ = 9  # page faults user space read from an iommufd fault queue
    FAULT_WRITE = 10  # page responses user space wrote to it
    DEV_FAULT = 11  # iommu:dev_fault (vendor trees only)
    DEV_PAGE_RESPONSE = 12  # iommu:dev_page_response (vendor trees only)
    PRQ = 13  # intel_iommu:prq_report, a raw VT-d page request descriptor
    QI_PGRP_RESP = 14  # intel_iommu:qi_submit carrying a page group response descriptor
    # kernel functions (probes/kernel_funcs.bpf.c)
    PASID_ALLOC = 20
    PASID_FREE = 21
    SVA_BIND = 22
    SVA_UNBIND = 23
    PASID_ATTACH = 24
    PASID_DETACH = 25
    PASID_REPLACE = 26
    REPORT_FAULT = 27
    PAGE_RESPONSE = 28
    MM_PASID_DROP = 29
    IOASID_ALLOC = 30
    IOASID_FREE = 31
    DRIVER_PAGE_RESPONSE = 32  # an IOMMU driver's page_response op (6.9+ shape)


REC = np.dtype([
    ("ts", "<u8"), ("ts_start", "<u8"), ("type", "<u4"), ("cpu", "<u4"), ("pid", "<u4"), ("tgid", "<u4"),
    ("comm", "S16"), ("cmd", "<u4"), ("fd", "<i4"), ("ret", "<i8"), ("a", "<u8"), ("b", "<u8"), ("c", "<u8"),
    ("n_in", "<u4"), ("n_out", "<u4"), ("in", f"V{TEXT_BYTES}"), ("out", f"V{TEXT_BYTES}"),
])

# In the ring buffer each record follows an 8-byte header (length with busy/discard bits, page offset).
RINGBUF_HDR = np.dtype([("len", "<u4"), ("pg_off", "<u4")])
SLOT = np.dtype([("hdr", RINGBUF_HDR), ("rec", REC)])
assert SLOT.itemsize % 8 == 0, "ring buffer records are 8-byte aligned"


def cflags() -> list[str]:
    """The -D flags that give the BPF code the record's numbers."""
    return [f"-DEV_{ev.name}={ev.value}" for ev in Ev]


def check_against(ctype: type) -> None:
    """Raise when bcc's view of `struct rec` (a ctypes Structure) differs from `REC`."""
    import ctypes

    theirs = {name: getattr(ctype, name).offset for name, *_ in ctype._fields_}
    ours = {name: REC.fields[name][1] for name in REC.names}
    if ctypes.sizeof(ctype) != REC.itemsize or theirs != ours:
        raise RuntimeError(f"probes/common.bpf.c and probes/record.py disagree on struct rec: C {theirs} "
                           f"({ctypes.sizeof(ctype)} bytes) vs Python {ours} ({REC.itemsize} bytes)")
