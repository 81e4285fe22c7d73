"""`scenarios`: the bundled teaching scenarios, in order, and rebuilding their recordings."""

from __future__ import annotations

import argparse

from ...scenarios import bundled_scenarios, load_scenario

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scenarios", help="list the bundled teaching scenarios (or rebuild their recordings)",
        description="List the teaching scenarios shipped in recordings/scenarios/, in teaching order, with the "
                    "anomalies each one demonstrates. Each has a generated recording beside it in recordings/.",
        epilog="examples:\n  pasid-explorer scenarios\n"
               "  pasid-explorer replay recordings/03-guest-pasid-iommufd.pasidrec\n"
               "  pasid-explorer scenarios --rebuild   (after editing a scenario)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rebuild", action="store_true", help="regenerate every bundled .pasidrec from its .yaml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for s in bundled_scenarios():
        run_ = load_scenario(s.yaml_path)
        if args.rebuild:  # in rows (format 1), which every explorer version reads, as they have always shipped
            run_.write(str(s.recording_path), compress=False)
        expect = ", ".join(run_.scenario.expect) or "no anomaly"
        print(f"{s.name:<32} {s.title}\n{'':<32} shows: {expect}; {s.recording_path.name}")
    return 0
