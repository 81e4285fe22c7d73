"""`lab`: real lab kernels under QEMU that make real PASID events, for a machine with no IOMMU of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...lab import claims, kernels, session, vm
from ...outputs import keep_recording
from ..progress import Progress
from ._common import add_force, count, print_json

ORDER = 72


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "lab", help="build lab kernels and run commands in a VM whose kernel makes real PASID events",
        description="The kernel lab: Debian's kernel source packages (6.12; 7.3 from trixie-backports, whose "
                    "iommufd selftest mock device takes PASIDs; 6.1, the ioasid era) built with iommufd's "
                    "selftest driver, kprobes, fentry and no lockdown, cached under the user's cache directory, "
                    "and booted under QEMU with this host's root filesystem shared read-only. 'lab run' runs a "
                    "command inside the VM with the capture attached (as 'record') and writes the recording "
                    "here. The lab's workloads are on the guest's PATH: faultq makes I/O page faults with chosen "
                    "PASIDs and PRG indexes through the mock device's fault queues. A build takes about 10 "
                    "minutes on two cores and resumes where it stopped; a boot about 10 s (no KVM needed).",
        epilog="examples:\n  pasid-explorer lab build --kernel 6.12\n"
               "  pasid-explorer lab run -o faults.pasidrec -- faultq -d 2 -n 20 -i 4 -p 5\n"
               "  pasid-explorer lab run --kernel 6.12 --intel-iommu -o vtd.pasidrec -- true\n"
               "  pasid-explorer lab shell\n  pasid-explorer lab status",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lab = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)

    b = lab.add_parser("build", help="build (or find cached) lab kernels")
    b.add_argument("--kernel", action="append", choices=list(kernels.KERNELS),
                   help=f"kernel version (repeatable; default {kernels.DEFAULT_KERNEL})")
    b.add_argument("-j", "--jobs", type=count(1), help="parallel make jobs (default: all CPUs)")
    b.set_defaults(func=run_build)

    r = lab.add_parser("run", help="run a command in the VM with the capture attached",
                       description="Boot the lab kernel, run COMMAND inside it (cwd and files as on this host, "
                                   "read-only) with the capture attached, and write the recording here.")
    _boot_arguments(r)
    r.add_argument("-o", "--output", type=Path, help="recording to write (default lab-VERSION.pasidrec)")
    add_force(r)
    r.add_argument("--ring-kb", type=int, default=session.RING_KB, metavar="KB",
                   help=f"the capture's ring buffer inside the VM (default {session.RING_KB})")
    r.add_argument("--stop-at", metavar="GUEST_FILE",
                   help="end the capture once the command creates this file in the guest (faultq -H does, to "
                        "end a recording while the kernel still holds unanswered groups)")
    r.add_argument("--json", action="store_true", help="print the run's figures as one JSON object")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    r.set_defaults(func=run_command)

    s = lab.add_parser("shell", help="a shell in the VM, on this terminal")
    _boot_arguments(s)
    s.set_defaults(func=run_shell)

    st = lab.add_parser("status", help="which lab kernels are built, where the cache is")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)


def _boot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", default=kernels.DEFAULT_KERNEL, choices=list(kernels.KERNELS),
                   help=f"kernel version (default {kernels.DEFAULT_KERNEL})")
    p.add_argument("--intel-iommu", action="store_true",
                   help="give the guest a scalable-mode Intel IOMMU that its virtio devices go through "
                        "(intel_iommu:* tracepoints, real DMA map traffic; the selftest mock cannot be used then)")


def _progress() -> kernels.Progress:
    bars: dict[str, Progress] = {}

    def say(stage: str, done: int, total: int | None) -> None:
        if stage not in bars:
            for old in bars.values():
                old.done()
            bars[stage] = Progress(f"lab: {stage}", unit="files")
            print(f"lab: {stage}", file=sys.stderr)
        bars[stage](done, total)
    return say


def run_build(args: argparse.Namespace) -> int:
    for version in args.kernel or [kernels.DEFAULT_KERNEL]:
        k = kernels.build(version, _progress(), jobs=args.jobs)
        print(f"lab: {k.release} ready ({k.bzimage}, built in {k.build_s / 60:.1f} min)")
    return 0


def run_command(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    output = args.output or Path(f"lab-{args.kernel}.pasidrec")
    if not args.force:
        keep_recording(output)  # (before the boot: the recording is copied in place at the end)
    result = session.run(args.kernel, command, output, intel_iommu=args.intel_iommu, ring_kb=args.ring_kb,
                          stop_at=args.stop_at, progress=_progress())
    sys.stdout.write(result.command_output)
    f = result.figures
    if args.json:
        print_json({"kernel": result.kernel.release, "recording": str(output), **f})
        print()
    print(f"lab: {result.kernel.release}: {output}: {f['events']:,} events, {f['lost']:,} lost; booted in "
          f"{f['boot_s']} s, capture attached in {f['attach_s']} s; command exit {result.status}",
          file=sys.stderr)
    return result.status if isinstance(result.status, int) else 1


def run_shell(args: argparse.Namespace) -> int:
    k = session.kernel(args.kernel, _progress())
    return vm.shell(vm.Boot(k, session.new_run_dir(), memory_mb=session.VM_MEMORY_MB, intel_iommu=args.intel_iommu))


def run_status(args: argparse.Namespace) -> int:
    rows = []
    for version, src in kernels.KERNELS.items():
        k = kernels.cached(version)
        rows.append({"version": version, "suite": src.suite or "this machine's apt sources",
                     "teaches": src.teaches, "built": k.info() if k else None, "fires": list(claims.FIRES[version]),
                     "cannot": claims.cannot(version, claims.present(version))})
    if args.json:
        print_json({"cache": str(kernels.cache_root()), "kernels": rows})
        print()
        return 0
    print(f"lab cache: {kernels.cache_root()}")
    for row in rows:
        built = row["built"]
        state = f"built: {built['release']} in {built['build_s'] / 60:.1f} min" if built else "not built"
        print(f"  {row['version']:5} {state:40} {row['teaches']}")
        print(f"        fires (each proven by a lab test): {', '.join(row['fires'])}")
        for hook, why in row["cannot"].items():
            print(f"        cannot fire {hook}: {why}")
    return 0
