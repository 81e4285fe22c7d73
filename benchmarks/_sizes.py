"""What the benchmarks measured at several sizes share (ingest.py's events, import.py's log lines): their common
options, the loop over the sizes, smallest first, so that growth shows, and the last line, one JSON object of the
figures at the largest size with `sizes` listing them at every size."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

Say = Callable[..., None]


def parser(doc: str | None, sizes: str, what: str) -> argparse.ArgumentParser:
    """The options every such benchmark takes; `sizes` names the size option (events, lines), `what` its unit."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(f"--{sizes}", type=int, nargs="+", default=[1_000_000],
                    help=f"{what}, smallest first (default 1,000,000; the issue's: 1000000 10000000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timed step and its baseline; the best counts")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    return ap


def run(args: argparse.Namespace, sizes: list[int], unit: str, measure: Callable[[int, Say], dict[str, Any]],
        growth: Callable[[dict[str, Any]], str]) -> int:
    """Measure at each size in turn; print a line of each size's `growth` figures, then the JSON line."""
    say: Say = (lambda *a: None) if args.json else print
    results = []
    for n in sizes:
        say(f"-- {n:,} {unit}")
        results.append(measure(n, say))
    if len(results) > 1:
        say("growth: " + ", ".join(growth(r) for r in results))
    print(json.dumps({**results[-1], "sizes": results}))
    return 0
