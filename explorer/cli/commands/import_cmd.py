"""`import`: turn a kernel log or an ftrace capture into a recording the explorer can replay."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...importers import FORMATS, import_log
from ...outputs import check_output, keep_recording
from ...text import line
from ...units import counted
from ..progress import Progress
from ._common import add_force

ORDER = 50

DESCRIPTION = """\
Read what you already have - a kernel log or an ftrace capture - and write a recording whose faults sit on
per-device, per-PASID timelines, each fault's reason decoded into words.

Kernel logs (kernel-log): dmesg, dmesg -T, dmesg -H, journalctl -k (default, -o short-monotonic, short-iso,
short-full, short-unix), syslog files, and logs pasted into bug reports or mail (quote markers, line numbers,
blanked stamps and vendor prefixes are peeled off). Understood: Intel VT-d DMAR faults in every format since
3.x (two-line, PASID ffffffff, NO_PASID, PASID 0x.., interrupt remapping, the fault status register), AMD-Vi
event log entries (IO_PAGE_FAULT with its flags decoded, INVALID_DEVICE_REQUEST, ILLEGAL_DEV_TABLE_ENTRY,
page-table, device-table and command hardware errors, IOTLB timeouts, PPR entries and log overflows, split,
driver-prefixed and 2.6-era "AMD IOMMU:" forms), Arm SMMUv3 event dumps (event id, StreamID, SubstreamID =
PASID, address, access) and PRI reports, SMMUv2 context faults in every printed form (upstream, Qualcomm,
Tegra), blocked stream IDs and global faults, and "callbacks suppressed" counts. A paste that mixes log and
trace lines is read line by line by whichever importer understands each. Compressed or binary input is named
as such (zcat it into 'import -').

ftrace (ftrace): /sys/kernel/tracing/trace or trace_pipe, trace-cmd report, perf script output of the iommu and
intel_iommu tracepoints (faults, map/unmap, groups, page requests and responses), and PASID Explorer's own
events printed as 'pasid_explorer: {json}'. A trace.dat (trace-dat) is read through trace-cmd.

The format is detected; --format forces one. Lines from an IOMMU driver that look like a fault but match no
known format are counted and listed by 'pasid-explorer info'. Nothing is read into memory whole: a 1 GB log
streams through."""

EPILOG = """\
examples:
  pasid-explorer import dmesg.txt -o dmesg.pasidrec
  journalctl -k -o short-monotonic | pasid-explorer import - -o boot.pasidrec
  pasid-explorer import - -o bug.pasidrec          (paste a bug report's log, then Ctrl-D)
  sudo cat /sys/kernel/tracing/trace > t.txt && pasid-explorer import t.txt -o trace.pasidrec
  pasid-explorer import trace.dat -o trace.pasidrec
  pasid-explorer info dmesg.pasidrec               (what was parsed, not understood, suppressed)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("import", help="import a kernel log (dmesg, journal) or an ftrace capture as a recording",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="the log or trace to read ('-' reads standard input)")
    p.add_argument("-o", "--output", help="recording to write (default: INPUT with .pasidrec, in this directory)")
    p.add_argument("--format", choices=FORMATS,
                   help="skip detection and read the input as this format (ftrace text also reads the kernel-log "
                        "lines pasted among its trace lines, as detection would)")
    p.add_argument("--title", help="a title for the recording (default: the input's name)")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.output or (Path(args.input).stem if args.input != "-" else "stdin") + ".pasidrec"
    check_output(out, reads=(args.input,))  # (first: an -o naming the input is refused as that)
    if not args.force:
        keep_recording(out)
    progress = Progress(f"importing {args.input}", unit="bytes")
    stats = import_log(args.input, out, fmt=args.format, progress=progress, title=args.title,
                       keep=not args.force)
    progress.done()
    vendors = ", ".join(f"{v} {n:,}" for v, n in sorted(stats.by_vendor.items())) or "none"
    print(f"{out}: {counted(stats.events, 'event')} from {counted(stats.lines, 'line')} of {stats.input} "
          f"({stats.format}); by vendor: {vendors}")
    notes = [f"{counted(stats.parsed, 'line')} parsed"]
    if stats.unknown:
        notes.append(f"{stats.unknown:,} look like faults but were not understood (pasid-explorer info {out})")
    if stats.suppressed:
        notes.append(f"{stats.suppressed:,} fault messages were suppressed by the kernel's rate limit")
    if not stats.events:
        notes.append("no IOMMU fault or event lines found")
    print("  " + "; ".join(notes))
    for boot in stats.boots:  # (its kernel's name comes from the log)
        print(line(f"  {boot.describe()}"))
    return 0
