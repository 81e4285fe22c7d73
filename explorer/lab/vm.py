"""Boot a lab kernel under QEMU with the host's root shared read-only over 9p and a writable run folder.

The guest's PID 1 is `data/init.sh`; it runs the run folder's `job.sh` (or a console shell), writes the job's exit
status beside it and powers off. TCG works everywhere; KVM is used where the CPU can virtualize.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import DATA
from .kernels import LabError, LabKernel

QEMU = "qemu-system-x86_64"
ROOT_TAG, OUT_TAG = "hostroot", "labout"


def kvm_usable() -> bool:
    """KVM only where the CPU offers virtualization: a /dev/kvm without vmx/svm (a sandboxed host) is far slower
    than TCG."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return bool({"vmx", "svm"} & set(flags.split()))


@dataclass
class Boot:
    """One VM boot: which kernel, which machine, and where its results land."""

    kernel: LabKernel
    run_dir: Path
    memory_mb: int = 2048
    cpus: int = 2
    intel_iommu: bool = False  # q35 with a scalable-mode VT-d; the 9p devices go through it (iommu_platform)
    cwd: Path = field(default_factory=Path.cwd)

    def argv(self, shell: bool = False) -> list[str]:
        qemu = shutil.which(QEMU)
        if qemu is None:
            raise LabError(f"lab: {QEMU} not found: install the Debian package qemu-system-x86 "
                           "(.ci/setup installs it)")
        if not self.kernel.bzimage.exists():
            raise LabError(f"lab: {self.kernel.bzimage} is missing: run 'pasid-explorer lab build "
                           f"--kernel {self.kernel.version}'")
        kvm = kvm_usable()
        machine = "q35,kernel-irqchip=split" if self.intel_iommu and kvm else "q35"
        argv = [qemu, "-machine", machine, "-accel", "kvm" if kvm else "tcg,thread=multi",
                "-cpu", "host" if kvm else "max", "-smp", str(self.cpus), "-m", str(self.memory_mb),
                "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio" if shell else "file:" +
                str(self.run_dir / "console.log"), "-monitor", "none", "-kernel", str(self.kernel.bzimage)]
        dma = ""
        if self.intel_iommu:
            argv += ["-device", "intel-iommu,x-scalable-mode=on,aw-bits=48,caching-mode=on"]
            dma = ",iommu_platform=on,disable-legacy=on"
        argv += ["-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
                 "-device", f"virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG}{dma}",
                 "-fsdev", f"local,id=out,path={self.run_dir},security_model=none",
                 "-device", f"virtio-9p-pci,fsdev=out,mount_tag={OUT_TAG}{dma}"]
        cmdline = [f"root={ROOT_TAG}", "rootfstype=9p", "rootflags=trans=virtio,version=9p2000.L,msize=262144,"
                   "cache=loose", "ro", f"init={self._init()}", "console=ttyS0", "panic=-1", "quiet",
                   # TCG on a loaded host: check_timer() (arch/x86/kernel/apic/io_apic.c) counts timer ticks
                   # against a busy-wait, finds too few when the vCPU thread is starved and panics ("IO-APIC +
                   # timer doesn't work", or "timer doesn't work through Interrupt-remapped IO-APIC" with VT-d)
                   "no_timer_check",
                   f"PASIDLAB_BUILD={self.kernel.build_dir}", f"PASIDLAB_CWD={self.cwd}",
                   f"PASIDLAB_MODE={'shell' if shell else 'job'}"]
        if self.intel_iommu:
            cmdline.append("intel_iommu=on,sm_on")
        return argv + ["-append", " ".join(cmdline)]


    def _init(self) -> Path:
        """The guest's PID 1, copied beside the run's results (an installed package may not keep its mode)."""
        init = self.run_dir / "init.sh"
        shutil.copyfile(DATA / "init.sh", init)
        init.chmod(0o755)
        return init


@dataclass
class BootResult:
    status: int | None  # the job's exit status; None when the guest never wrote one (it crashed or hung)
    boot_s: float | None  # QEMU start to the guest's init running its job
    wall_s: float
    output: str
    console: str


def run_job(boot: Boot, script: str, timeout_s: float = 900) -> BootResult:
    """Boot, run `script` (sh) in the guest, power off; the guest's results stay in `boot.run_dir`."""
    boot.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("job.rc", "job.out", "boot.txt", "console.log"):
        (boot.run_dir / stale).unlink(missing_ok=True)
    (boot.run_dir / "job.sh").write_text(script)
    argv = boot.argv()
    started = time.monotonic()
    boot_s = None
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        try:
            while proc.poll() is None:
                if boot_s is None and (boot.run_dir / "boot.txt").exists():
                    boot_s = time.monotonic() - started
                if time.monotonic() - started > timeout_s:
                    proc.kill()
                    raise LabError(f"lab: the VM ran past {timeout_s:.0f} s; its console is "
                                   f"{boot.run_dir / 'console.log'}")
                time.sleep(0.05)
        except KeyboardInterrupt:
            proc.kill()
            raise
        qemu_out = proc.stdout.read() if proc.stdout else ""
    wall = time.monotonic() - started
    if proc.returncode != 0 and not (boot.run_dir / "job.rc").exists():
        raise LabError(f"lab: {QEMU} failed (exit {proc.returncode}): {qemu_out.strip()[-300:]}")
    rc_file = boot.run_dir / "job.rc"
    status = int(rc_file.read_text().strip() or -1) if rc_file.exists() else None
    return BootResult(status, boot_s, wall, _text(boot.run_dir / "job.out"), _text(boot.run_dir / "console.log"))


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def shell(boot: Boot) -> int:
    """A console shell in the guest for a person; QEMU owns the terminal until the shell exits."""
    boot.run_dir.mkdir(parents=True, exist_ok=True)
    print(f"lab shell: booting {boot.kernel.release} (Ctrl-A X quits QEMU)", file=sys.stderr)
    return subprocess.call(boot.argv(shell=True))
