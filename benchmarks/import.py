"""How fast `pasid-explorer import` reads a big kernel log, against a bare grep-style scan of the same file.

Builds a synthetic dmesg of --lines lines (not timed; each size in turn, so that growth shows) from the test
fixtures' real lines: the IOMMU records of the dmesg-style cases (faults, dumps, rate-limit summaries, the lines
around them), re-stamped with increasing times, between real non-IOMMU kernel lines from the same reports. --fault-
share sets the fraction of lines that belong to IOMMU records (real logs are mostly other drivers' chatter: the
kernel rate-limits fault printing to about ten per five seconds per source).

Then, in one run, interleaved and best of --repeat:
  (a) the baseline: read the file line by line and test each line with the importer's own keyword pattern
      (what `grep -c` does, in Python); nothing is decoded or kept;
  (b) the import: detection, parsing, decoding, writing the recording - in a child process, whose peak RSS
      is reported. The import reads and scans the next block on a second thread while it parses this one, and a
      big log's ranges are parsed by worker processes (one per core, explorer/importers/split.py), so its CPU
      time (every thread of every process, import_cpu_s) is reported beside the baseline's (baseline_cpu_s).
Also reported: a block scan (the keyword pattern run over whole blocks, the importer's own first stage), a
stricter reference than (a): the import does far more than find lines, and that scan is the floor of any import.
The last line is one JSON object with lines_per_s, baseline_lines_per_s, ratio (import / baseline; target >= 0.8),
ratio_vs_block_scan, import_cpu_s, baseline_cpu_s and cpu_ratio (baseline / import, in CPU time: what a loaded
machine, with no core to spare, would give) and peak_rss_mb (the import's peak resident set, VmHWM, plus each worker
process's, counted as the largest worker's peak each: flat across sizes when memory is bounded; pages the workers
share with the importing process count in each), at the largest size, with `sizes` listing the figures at every
size, and `workers`, the number of worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sizes import parser, run  # noqa: E402

from explorer.allocator import return_big_buffers  # noqa: E402
from explorer.importers import import_log, split  # noqa: E402
from explorer.importers.kernel_log import KEYWORDS  # noqa: E402

FIXTURES = ROOT / "tests" / "importers" / "fixtures"
STAMP = re.compile(r"^(\s*(?:kernel: )?)\[\s*\d+\.\d+\]")
BLOCK = 8 << 20


def pools() -> tuple[list[list[str]], list[str]]:
    """IOMMU records (each dmesg-style case's lines from its first IOMMU line to its last, so multi-line
    records stay whole) and the plain kernel lines around them."""
    records, noise = [], []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            if case.get("format") or case.get("clock"):
                continue
            lines = [ln for ln in case["log"].splitlines() if STAMP.match(ln)]
            hits = [i for i, ln in enumerate(lines) if KEYWORDS.search(ln.encode())]
            if hits:
                records.append(lines[hits[0]:hits[-1] + 1])
                noise += lines[:hits[0]] + lines[hits[-1] + 1:]
    return records, noise


def generate(path: Path, n_lines: int, share: float, seed: int) -> tuple[int, int]:
    """Write the synthetic log of about `n_lines` lines (a record is not cut); returns (lines, IOMMU record lines)."""
    records, noise = pools()
    rng = random.Random(seed)
    t_us = 0
    lines = iommu = 0
    size = 0
    buf: list[str] = []
    with open(path, "w") as f:
        while lines < n_lines:
            if rng.random() < share / 4:  # records average about four lines
                chunk = rng.choice(records)
                iommu += sum(1 for ln in chunk if KEYWORDS.search(ln.encode()))
            else:
                chunk = [rng.choice(noise)]
            for ln in chunk:
                t_us += rng.randint(1, 400)
                stamp = f"[{t_us // 1_000_000:5d}.{t_us % 1_000_000:06d}]"
                text = STAMP.sub(lambda m, stamp=stamp: m[1] + stamp, ln, count=1)
                buf.append(text)
                size += len(text) + 1
                lines += 1
            if len(buf) >= 10_000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    return lines, iommu


def grep_scan(path: Path) -> tuple[float, float, int, int]:
    """(a) every line read and tested with the keyword pattern; returns (seconds, CPU seconds, lines, matching
    lines)."""
    search = KEYWORDS.search
    t0, c0 = time.perf_counter(), time.process_time()
    n = hits = 0
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            n += 1
            if search(line):
                hits += 1
    return time.perf_counter() - t0, time.process_time() - c0, n, hits


def block_scan(path: Path) -> float:
    """The keyword pattern over whole blocks: the cheapest way to find the candidate lines at all."""
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            for _ in KEYWORDS.finditer(block):
                pass
            block.count(b"\n")
    return time.perf_counter() - t0


def _child(path: str, out: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    return_big_buffers()  # as every command does (cli/main.py)
    t0, c0 = time.perf_counter(), time.process_time()  # the process's CPU: every thread's
    stats = import_log(path, out)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the import's worker processes, all ended by now
    n_workers = split.workers() if workers.ru_maxrss else 0
    with open("/proc/self/status") as f:  # the import's own peak (getrusage's would count the parent's)
        peak_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read())[1])  # type: ignore[index]
    q.put((elapsed, stats.lines, stats.events, stats.parsed, stats.unknown, peak_kb + n_workers * workers.ru_maxrss,
           cpu + workers.ru_utime + workers.ru_stime, n_workers))


def timed_import(path: Path, out: Path) -> tuple[float, int, int, int, int, int, float, int]:
    ctx = mp.get_context("spawn")  # a fresh interpreter: its memory is the import's alone
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(path), str(out), q))
    p.start()
    result = q.get()
    p.join()
    if p.exitcode:
        raise SystemExit(f"import failed (exit {p.exitcode})")
    return result


def measure(n_lines: int, share: float, seed: int, repeat: int, say: Callable[..., None]) -> dict[str, Any]:
    """Every figure at one size."""
    with tempfile.TemporaryDirectory() as tmp:
        log, out = Path(tmp) / "big.log", Path(tmp) / "big.pasidrec"
        t0 = time.perf_counter()
        lines, iommu = generate(log, n_lines, share, seed)
        size = log.stat().st_size
        say(f"generated {lines:,} lines ({iommu:,} in IOMMU records), {size / 2**20:.0f} MiB, "
            f"in {time.perf_counter() - t0:.1f} s")
        best_grep = best_import = best_block = best_grep_cpu = best_import_cpu = float("inf")
        result = None
        for r in range(repeat):
            g, g_cpu, n, hits = grep_scan(log)
            best_grep, best_grep_cpu = min(best_grep, g), min(best_grep_cpu, g_cpu)
            best_block = min(best_block, block_scan(log))
            result = timed_import(log, out)
            best_import, best_import_cpu = min(best_import, result[0]), min(best_import_cpu, result[6])
            say(f"run {r + 1}: grep-style scan {g:.2f} s ({hits:,} keyword lines), import {result[0]:.2f} s "
                f"({result[2]:,} events)")
        assert result is not None
        _, n_lines_read, events, parsed, unknown, peak_kb, _, workers = result
        assert n_lines_read == lines == n, (n_lines_read, lines, n)
        out_size = out.stat().st_size
    report = {
        "benchmark": "import", "mb": round(size / 2**20, 1), "lines": lines, "iommu_lines": iommu,
        "fault_share": share, "events": events, "parsed": parsed, "unknown": unknown,
        "import_s": round(best_import, 3), "lines_per_s": round(lines / best_import),
        "mb_per_s": round(size / 2**20 / best_import, 1),
        "baseline": "for line in file: keyword_regex.search(line)",
        "baseline_s": round(best_grep, 3), "baseline_lines_per_s": round(lines / best_grep),
        "ratio": round(best_grep / best_import, 3),
        "block_scan_lines_per_s": round(lines / best_block), "ratio_vs_block_scan": round(best_block / best_import, 3),
        "import_cpu_s": round(best_import_cpu, 3), "baseline_cpu_s": round(best_grep_cpu, 3),
        "cpu_ratio": round(best_grep_cpu / best_import_cpu, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1), "workers": workers, "recording_mb": round(out_size / 2**20, 2),
        "ns_per_line": round(best_import / lines * 1e9, 1), "cpus": os.cpu_count(),
    }
    say(f"import: {report['lines_per_s']:,} lines/s ({report['mb_per_s']} MiB/s), grep-style scan: "
        f"{report['baseline_lines_per_s']:,} lines/s, ratio {report['ratio']} (target >= 0.8), block scan "
        f"{report['block_scan_lines_per_s']:,} lines/s (ratio {report['ratio_vs_block_scan']}); CPU "
        f"{report['import_cpu_s']} s against {report['baseline_cpu_s']} s (ratio {report['cpu_ratio']}); "
        f"peak RSS {report['peak_rss_mb']} MiB")
    return report


def main() -> int:
    ap = parser(__doc__, "lines", "log sizes in lines")
    ap.add_argument("--fault-share", type=float, default=0.1,
                    help="fraction of lines in IOMMU records (default 0.1)")
    args = ap.parse_args()
    return run(args, args.lines, "lines", lambda n, say: measure(n, args.fault_share, args.seed, args.repeat, say),
               lambda r: f"{r['lines']:,} lines: {r['ns_per_line']} ns/line, {r['peak_rss_mb']} MiB peak")


if __name__ == "__main__":
    sys.exit(main())
