"""`info`: what a recording holds, where it came from, and what it could not see."""

from __future__ import annotations

import argparse

from ...summary import info_text, recording_info
from ._common import open_with_progress, print_json

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "info", help="summarise a recording: events by kind, devices, PASIDs, time range, coverage",
        description="Summarise a recording (or a scenario .yaml, simulated in memory): events by kind, the devices "
                    "and their PASID widths, every PASID seen, the time range, which kernel's rules apply, which "
                    "hooks the capture could not observe, lines an import did not understand, and any damage "
                    "(a capture cut short keeps every complete chunk).",
        epilog="examples:\n  pasid-explorer info recordings/01-two-processes-one-device.pasidrec\n"
               "  pasid-explorer info capture.pasidrec --json | jq .by_kind",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .pasidrec recording or a scenario .yaml")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_with_progress(args.file, history=False) as idx:
        info = recording_info(args.file, idx)
    if args.json:
        print_json(info)
    else:
        print("\n".join(info_text(info)))
    return 0
