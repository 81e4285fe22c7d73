"""`merge`: a host's and its guests' recordings as one recording on one timeline (`replay A B` does it on the fly)."""

from __future__ import annotations

import argparse
import sys

from ...errors import ExplorerError
from ...merge import LINK_WINDOW_NS, Merged, Source, merge, open_sources
from ...outputs import check_output, keep_recording
from ...text import line
from ...units import fmt_ns, parse_duration
from ..progress import Progress
from ._common import add_force

ORDER = 52

ALIGNMENT_HELP = (
    "How clocks are aligned: a recording made with this version names its machine ('host' unless record "
    "--machine or $PASID_EXPLORER_MACHINE says otherwise; the kernel lab's guest is lab-<version>) and keeps its "
    "boot id and the machine's monotonic, wall (realtime) and boottime clocks read together at the start and end. "
    "The first recording's clock is the timeline; every other machine's times are moved by the difference of "
    "the two machines' wall-minus-monotonic readings. That is exact to the stated bound (how far each machine's "
    "wall clock moved against its monotonic clock during the recording, and how long the readings took) PLUS "
    "however far the two wall clocks disagreed: NTP keeps hosts within milliseconds; a VM that set its clock "
    "from an emulated RTC at boot may be up to a second off. Give --offset where you know better, or where a "
    "recording carries no clock readings (older ones, imports).")


LINK_WINDOW = f"{LINK_WINDOW_NS // 1_000_000}ms"


def add_machine_arguments(p: argparse.ArgumentParser) -> None:
    """The options `merge` and `replay A B` share."""
    p.add_argument("--offset", action="append", default=[], metavar="NAME=±DURATION",
                   help="add DURATION to machine NAME's times instead of aligning its clock from the recordings "
                        "(e.g. lab-6.12=+958.2s, guest=-1500ms); repeatable")
    p.add_argument("--name", action="append", default=[], metavar="FILE=NAME",
                   help="call FILE's machine NAME (two recordings that both name their machine 'host', older "
                        "recordings, must be told apart); repeatable")
    p.add_argument("--link-window", default=LINK_WINDOW, metavar="DURATION",
                   help="how long a VMM may take to pass a page-request group between host and guest: a guest's "
                        "request (response) is linked to the host's only when it is the one match within this "
                        f"window, after alignment, either way (default {LINK_WINDOW})")


def _pairs(values: list[str], option: str, what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.rpartition("=")
        if not sep or not key or not value:
            raise ExplorerError(f"{option} {v!r}: expected {what}")
        if key in out:  # (the last would silently win)
            raise ExplorerError(f"{option} {key}: given twice ({key}={out[key]} and {key}={value})")
        out[key] = value
    return out


def sources_from(args: argparse.Namespace, files: list[str]) -> tuple[list[Source], int]:
    """Open and align the recordings named on the command line; the link window in ns."""
    offsets = {}
    for name, text in _pairs(args.offset, "--offset", "NAME=±DURATION, e.g. guest=+1.5s").items():
        try:
            offsets[name] = parse_duration(text.removeprefix("+"))
        except ValueError as e:
            raise ExplorerError(f"--offset {name}={text}: {e}") from None
    try:
        window = parse_duration(args.link_window)
    except ValueError as e:
        raise ExplorerError(f"--link-window: {e}") from None
    names = _pairs(args.name, "--name", "FILE=NAME")
    return open_sources(files, offsets, names), window


def describe(sources: list[Source], result: Merged) -> list[str]:
    """What was merged and how each clock was aligned, for people."""
    lines = []
    for s in sources:
        how = "the timeline's clock" if s.alignment is None else s.alignment.describe()
        lines.append(f"  {s.machine.name}: {result.events[s.machine.name]:,} events from {s.path}; {how}")
    lines.append(f"  {result.links} page-request group event pair(s) linked between machines (a VMM passing a "
                 "group between host and guest)")
    return [line(x) for x in lines]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "merge", help="merge a host's and its VMs' guests' recordings into one, on one timeline",
        description="Write one recording of several machines: the first recording's (the host's) and each "
                    "other's (a guest's), clocks aligned, each guest's devices named 'machine/device' and its "
                    "PASIDs modelled apart from the host's (a guest's PASID 5 is not the host's), and each "
                    "page-request group a VMM passed from the host's iommufd fault queue into its guest (and "
                    "the answer back) linked where it is the one match. replay, info, check and export read the "
                    "result like any recording. " + ALIGNMENT_HELP,
        epilog="examples:\n"
               "  sudo pasid-explorer record -o host.pasidrec &       # on the host\n"
               "  sudo pasid-explorer record --machine guest0 -o guest.pasidrec   # in the guest, meanwhile\n"
               "  pasid-explorer merge -o both.pasidrec host.pasidrec guest.pasidrec\n"
               "  pasid-explorer merge -o both.pasidrec host.pasidrec old-guest.pasidrec --offset host-2=+12.5s "
               "--name old-guest.pasidrec=host-2\n"
               "  pasid-explorer replay host.pasidrec guest.pasidrec   # the same, without writing a file\n"
               "errors: the same boot given twice, two machines of one name (--name), a machine with neither "
               "clock readings nor --offset: each one line, exit status 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings: the host's first, then its guests'")
    p.add_argument("-o", "--output", required=True, help="merged recording to write (.pasidrec)")
    add_force(p)
    add_machine_arguments(p)
    p.set_defaults(func=run)


def merge_files(args: argparse.Namespace, output: str, keep: bool = False) -> list[str]:
    """Merge the recordings named on the command line (`args.files`) into `output` (`keep`: without --force);
    what was done, for people."""
    sources, window = sources_from(args, args.files)
    progress = Progress(f"merging into {output}")
    try:
        result = merge(sources, output, window_ns=window, progress=progress, keep=keep)
    finally:
        for s in sources:
            s.recording.close()
    progress.done()
    for loss in result.losses:
        print(f"pasid-explorer: {line(loss)}", file=sys.stderr)
    return [line(f"{sum(result.events.values()):,} events of {len(sources)} machines on one timeline (link window "
                 f"{fmt_ns(window)}):"), *describe(sources, result)]


def run(args: argparse.Namespace) -> int:
    check_output(args.output, reads=args.files)
    if not args.force:
        keep_recording(args.output)
    first, *rest = merge_files(args, args.output, keep=not args.force)
    print("\n".join([f"{line(args.output)}: {first}", *rest]))
    return 0
