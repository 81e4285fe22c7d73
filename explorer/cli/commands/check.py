"""`check`: run the allocator model over a recording and report every broken invariant."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ...fleet import check_one, fleet_status, fleet_text, recordings_in, summary
from ...index import RecordingIndex
from ...simulator import RULES, Anomaly
from ...summary import anomaly_text, check_report, info_text, interval_text
from ...text import line
from ...units import fmt_ns
from ..progress import Progress
from ._common import count, milliseconds, open_with_progress, print_json, warn_damage

ORDER = 30
SHOWN_PER_RULE = 10  # findings of each kind `check` prints without --all


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rules = "\n".join(f"  {r.name:<24} {r.title}" for r in RULES.values())
    p = sub.add_parser(
        "check", help="run the simulator's invariant checks over one recording or a fleet of them "
                      "(exit 0 clean, 1 findings, 2 unreadable)",
        description="Replay a recording (or a scenario .yaml) through the model of the kernel's PASID machinery "
                    "and report every broken invariant, with a plain-language explanation and the events that "
                    "prove it. Exit status: 0 clean, 1 anomalies found (uncertain ones included: after lost events, or "
                    "in a recording that cannot see the PASID lifecycle), 2 unreadable input.\n\n"
                    "Several files, or directories (searched for *.pasidrec), check a fleet: each recording in a "
                    "worker process (--jobs), one row each (host, kernel, events, findings by severity, the rules "
                    "found), then a summary table of findings per host and kernel. A recording that cannot be read "
                    "is a row with its one-line error, and the others go on. The exit status is the worst row's: "
                    "2 if any was unreadable, else 1 if any had findings, else 0.\n\n"
                    f"The checks:\n{rules}",
        epilog="examples:\n  pasid-explorer check recordings/06-buggy-driver.pasidrec\n"
               "  pasid-explorer check capture.pasidrec --stale-ms 20 --json\n"
               "  pasid-explorer check fleet/ --jobs 8                 # every *.pasidrec under fleet/\n"
               "  pasid-explorer check host1.pasidrec host2.pasidrec --json | jq '.summary'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="+", help="a .pasidrec recording or a scenario .yaml; several, or directories, "
                                           "for a fleet")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (info plus 'anomalies'; for a fleet, 'recordings' and 'summary')")
    p.add_argument("--all", action="store_true",
                   help=f"print every finding (default: a summary, then the first {SHOWN_PER_RULE} of each kind)")
    p.add_argument("--stale-ms", type=milliseconds, default=None, metavar="MS",
                   help="report page-request groups unanswered this long, and processes that exited with SVA "
                        "binds held on this long after (default 100, or the scenario's)")
    p.add_argument("--jobs", "-j", type=count(1), default=os.cpu_count() or 1, metavar="N",
                   help="fleet: recordings checked at once, each in its own process (default: the CPUs here)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.file) == 1 and not Path(args.file[0]).is_dir():
        args.file = args.file[0]
        return run_one(args)
    return run_fleet(args)


def run_fleet(args: argparse.Namespace) -> int:
    """Many recordings in parallel processes: a row each as it is done, then the summary per host and kernel."""
    paths = recordings_in(args.file)
    stale_ns = None if args.stale_ms is None else int(args.stale_ms * 1e6)
    progress = Progress(f"checking {len(paths):,} recordings", unit="recordings")
    rows: dict[str, dict[str, Any]] = {}
    jobs = max(1, min(args.jobs, len(paths)))
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(check_one, p, stale_ns): p for p in paths}
        for f in as_completed(futures):
            rows[futures[f]] = f.result()
            progress(len(rows), len(paths))
    progress.done()
    ordered = [rows[p] for p in paths]
    if args.json:
        print_json({"recordings": ordered, "summary": summary(ordered), "status": fleet_status(ordered)})
    else:
        print("\n".join(fleet_text(ordered)))
    return fleet_status(ordered)


def run_one(args: argparse.Namespace) -> int:
    with open_with_progress(args.file, args.stale_ms, history=None) as idx:
        return _report_one(args, idx)


def _report_one(args: argparse.Namespace, idx: RecordingIndex) -> int:
    report = check_report(args.file, idx)
    anomalies = idx.anomalies
    unreadable = idx.n == 0 and bool(idx.damage)
    if args.json:
        print_json(report)
    else:
        print("\n".join(info_text(report, facts=False)))
        print(interval_text(report["intervals"]))
        print()
        if not anomalies:
            print("nothing readable to check" if unreadable else "clean: every invariant holds")
        else:
            print(findings_text(anomalies, None if args.all else SHOWN_PER_RULE))
        for a in anomalies if args.all else first_of_each_rule(anomalies, SHOWN_PER_RULE):
            print("\n".join(anomaly_text(a, idx)))
        if not args.all and len(anomalies) > len(first_of_each_rule(anomalies, SHOWN_PER_RULE)):
            print(f"\n(the first {SHOWN_PER_RULE} of each kind are shown: --all prints every one)")
        print("\n".join(kernel_state_text(report.get("kernel_state"))))
    warn_damage(args.file, idx.damage)
    if unreadable:  # nothing was checked: not "clean"
        return 2
    disagree = bool((report.get("kernel_state") or {}).get("disagreements"))
    return 1 if anomalies or disagree else 0


def first_of_each_rule(anomalies: list[Anomaly], n: int) -> list[Anomaly]:
    """The first `n` findings of each rule, in time order: a recording with a million faults stays readable."""
    seen: dict[str, int] = {}
    out = []
    for a in anomalies:
        seen[a.rule] = seen.get(a.rule, 0) + 1
        if seen[a.rule] <= n:
            out.append(a)
    return out


def findings_text(anomalies: list[Anomaly], shown: int | None) -> str:
    """The summary before the list: how many findings of each kind (repeats folded into one counted)."""
    by_rule: dict[str, int] = {}
    for a in anomalies:
        by_rule[a.rule] = by_rule.get(a.rule, 0) + a.count
    summary = ", ".join(f"{n:,} {RULES[r].title if r in RULES else r}" for r, n in by_rule.items())
    return f"{sum(by_rule.values()):,} anomalies: {summary}" + \
        ("" if shown is None else f" (the first {shown} of each kind follow)") + "\n"


def kernel_state_text(state: dict[str, Any] | None) -> list[str]:
    """The kernel's own state beside the model, for people (nothing when the recording holds no snapshot)."""
    if not state:
        return []
    lines = ["", f"kernel state: {len(state['snapshots'])} snapshots set beside the model"]
    lines += [f"  unusable snapshot: {why}" for why in state["unusable"]]
    for d in state["disagreements"]:
        lines.append(f"  [{d['severity']}] {fmt_ns(d['ts_ns'])} {d['rule']}: {d['explanation']}")
    if not state["disagreements"]:
        lines.append("  the model and the kernel agree")
    return [line(x) for x in lines]  # device names come from the recording
