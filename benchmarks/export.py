"""How fast `pasid-explorer export` writes each format, and how much memory it takes, on a big recording.

Generates a seeded recording of --events events (not timed; the same generator as `pasid-explorer generate`),
then runs `pasid-explorer export REC --to FORMAT` once per format, each in its own child process (the CLI as a
user runs it), and reports per format: wall time, events per second, peak RSS (the child's maximum resident set,
from wait4) and the output's size. As a same-run baseline it first runs `pasid-explorer info` on the recording
(opening it, indexing it and running the model, which the trace and Parquet formats need before they write a
byte), so a format's cost beyond reading its input shows against it. The last line is one JSON object.

    .venv/bin/python benchmarks/export.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.workload import write_workload  # noqa: E402

FORMATS = ("jsonl", "csv", "chrome-json", "perfetto", "parquet")


def run(argv: list[str]) -> tuple[float, float, float]:
    """One CLI command in a child: (wall seconds, CPU seconds, peak RSS in MiB); a failure ends the benchmark.
    CPU time is the figure to compare on a machine other work shares."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "explorer.cli.main", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def figures(events: int, wall: float, cpu: float, rss: float) -> dict[str, Any]:
    return {"s": round(wall, 2), "cpu_s": round(cpu, 2), "events_per_s": round(events / wall),
            "events_per_cpu_s": round(events / max(cpu, 1e-9)), "peak_rss_mb": round(rss)}


def line_of(events: int, wall: float, cpu: float, rss: float) -> str:
    return (f"{wall:7.2f} s ({cpu:6.2f} s CPU)  {events / wall:>10,.0f} events/s  {events / max(cpu, 1e-9):>10,.0f} "
            f"per CPU s  peak RSS {rss:6,.0f} MiB")


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, of: " + ", ".join(FORMATS))
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    d = Path(tempfile.mkdtemp(prefix="pasid-export-bench-"))
    try:
        rec = d / "big.pasidrec"
        print(f"generating {args.events:,} events (seed {args.seed})...", flush=True)
        write_workload(str(rec), args.events, args.seed)
        print(f"recording: {size_of(rec) / 2**20:,.1f} MiB", flush=True)
        wall, cpu, rss = run(["info", str(rec)])
        results: dict[str, Any] = {"baseline_info": figures(args.events, wall, cpu, rss)}
        print(f"{'info (read + model)':<22} {line_of(args.events, wall, cpu, rss)}", flush=True)
        for fmt in formats:
            out = d / f"out.{fmt}"
            wall, cpu, rss = run(["export", str(rec), "--to", fmt, "-o", str(out)])
            size = size_of(out)
            results[fmt] = figures(args.events, wall, cpu, rss) | {"output_mb": round(size / 2**20, 1)}
            print(f"{'export ' + fmt:<22} {line_of(args.events, wall, cpu, rss)}  output {size / 2**20:8,.1f} MiB",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps({"benchmark": "export", "events": args.events, "cpus": os.cpu_count(), **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
