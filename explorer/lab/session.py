"""`lab run` end to end: a lab kernel (cached or built), its workloads, one boot that runs a command under
`record` in the guest, and the recording and figures brought back to the host."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import explorer
from explorer.machines import NAME_ENV

from . import kernels
from .kernels import LabError, LabKernel, Progress
from .vm import Boot, BootResult, run_job
from .workloads import GUEST_OUT, build_workloads

PROJECT = Path(explorer.__file__).resolve().parents[1]  # the guest imports the very same code
RING_KB = 256 * 1024  # the capture's ring inside the VM: the iommufd selftest's ~500k events fit whole (200 B a
# record): under TCG on a loaded host the consumer falls behind, and at 64 MiB it lost 49,558 of them
VM_MEMORY_MB = 2048


@dataclass
class LabRun:
    """What one `lab run` produced on the host."""

    kernel: LabKernel
    recording: Path | None
    status: int | None  # the command's exit status in the guest
    boot: BootResult
    figures: dict
    command_output: str
    run_dir: Path


def printable(text: str) -> str:
    """Guest text for a terminal: escape sequences and other control characters dropped (SeaBIOS clears the
    screen; a command may print anything)."""
    return "".join(ch for ch in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text) if ch.isprintable()).strip()


def kernel(version: str, progress: Progress | None = None, build: bool = True) -> LabKernel:
    """The cached lab kernel of `version`, else (with `build`) a fresh build of it."""
    found = kernels.cached(version)
    if found is not None:
        return found
    if not build:
        raise LabError(f"lab: no lab kernel {version} is built yet: run 'pasid-explorer lab build --kernel "
                       f"{version}' (5-9 minutes on 2 idle cores)")
    return kernels.build(version, progress)


def new_run_dir() -> Path:
    runs = kernels.cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir()
    return path


def guest_script(command: list[str], bins: Path, ring_kb: int, stop_at: str | None = None,
                 machine: str = "lab") -> str:
    """The guest's job: the workloads on PATH, this project importable, the command under the capture, whose
    recording names its machine `machine` (so that it stands apart from its host's beside it)."""
    guest = [sys.executable, "-m", "explorer.lab.guest", "--out", GUEST_OUT, "--ring-kb", str(ring_kb)]
    if stop_at:
        guest += ["--stop-at", stop_at]
    return (f"export PATH={shlex.quote(str(bins))}:$PATH PYTHONPATH={shlex.quote(str(PROJECT))} "
            f"{NAME_ENV}={shlex.quote(machine)}\n"
            f"exec {shlex.join(guest + ['--', *command])}\n")


def run(version: str, command: list[str], output: Path | None = None, *, intel_iommu: bool = False,
        ring_kb: int = RING_KB, stop_at: str | None = None, progress: Progress | None = None,
        timeout_s: float = 900) -> LabRun:
    """Boot `version`, run `command` in it with the capture attached; the recording lands at `output`."""
    if not command:
        raise LabError("lab run: no command given (lab run -- CMD ...)")
    lab = kernel(version, progress)
    bins = build_workloads(lab)
    run_dir = new_run_dir()
    boot = Boot(lab, run_dir, memory_mb=VM_MEMORY_MB, intel_iommu=intel_iommu)
    result = run_job(boot, guest_script(command, bins, ring_kb, stop_at, f"lab-{version}"), timeout_s=timeout_s)
    figures_file = run_dir / "figures.json"
    if not figures_file.exists():
        tail = [printable(line) for line in (result.output or result.console).strip().splitlines()[-5:]]
        raise LabError(f"lab run: the capture in the guest ({lab.release}) did not finish: "
                       + (" | ".join(tail) or f"no output; console in {run_dir / 'console.log'}"))
    figures = json.loads(figures_file.read_text())
    figures["boot_s"] = round(result.boot_s, 2) if result.boot_s is not None else None
    figures["wall_s"] = round(result.wall_s, 2)
    recording = None
    if output is not None:
        shutil.copyfile(run_dir / "recording.pasidrec", output)
        recording = output
    out_file = run_dir / "command.out"
    return LabRun(lab, recording, figures.get("status"), result, figures,
                  out_file.read_text(errors="replace") if out_file.exists() else "", run_dir)
