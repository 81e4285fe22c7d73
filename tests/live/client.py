"""A process that issues iommufd and VFIO ioctls with known arguments, for the live tests and the benchmark.

Any fd will do: the syscall tracepoints fire before the kernel rejects the call, here with ENOTTY on /dev/null.
It names itself (comm) "pasid-client", waits for a line on stdin, runs its mode, and exits.

    python client.py calls [ROUNDS]  the PLAN below, once (or ROUNDS times, each on a line of its own)
    python client.py flood N         N IOMMU_IOAS_ALLOC calls as fast as it can
    python client.py steady SECONDS  one call every 2 ms
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from explorer.uapi import command_number  # noqa: E402
from probes.uapi_decode import encode_args  # noqa: E402

COMM = b"pasid-client"
TCGETS = 0x5401
UNKNOWN_IOMMUFD = 0x3B9F
# (command, arguments passed, the args a capture must decode from them: every in/inout field, no out field)
PLAN: list[tuple[str, dict[str, int], dict[str, int]]] = [
    ("IOMMU_IOAS_ALLOC", {}, {"size": 12, "flags": 0}),
    ("IOMMU_IOAS_MAP", {"flags": 7, "ioas_id": 1, "user_va": 0x7F0000000000, "length": 0x200000, "iova": 0x100000},
     {"size": 40, "flags": 7, "ioas_id": 1, "user_va": 0x7F0000000000, "length": 0x200000, "iova": 0x100000}),
    ("IOMMU_FAULT_QUEUE_ALLOC", {}, {"size": 16, "flags": 0}),
    ("IOMMU_HWPT_ALLOC", {"flags": 12, "dev_id": 2, "pt_id": 1, "fault_id": 3},
     {"size": 48, "flags": 12, "dev_id": 2, "pt_id": 1, "data_type": 0, "data_len": 0, "data_uptr": 0,
      "fault_id": 3}),
    ("IOMMU_HWPT_ALLOC", {"size": 40, "flags": 1, "dev_id": 2, "pt_id": 1},  # built against pre-6.11 headers
     {"size": 40, "flags": 1, "dev_id": 2, "pt_id": 1, "data_type": 0, "data_len": 0, "data_uptr": 0}),
    ("VFIO_DEVICE_BIND_IOMMUFD", {"iommufd": 9}, {"argsz": 24, "flags": 0, "iommufd": 9, "token_uuid_ptr": 0}),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", {"flags": 1, "pt_id": 4, "pasid": 42},
     {"argsz": 16, "flags": 1, "pt_id": 4, "pasid": 42}),
    ("VFIO_DEVICE_DETACH_IOMMUFD_PT", {"flags": 1, "pasid": 42}, {"argsz": 12, "flags": 1, "pasid": 42}),
    ("IOMMU_DESTROY", {"id": 4}, {"size": 8, "id": 4}),
]


def name_self() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(COMM), 0, 0, 0)  # PR_SET_NAME


def call(fd: int, cmd: int, buf: bytearray) -> None:
    try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress in the flood loop
        fcntl.ioctl(fd, cmd, buf)
    except OSError:
        pass


def main(argv: list[str]) -> None:
    name_self()
    fd = os.open("/dev/null", os.O_RDONLY)
    sys.stdin.readline()
    mode = argv[1]
    if mode == "calls":
        for n in range(int(argv[2]) if len(argv) > 2 else 1):
            if n:
                sys.stdin.readline()
            for name, args, _ in PLAN:
                call(fd, command_number(name), bytearray(encode_args(name, args)))
            call(fd, UNKNOWN_IOMMUFD, bytearray(b"\x08\0\0\0\0\0\0\0"))
            call(fd, TCGETS, bytearray(64))  # not iommufd: the capture must not keep it
    elif mode == "flood":
        buf, cmd = bytearray(encode_args("IOMMU_IOAS_ALLOC", {})), command_number("IOMMU_IOAS_ALLOC")
        for _ in range(int(argv[2])):
            call(fd, cmd, buf)
    elif mode == "steady":
        buf, cmd = bytearray(encode_args("IOMMU_IOAS_ALLOC", {})), command_number("IOMMU_IOAS_ALLOC")
        end = time.monotonic() + float(argv[2])
        while time.monotonic() < end:
            call(fd, cmd, buf)
            time.sleep(0.002)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv)
