"""`export`: hand a recording to other tools: JSON Lines, CSV, or a Perfetto-viewable trace."""

from __future__ import annotations

import argparse
import sys

from ...export import FORMATS, export
from ...export.table import COLUMNS
from ..progress import Progress
from ._common import warn_damage

ORDER = 55

DESCRIPTION = f"""\
Write a recording (or a scenario .yaml, simulated in memory) in a format other tools read.

  jsonl     one JSON object per event, every field named: ts_ns, kind, device, pasid, cpu, pid, comm, source,
            then the kind's own fields. For jq, pandas.read_json(lines=True), scripts.
  csv       one row per event with a fixed column set, the same for every recording (so files can be
            stacked): the common fields, one column per field any event kind has, and 'extra' (JSON) for
            fields this version does not know. Lists and dicts are JSON text; an absent field is empty.
            Columns: {", ".join(COLUMNS)}
  perfetto  a Chrome JSON trace that ui.perfetto.dev (and chrome://tracing) opens: a process for the PASID
            allocator with a track per PASID showing its lifetimes (alloc to free), a process per device
            with a track per PASID showing when it was attached and the outstanding page-request groups
            (request to response), and instants for faults, anomalies (the simulator's checks) and markers.

'-o -' writes to standard output."""

EPILOG = """\
examples:
  pasid-explorer export capture.pasidrec --to jsonl -o - | jq 'select(.kind == "fault")'
  pasid-explorer export dmesg.pasidrec --to csv -o faults.csv
  pasid-explorer export recordings/06-buggy-driver.pasidrec --to jsonl --anomalies -o - | jq 'select(.rule)'
  pasid-explorer export recordings/04-page-request-groups.pasidrec --to perfetto -o prg.json
      then open https://ui.perfetto.dev and drop prg.json on it"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export a recording as JSON Lines, CSV or a Perfetto trace",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .pasidrec recording or a scenario .yaml")
    p.add_argument("--to", choices=FORMATS, required=True, help="output format")
    p.add_argument("-o", "--output", required=True, help="file to write ('-' for standard output)")
    p.add_argument("--anomalies", action="store_true",
                   help="jsonl, csv: run the model's checks and add each finding as an 'anomaly' event at its "
                        "time (rule, severity, explanation, and evidence: the numbers of the events that prove it, "
                        "not counting anomalies)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    progress = Progress(f"exporting {args.file}", stream=sys.stderr)
    damage: list[str] = []
    n = export(args.file, args.to, args.output, progress=progress, damage=damage, anomalies=args.anomalies)
    progress.done()
    warn_damage(args.file, damage)  # the export is still written: say what it lacks
    if args.output != "-":
        print(f"{args.output}: {n:,} {'trace events' if args.to == 'perfetto' else 'events'} ({args.to})")
    return 0
