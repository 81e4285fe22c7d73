"""`record`: a headless live capture to a recording, with a counter, that stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from types import FrameType

from probes.capability import ATTACHED
from probes.capture import Capture, CaptureOptions
from probes.devices import PCI_DEVICES
from probes.recorder import RecordingTee

from ...errors import CaptureError
from ...outputs import keep_recording
from ...text import line, raw
from ._common import add_force

ORDER = 71
DEFAULT_RING_MB = 64
POLL_S = 0.25  # the ring wakes us sooner when it fills; long waits keep a quiet capture's CPU cost low
BDF = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def add_capture_arguments(p: argparse.ArgumentParser) -> None:
    """The options `record` and `live` share."""
    p.add_argument("--pid", type=int, help="only this process's iommufd/VFIO calls and exit")
    p.add_argument("--device", metavar="BDF", help="only events about this PCI device (0000:65:00.0) and "
                                                    "those naming no device")
    p.add_argument("--ring-kb", type=int, default=DEFAULT_RING_MB * 1024, metavar="KB",
                   help=f"kernel ring buffer size, a power of two (default {DEFAULT_RING_MB * 1024}); events "
                        f"beyond it are counted as lost")
    p.add_argument("--machine", metavar="NAME",
                   help="this machine's name in the recording (default: $PASID_EXPLORER_MACHINE, else 'host'): "
                        "name a VM's guest when you record it, so that 'replay host.pasidrec guest.pasidrec' "
                        "shows it under its own name; the boot id and clock readings that align it with other "
                        "recordings are kept whatever the name")
    add_force(p)


def capture_options(args: argparse.Namespace) -> CaptureOptions:
    """The capture's options, checked before any probe loads; an output that would replace a capture is refused."""
    if args.output is not None and not args.force:
        keep_recording(args.output)
    if args.pid is not None and not os.path.exists(f"/proc/{args.pid}"):
        raise CaptureError(f"--pid {args.pid}: no such process")
    device = args.device
    if device is not None:
        device = device.lower() if device.count(":") == 2 else "0000:" + device.lower()  # the kernel's name
        if not BDF.fullmatch(device):
            raise CaptureError(f"--device {args.device}: not a PCI address (expected the form 0000:65:00.0)")
        if not (PCI_DEVICES / device).exists():
            raise CaptureError(f"--device {args.device}: no such PCI device on this host ('lspci -D' lists them)")
    return CaptureOptions(pid=args.pid, device=device, ring_bytes=args.ring_kb * 1024, machine=args.machine)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "record", help="capture live PASID/iommufd events to a recording (root)",
        description="Capture this host's PASID activity to a recording: iommufd and VFIO ioctls with their "
                    "decoded arguments and results, page faults and responses passing through iommufd fault "
                    "queues, exits of the processes involved, IOMMU faults, mappings and group changes, and the "
                    "kernel's own PASID allocator, SVA and attach calls where the host lets BPF see them (see "
                    "'pasid-explorer probes'). A counter shows events, rate and losses. Ctrl-C or SIGTERM ends "
                    "the recording cleanly; a chunk is written to disk every second, so even kill -9 loses at "
                    "most the last second. Events the kernel ring buffer had no room for are recorded as 'lost' "
                    "events per CPU, never silently dropped.",
        epilog="examples:\n  sudo pasid-explorer record -o host.pasidrec\n"
               "  sudo pasid-explorer record -o qemu.pasidrec --pid $(pidof qemu-system-x86_64) --duration 60\n"
               "  sudo pasid-explorer record -o dsa.pasidrec --device 0000:6a:01.0\n"
               "  pasid-explorer replay host.pasidrec",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="recording to write (.pasidrec)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    add_capture_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no counter, only the final line")
    p.set_defaults(func=run)


class _Stop:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so the recording is always closed between writes."""

    def __init__(self) -> None:
        self.reason: str | None = None
        signal.signal(signal.SIGINT, self._on)
        signal.signal(signal.SIGTERM, self._on)

    def _on(self, signum: int, _frame: FrameType | None) -> None:
        self.reason = "interrupted" if signum == signal.SIGINT else "terminated"


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise CaptureError("--duration must be positive")
    stop = _Stop()
    source = RecordingTee(Capture(capture_options(args)), args.output, replace=args.force)
    show = not args.quiet and sys.stderr.isatty()
    if not args.quiet:
        attached = sum(v.status == ATTACHED for v in source.capture.verdicts)
        print(f"recording to {args.output}: {attached} hooks attached; Ctrl-C to stop", file=sys.stderr, flush=True)
    start = time.monotonic()
    end = None if args.duration is None else start + args.duration
    last_draw = 0.0
    term = raw(sys.stderr)  # the counter's own \r and erase-line, which the CLI's stderr would show escaped
    try:
        while stop.reason is None and source.failed is None and (end is None or time.monotonic() < end):
            source.pump(POLL_S if end is None else max(0.0, min(POLL_S, end - time.monotonic())))
            now = time.monotonic()
            if show and now - last_draw >= 0.25:
                last_draw = now
                term.write(f"\r\x1b[K{line(args.output)}: {_counter(source, now - start)}")
                term.flush()
    finally:
        if show:
            term.write("\r\x1b[K")
        extra = source.close(stop.reason or "complete")  # after a failed write: one line, what was kept
    elapsed = time.monotonic() - start
    print(f"{args.output}: {source.writer.events_written:,} events in {elapsed:.1f} s, "
          f"{extra.get('lost', 0):,} lost ({stop.reason or 'complete'})", file=sys.stderr)
    return 0


def _counter(source: RecordingTee, elapsed: float) -> str:
    n = source.events_written
    return f"{n:,} events · {n / max(elapsed, 1e-9):,.0f}/s · lost {source.capture.lost:,} · {elapsed:.0f} s"
