"""`export`: hand a recording to other tools: JSON Lines, CSV, a Perfetto trace, or a Chrome JSON trace."""

from __future__ import annotations

import argparse
import sys

from ...errors import InputError
from ...export import BINARY, FORMATS, export
from ...export.table import COLUMNS
from ..progress import Progress
from ._common import warn_damage

ORDER = 55
UNITS = {"perfetto": "trace packets", "chrome-json": "trace events"}  # what each format counts as written

DESCRIPTION = f"""\
Write a recording (or a scenario .yaml, simulated in memory) in a format other tools read.

  jsonl     one JSON object per event, every field named: ts_ns, kind, device, pasid, cpu, pid, comm, source,
            then the kind's own fields. For jq, pandas.read_json(lines=True), scripts.
  csv       one row per event with a fixed column set, the same for every recording (so files can be
            stacked): the common fields, one column per field any event kind has, and 'extra' (JSON) for
            fields this version does not know. Lists and dicts are JSON text; an absent field is empty.
            Columns: {", ".join(COLUMNS)}
  perfetto  a Perfetto protobuf trace (.pftrace) for ui.perfetto.dev and Perfetto's trace processor.
            Tracks nest machine -> device -> PASID -> lanes: the PASID allocator's PASIDs show their
            lifetimes (alloc to free); each device's PASIDs show 'attached' (the domains), 'page requests'
            (each outstanding page-request group, request to response; overlapping groups take more lanes)
            and 'events' (every event as an instant, its fields as args, and the model's findings with
            rule, severity, explanation and evidence). An arrow joins the request that opened each group to
            the response that answered it. Counters: live PASIDs and PASID space used, outstanding groups
            per device, events lost so far. Times are the recording's own, on its declared clock. A merged
            recording's host and guests are Perfetto machines, each with its devices and PASIDs.
  parquet   a directory (-o DIR) of three typed tables for DuckDB, Spark, Trino: events.parquet (one
            row per event, a column per field), anomalies.parquet (the model's findings) and
            intervals.parquet (PASID lifetimes, attachments, binds, page-request groups with their times
            and evidence). Every row names its recording, host and kernel, so many recordings' tables stack;
            the schema and its version: docs/parquet-schema.md (and each file's metadata).
  chrome-json
            the older Chrome JSON trace (chrome://tracing, ui.perfetto.dev): one level of tracks, no arrows,
            no clock; a process for the allocator and one per device, a thread per PASID.

'-o -' writes to standard output (a binary trace is refused on a terminal)."""

EPILOG = """\
examples:
  pasid-explorer export capture.pasidrec --to jsonl -o - | jq 'select(.kind == "fault")'
  pasid-explorer export dmesg.pasidrec --to csv -o faults.csv
  pasid-explorer export recordings/06-buggy-driver.pasidrec --to jsonl --anomalies -o - | jq 'select(.rule)'
  pasid-explorer export recordings/04-page-request-groups.pasidrec --to perfetto -o prg.pftrace
      then open https://ui.perfetto.dev and drop prg.pftrace on it
  pasid-explorer export recordings/04-page-request-groups.pasidrec --to chrome-json -o prg.json
  pasid-explorer export host1.pasidrec --to parquet -o fleet/host1
      then: duckdb -c "SELECT kernel, count(*) FROM read_parquet('fleet/*/events.parquet') GROUP BY kernel"
      (docs/parquet-schema.md; the README's Fleets section has a page-request latency query)"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export",
                       help="export a recording as JSON Lines, CSV, a Perfetto or Chrome JSON trace, or Parquet tables",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .pasidrec recording or a scenario .yaml")
    p.add_argument("--to", choices=FORMATS, required=True, help="output format")
    p.add_argument("-o", "--output", required=True,
                   help="file to write ('-' for standard output); for parquet, the directory to write the tables in")
    p.add_argument("--anomalies", action="store_true",
                   help="jsonl, csv: run the model's checks and add each finding as an 'anomaly' event at its "
                        "time (rule, severity, explanation, and evidence: the numbers of the events that prove it, "
                        "not counting anomalies)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output == "-" and args.to in BINARY and sys.stdout.isatty():
        raise InputError("-", "", f"--to {args.to} writes a binary trace: name a file with -o, or pipe it")
    progress = Progress(f"exporting {args.file}")
    damage: list[str] = []
    n = export(args.file, args.to, args.output, progress=progress, damage=damage, anomalies=args.anomalies)
    progress.done()
    warn_damage(args.file, damage)  # the export is still written: say what it lacks
    if args.output != "-":
        print(f"{args.output}: {n:,} {UNITS.get(args.to, 'events')} ({args.to})")
    return 0
