"""`simulate`: turn a teaching scenario (YAML) into a recording."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...outputs import check_output, open_recording
from ...scenarios import load_scenario, reference
from ...units import fmt_ns
from ._common import add_force

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "simulate", help="run a teaching scenario (.yaml) and write its recording",
        description="Run a teaching scenario through the simulator: each action becomes the events a capture of "
                    "the scenario's kernel would record, in the kernel's order, with the PASIDs its allocator would "
                    "hand out. The recording can then be explored, checked or exported like a live capture.\n\n"
                    f"{reference()}\n\nSee recordings/scenarios/ for complete examples.",
        epilog="examples:\n"
               "  pasid-explorer simulate recordings/scenarios/01-two-processes-one-device.yaml -o two.pasidrec\n"
               "  pasid-explorer simulate my-bug.yaml   (writes my-bug.pasidrec here)\n"
               "  pasid-explorer check my-bug.yaml      (checks it without writing a recording)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", help="a scenario .yaml file")
    p.add_argument("-o", "--output", help="recording to write (default: the scenario's name, .pasidrec, here)")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.output or f"{Path(args.scenario).stem}.pasidrec"
    check_output(out, reads=(args.scenario,))
    run_ = load_scenario(args.scenario)
    with open_recording(out, replace=args.force) as f:
        n = run_.write(f)  # (a file, not its name: the name is claimed at the open, see open_recording)
    idx = run_.index()
    span = fmt_ns(idx.end_ns - idx.start_ns)
    found = sorted(a.rule for a in idx.anomalies)
    print(f"{out}: {n} events over {span} from '{run_.scenario.title}'; "
          f"{len(found)} anomalies{': ' + ', '.join(found) if found else ''}")
    expected = sorted(run_.scenario.expect)
    if found != expected:
        print(f"note: the scenario expects {', '.join(expected) or 'no anomalies'}")
    return 0
