"""`probes`: what a live capture can see on this host, hook by hook, and which event kinds it cannot."""

from __future__ import annotations

import argparse

from explorer.kernel_facts import NOT_HOOKED, facts_for, parse_version
from probes.bpf_stats import describe
from probes.capability import ATTACHED, WILL_ATTACH, coverage
from probes.capture import survey

from ...errors import ExplorerError
from ._common import print_json

ORDER = 70


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "probes", help="report which kernel hooks a live capture can attach here, and what stays invisible",
        description="Check this host for live capture: every tracepoint and kernel function PASID Explorer can "
                    "listen to, and whether it attaches here or why not (missing symbol or tracepoint, blocked "
                    "by kernel lockdown, no kprobes in this kernel, needs root, a format this version does not "
                    "read). Tracepoints work under lockdown; kernel functions need fentry (BPF trampolines) or "
                    "kprobes, which lockdown refuses. From the verdicts follow the event kinds a capture will not "
                    "show (PASID allocation, SVA binds, ...) and the ones it shows only in part (page requests "
                    "handled through iommufd fault queues). As root it compiles and attaches the probes once to "
                    "confirm the report, and measures for --measure seconds what each attached hook costs this host "
                    "(the kernel's BPF run-time statistics, as bpftop reads them: runs, nanoseconds per run, share "
                    "of one CPU), or says why it cannot. Exit status 0 when a capture can run, 1 when it cannot.",
        epilog="examples:\n  sudo pasid-explorer probes\n  sudo pasid-explorer probes --json | jq .invisible_kinds\n"
               "  pasid-explorer probes --no-load        plan only, from tracefs, kallsyms, BTF and lockdown",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-load", action="store_true", help="do not compile and attach to confirm the plan")
    p.add_argument("--measure", type=float, default=1.0, metavar="S",
                   help="seconds to measure the attached probes' own cost on this host's activity (default 1; "
                        "0: do not measure)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.measure < 0:
        raise ExplorerError("--measure must be 0 or more seconds")
    s = survey(load=not args.no_load, measure_s=args.measure)
    costs = describe(s.costs, s.measured_s) if s.costs is not None else None
    f = s.facts
    cov = coverage(s.verdicts)
    facts = facts_for(parse_version(f.kernel))
    runnable = s.problem is None and any(v.status in (ATTACHED, WILL_ATTACH) for v in s.verdicts)
    host = {"kernel": f.kernel, "root": f.root, "tracefs": str(f.tracefs) if f.tracefs else None,
            "lockdown": f.lockdown, "btf": f.btf is not None, "kprobes": f.kprobes,
            "fentry": "works" if f.fentry_error is None else f.fentry_error}
    if args.json:
        print_json({"host": host, "problem": s.problem, "can_capture": runnable,
                    "hooks": [{"hook": v.hook.name, "status": v.status, "method": v.method or None,
                               "reason": v.reason or None, "kinds": list(v.hook.kinds),
                               "kernels": v.hook.fact.versions} for v in s.verdicts],
                    "kernel_facts": [{"key": k.key, "versions": str(k.span), "text": k.text, "hooks": list(k.hooks),
                                      "blind": k.blind} for k in facts],
                    "not_hooked": [{"hook": n.name, "versions": str(n.span), "why": n.why, "source": n.source}
                                   for n in NOT_HOOKED],
                    "bpf_costs": None if costs is None else {
                        "seconds": round(s.measured_s, 3),
                        "hooks": [{"hook": h, "runs": n, "ns_per_run": None if ns is None else round(ns, 1),
                                   "cpu_share": round(cpu, 6)} for h, n, ns, cpu in costs]},
                    "bpf_costs_problem": s.stats_problem,
                    "visible_kinds": list(cov.visible), "partial_kinds": cov.partial,
                    "invisible_kinds": cov.invisible})
        return 0 if runnable else 1
    print(f"Linux {f.kernel}: lockdown {f.lockdown or 'unknown'}, BTF {'yes' if f.btf else 'no'}, "
          f"kprobes {'yes' if f.kprobes else 'no'}, fentry {host['fentry']}, "
          f"tracefs {host['tracefs'] or ('not mounted' if f.root else 'not readable without root')}")
    if s.problem:
        print(f"capture cannot start: {s.problem}")
    print()
    width = max(len(v.hook.name) for v in s.verdicts)
    print(f"{'hook':<{width}}  {'kernels':<22} {'status':<20} {'via':<10} why / what it shows")
    for v in s.verdicts:
        why = v.reason or v.hook.doc
        print(f"{v.hook.name:<{width}}  {v.hook.fact.versions:<22} {v.status:<20} {v.method or '-':<10} {why}")
    print()
    if costs is not None:
        print(f"the probes' own cost over {s.measured_s:.1f} s of this host's activity (BPF run-time statistics):")
        for hook, runs, ns, cpu in costs:
            per = "-" if ns is None else f"{ns:,.0f} ns/run"
            print(f"  {hook:<{width}}  {runs:>12,} runs  {per:>14}  {cpu:8.3%} of a CPU")
        print()
    elif s.stats_problem:
        print(f"the probes' own cost is not shown: {s.stats_problem}")
        print()
    print(f"what Linux {f.kernel} does, and which hooks see it (kernel facts table):")
    for k in facts:
        seen = ("BLIND SPOT: no hook sees it; findings it could explain are uncertain" if k.blind
                else ", ".join(k.hooks) or "a rule the model applies")
        print(f"  {k.key} ({k.span}): {k.text} [{seen}]")
    print()
    print("looked at and not probed, because a probe there would mislead:")
    for n in NOT_HOOKED:
        print(f"  {n.name} ({n.span}): {n.why} [{n.source}]")
    print()
    print(f"visible event kinds: {', '.join(cov.visible)}")
    for kind, why in cov.partial.items():
        print(f"partly visible: {kind}: {why}")
    for kind, why in cov.invisible.items():
        print(f"invisible: {kind}: {why}")
    return 0 if runnable else 1
