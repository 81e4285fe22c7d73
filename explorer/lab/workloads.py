"""The lab's workloads, compiled on the host against each lab kernel's own uAPI (the guest shares the host's
root, so a binary built here runs there)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import DATA, kernels
from .kernels import LabError, LabKernel

SOURCES = DATA / "workloads"
MODULE = DATA / "module"  # pasidlab.ko: the PASID allocator (global 6.6+, ioasid up to 6.3), driven
SELFTEST = "iommufd"  # tools/testing/selftests/iommu/iommufd.c, built from the lab kernel's own tree
GUEST_OUT = "/tmp/lab"  # where data/init.sh mounts the run folder in the guest
TALLY = "iocount.json"  # libiocount's tally of what the selftest asked for, in the run folder
SELFTEST_TAP = "selftest.tap"


def selftest_command() -> list[str]:
    """The guest command that runs the kernel's iommufd selftest under libiocount: its TAP output and the tally
    land in the run folder; the command exits with the selftest's status."""
    return ["sh", "-c", f'bins=$(dirname "$(command -v {SELFTEST})"); LD_PRELOAD="$bins/libiocount.so" '
            f"IOCOUNT_OUT={GUEST_OUT}/{TALLY} {SELFTEST} >{GUEST_OUT}/{SELFTEST_TAP} 2>&1"]


def bin_dir(kernel: LabKernel) -> Path:
    return kernel.build_dir / "pasidlab-bin"


def build_workloads(kernel: LabKernel) -> Path:
    """Every `data/workloads/*.c` built against `kernel`'s exported headers and its selftest header (`lib*.c` as
    LD_PRELOAD libraries), and the kernel's own iommufd selftest where its tree's copy builds against its own
    uAPI, and the lab module (pasidlab.ko); a binary is rebuilt only when its source is newer. A kernel without
    iommufd (6.1) gets the module alone. Returns the folder that holds them (put it on the guest's PATH)."""
    headers = kernel.build_dir / "usr" / "include"
    if not (headers / "linux" / "version.h").exists():
        _run(["make", "-s", "-C", str(kernel.src_dir), f"O={kernel.build_dir}", "headers"], "make headers")
    out = bin_dir(kernel)
    out.mkdir(exist_ok=True)
    _build_module(kernel, out / "module")
    if not (headers / "linux" / "iommufd.h").exists():  # before 6.2 (the ioasid era) there is no iommufd
        return out
    uapi = ["-isystem", str(headers), "-I", str(kernel.src_dir / "drivers" / "iommu" / "iommufd")]
    for source in sorted(SOURCES.glob("*.c")):
        library = source.stem.startswith("lib")  # an LD_PRELOAD library (libiocount), not a program
        binary = out / (source.stem + (".so" if library else ""))
        if _fresh(binary, source):
            continue
        shared = ["-shared", "-fPIC"] if library else []
        _run(["gcc", "-O2", "-Wall", *shared, *uapi, str(source), "-o", str(binary), *(["-ldl"] if library else [])],
             f"compiling {source.name} for {kernel.version}")
    if kernels.source_for(kernel.version).selftest:
        selftests = kernel.src_dir / "tools" / "testing" / "selftests"
        source = selftests / "iommu" / "iommufd.c"
        if not _fresh(out / SELFTEST, source):
            _run(["gcc", "-O2", "-Wall", "-Wno-unused-function", "-D_GNU_SOURCE", *uapi, "-I", str(selftests),
                  str(source), "-o", str(out / SELFTEST), "-lcap"],
                 f"compiling the iommufd selftest of {kernel.version}")
    return out


def _build_module(kernel: LabKernel, where: Path) -> None:
    """pasidlab.ko, built against the lab kernel's own build tree (kbuild, out of tree) in a copy of its source."""
    if _fresh(where / "pasidlab.ko", MODULE / "pasidlab.c"):
        return
    where.mkdir(exist_ok=True)
    for source in MODULE.iterdir():
        (where / source.name).write_bytes(source.read_bytes())
    _run(["make", "-s", "-C", str(kernel.src_dir), f"O={kernel.build_dir}", f"M={where}", "modules"],
         f"building the lab module for {kernel.version}")


def module_command(kernel: LabKernel, allocs: int, frees: int, double_frees: int = 0) -> list[str]:
    """The guest command that loads pasidlab.ko (it allocates `allocs` PASIDs, frees the first `frees` and, as a
    planted bug, frees the first `double_frees` of those again) and prints its state as JSON."""
    ko = bin_dir(kernel) / "module" / "pasidlab.ko"
    return ["sh", "-c", f"insmod {ko} allocs={allocs} frees={frees} double_frees={double_frees} && "
            "cat /sys/kernel/debug/pasidlab/state"]


def _fresh(binary: Path, source: Path) -> bool:
    return binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime


def _run(argv: list[str], what: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        raise LabError(f"lab: {what} failed: {lines[-1] if lines else 'no message'}")
