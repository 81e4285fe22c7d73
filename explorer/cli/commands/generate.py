"""`generate`: a large, realistic, seeded recording for trying the explorer and measuring it."""

from __future__ import annotations

import argparse

from ...outputs import check_output
from ...workload import write_workload
from ..progress import Progress
from ._common import add_force, count

ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "generate", help="write a large synthetic recording of a busy host (seeded)",
        description="Write a seeded synthetic recording of a busy host: processes binding DSA/IAA accelerators "
                    "and faulting, two VMs with guest PASIDs through iommufd, and the DMA map traffic that "
                    "dominates real traces. The same seed gives the same file. Its only anomalies are the slow "
                    "page responses planted on purpose (and losses, with --loss-every).",
        epilog="examples:\n  pasid-explorer generate --events 1000000 -o big.pasidrec\n"
               "  pasid-explorer generate --events 50000 --seed 7 --loss-every 500 -o lossy.pasidrec",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="recording to write")
    add_force(p)
    p.add_argument("--events", type=count(1), default=100_000, help="number of events (default 100,000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--slow-every", type=count(0), default=20_000, metavar="N",
                   help="answer one page-request group in N after 120 ms (default 20,000; 0: never)")
    p.add_argument("--loss-every", type=count(0), default=0, metavar="N",
                   help="make about one lifecycle step in N a lost-events record (default 0: no loss)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.output)
    progress = Progress(f"generating {args.output}")
    n = write_workload(args.output, args.events, args.seed, progress=progress, replace=args.force,
                       slow_every=args.slow_every, loss_every=args.loss_every)
    progress.done()
    print(f"{args.output}: {n:,} events (seed {args.seed})")
    return 0
