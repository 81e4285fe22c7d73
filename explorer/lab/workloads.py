"""The lab's workloads, compiled on the host against each lab kernel's own uAPI (the guest shares the host's
root, so a binary built here runs there)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import DATA
from .kernels import LabError, LabKernel

SOURCES = DATA / "workloads"


def bin_dir(kernel: LabKernel) -> Path:
    return kernel.build_dir / "pasidlab-bin"


def build_workloads(kernel: LabKernel) -> Path:
    """Every `data/workloads/*.c` built against `kernel`'s exported headers and its selftest header; a binary
    is rebuilt only when its source is newer; none on a kernel without iommufd (6.1). Returns the folder that
    holds them (put it on the guest's PATH)."""
    headers = kernel.build_dir / "usr" / "include"
    if not (headers / "linux" / "iommufd.h").exists():
        _run(["make", "-s", "-C", str(kernel.src_dir), f"O={kernel.build_dir}", "headers"], "make headers")
    out = bin_dir(kernel)
    out.mkdir(exist_ok=True)
    if not (headers / "linux" / "iommufd.h").exists():  # before 6.2 (the ioasid era) there is no iommufd
        return out
    for source in sorted(SOURCES.glob("*.c")):
        binary = out / source.stem
        if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
            continue
        _run(["gcc", "-O2", "-Wall", "-isystem", str(headers), "-I",
              str(kernel.src_dir / "drivers" / "iommu" / "iommufd"), str(source), "-o", str(binary)],
             f"compiling {source.name} for {kernel.version}")
    return out


def _run(argv: list[str], what: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        raise LabError(f"lab: {what} failed: {lines[-1] if lines else 'no message'}")
