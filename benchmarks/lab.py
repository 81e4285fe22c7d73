"""The kernel lab's costs and whether its capture keeps up, per lab kernel, in one run.

For each kernel (--kernel, repeatable; default 6.12): the build (reused from the cache when there; its build_s
is then the time the cached build took), one boot running `faultq` with a burst of --flood IOMMU_OPTION calls
followed by --faults page faults on 4 mock devices answered through their fault queues, with the capture
attached inside the VM at the lab's ring size, and once more with the old 16 MiB ring to show why it grew. On
6.1 (no iommufd, no faultq) the boot loads the lab module instead: 64 ioasid allocations and 32 frees.

The last line is one JSON object: per kernel build_s, boot_s (QEMU start to the guest running its job), attach_s
(the capture compiling and attaching its probes inside the VM), events, lost, capture_cpu_us_per_event (the
capture's own CPU time inside the VM per event it recorded) and the same at 16 MiB. With --selftest, the same
for the kernel's own iommufd selftest (about 290k ioctls, 7.3 only: `selftest` in the kernel's figures). Needs
root and qemu.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.lab import kernels, session, workloads  # noqa: E402

OLD_RING_KB = 16 * 1024


def measure(version: str, command: list[str], ring_kb: int, out: Path) -> dict:
    run = session.run(version, command, out, ring_kb=ring_kb)
    f = run.figures
    return {"boot_s": f["boot_s"], "attach_s": f["attach_s"], "command_s": f["command_s"], "events": f["events"],
            "lost": f["lost"], "capture_cpu_us_per_event": f["capture_cpu_us_per_event"], "ring_kb": ring_kb,
            "status": run.status}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", action="append", choices=list(kernels.KERNELS))
    p.add_argument("--flood", type=int, default=100_000, help="IOMMU_OPTION calls in the burst")
    p.add_argument("--faults", type=int, default=250, help="page faults per mock device (at most 512)")
    p.add_argument("--selftest", action="store_true", help="also run the kernel's iommufd selftest (7.3)")
    args = p.parse_args()
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for version in args.kernel or [kernels.DEFAULT_KERNEL]:
            k = session.kernel(version, progress=None)
            if kernels.source_for(version).iommufd:
                runs = {"faultq": ["faultq", "-d", "4", "-n", str(args.faults), "-i", "7", "-p", "0x40", "-s",
                                   str(args.flood)]}
            else:  # 6.1: no iommufd, so no faultq; the lab module's allocations and frees are all it can make
                workloads.build_workloads(k)
                runs = {"faultq": workloads.module_command(k, 64, 32)}
            if args.selftest and kernels.source_for(version).selftest:
                runs["selftest"] = workloads.selftest_command()
            for name, command in runs.items():
                lab = measure(version, command, session.RING_KB, Path(tmp) / f"{version}.pasidrec")
                old = measure(version, command, OLD_RING_KB, Path(tmp) / f"{version}-16.pasidrec")
                figures = {**lab, "events_at_16mib_ring": old["events"], "lost_at_16mib_ring": old["lost"]}
                if name == "faultq":
                    result[version] = {"release": k.release, "build_s": round(k.build_s, 1), **figures}
                else:
                    result[version][name] = figures
            print(f"{version}: {json.dumps(result[version])}", file=sys.stderr)
    print(json.dumps({"kernels": result}))


if __name__ == "__main__":
    main()
