"""Hostile inputs against every reading command: how many cases were tried, how many crashed, hung or injected
control characters, the peak memory against each input's size, and how many bytes `check` prints per finding.

Each case is a file a stranger could hand over (issue 16's audit): recordings with valid CRCs around rows of the
wrong types, footers that lie (a chunk listed thousands of times, offsets past the end), more kinds than a byte,
text carrying escape sequences; valid but huge states (many live PASIDs, unanswered page requests, tiny chunks, a
fault flood); and crafted log lines for `import`. Every command runs in a child process with a time limit:

    crash      an exit status other than 0, 1 or 2, or a traceback on stderr
    hang       still running after --timeout seconds
    injection  a raw ESC, BEL or CR in stdout, stderr or a written CSV
    peak RSS   the command's own maximum resident set (VmHWM, read as it exits); target below 4x the input's
               size + --floor-mb. Not wait4's ru_maxrss: Linux counts in it the resident set of the process the
               child was forked from, so once this script had read a big export's output, every later command
               (the tiny crafted logs' `import` came last) seemed to take 600-800 MiB.

--scale shrinks or grows the big cases (1.0: a million live PASIDs, a million faults). The memory each distinct
item costs is `check`'s peak on the case less its peak on a one-chunk recording, over the items: per live PASID,
per open page-request group, per five-event chunk (issue 16's 100-200 bytes per PASID or group). The last line is
one JSON object: cases, runs, crashes, hangs, injections, over_budget, peak_rss_mb, worst_rss_ratio,
check_bytes_per_finding, and bytes_per_item ({live-pasids, open-groups, tiny-chunks}). `--case live-pasids
--command check` runs those alone (and the one-chunk baseline), to measure one case in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import GOOD, HOSTILE_VALUES, write_crafted, write_injecting  # noqa: E402

from explorer.recording import Recording, RecordingWriter  # noqa: E402

COMMANDS = [["info"], ["check"], ["check", "--json"], ["export", "--to", "csv", "-o", "{out}.csv"],
            ["export", "--to", "jsonl", "-o", "-"]]
RAW = (b"\x1b", b"\x07", b"\r")


def _rows(n: int, make: Callable[[int], list[Any]]) -> list[list[Any]]:
    return [make(i) for i in range(n)]


def _write_rows(path: Path, rows: Any, chunk: int = 4096) -> Path:
    """A valid recording of `rows` (with columns, as a capture writes it)."""
    from hostile_files import header

    with RecordingWriter(path, header(), chunk_events=chunk) as w:
        for r in rows:
            w.append_row(r)
    return path


BIG_CASES = ("live-pasids", "open-groups", "tiny-chunks", "fault-flood")  # built only when run: a million events


def items(scale: float) -> dict[str, int]:
    """The distinct items in each case that measures memory per item: PASIDs, groups, chunks."""
    big = max(int(1_000_000 * scale), 1000)
    return {"live-pasids": big, "open-groups": big, "tiny-chunks": max(big // 5, 1000) // 5}


def recordings(d: Path, scale: float, wanted: Callable[[str], bool] = lambda name: True) -> dict[str, Path]:
    """Every hostile recording, by name (of the big ones, only those `wanted`)."""
    big = max(int(1_000_000 * scale), 1000)
    out: dict[str, Path] = {}
    for place in ("ts_ns", "kind", "device", "pasid", "comm", "fields", "addr", "prg", "code", "args", "count"):
        for k, v in enumerate(HOSTILE_VALUES):
            row = list(GOOD[3])
            if place in ("ts_ns", "kind", "device", "pasid", "comm", "fields"):
                row[("ts_ns", "kind", "device", "pasid", "cpu", "pid", "comm", "source", "fields").index(place)] = v
            else:
                row[8] = {**row[8], place: v}
            out[f"type-{place}-{k}"] = write_crafted(d / f"type-{place}-{k}.pasidrec", [GOOD[:3] + [row] + GOOD[4:]])
    one = write_crafted(d / "one.pasidrec", [GOOD])
    out["one"] = one  # (the baseline of memory per item)
    with Recording(one) as rec:
        c = rec.chunks[0]
        entry = [c.offset, c.length, c.t0, c.t1, c.n]
    for name, index in (("footer-dup-5000", [entry] * 5000), ("footer-dup-200k", [entry] * 200_000),
                        ("footer-offset-max", [[(1 << 64) - 1, 10, 0, 0, 1]]),
                        ("footer-past-end", [[1 << 40, 10, 0, 0, 1]]), ("footer-float", [[40.5, 10.0, 0, 0, 1]]),
                        ("footer-string", "chunks")):
        out[name] = write_crafted(d / f"{name}.pasidrec", [GOOD], index=index)  # type: ignore[arg-type]
    out["kinds-600"] = write_crafted(d / "kinds.pasidrec", [_rows(600, lambda i: [1000 + i, f"k{i}", None, None,
                                                                                None, None, None, "t", {}])])
    out["inject"] = write_injecting(d / "inject.pasidrec")
    dev = GOOD[0][2]
    big_cases = {
        "live-pasids": lambda: _write_rows(d / "pasids.pasidrec", (
            [i, "pasid_alloc", dev, i + 1, 0, 1, "a", "t", {"path": "iommufd"}] for i in range(big))),
        "open-groups": lambda: _write_rows(d / "groups.pasidrec", (
            [i, "page_request", dev, (i >> 9) + 1, 0, 1, "a", "t", {"prg": i & 511, "addr": 4096}]
            for i in range(big))),
        "tiny-chunks": lambda: _write_rows(d / "tiny.pasidrec", (
            [i, "pasid_alloc" if i % 2 == 0 else "pasid_free", dev, 1, 0, 1, "a", "t", {"path": "iommufd"}]
            for i in range(max(big // 5, 1000))), chunk=5),
        "fault-flood": lambda: _write_rows(d / "faults.pasidrec", (
            [i, "pasid_free", None, 1 + i % 1000, None, None, None, "t", {}] for i in range(big))),
    }
    out.update((name, write()) for name, write in big_cases.items() if wanted(name))
    return out


def logs(d: Path) -> dict[str, Path]:
    """Crafted log lines for `import`."""
    trace = "           <...>-1234  [001] ....  {sec}.000000: {event}: {msg}\n"
    cases = {
        "nested-json": trace.format(sec=1, event="tracing_mark_write",
                                    msg="pasid_explorer: " + '{"a":' * 50_000 + "1" + "}" * 50_000),
        "device-list": trace.format(sec=1, event="tracing_mark_write",
                                    msg='pasid_explorer: {"kind": "fault", "device": [1]}'),
        "digits": trace.format(sec="9" * 5000, event="io_page_fault", msg="IOMMU:x 0000:05:00.0 iova=0x1 flags=0x0"),
        "long-first-line": "x" * 70_000 + "\n[    1.000000] DMAR: [DMA Read NO_PASID] Request device [00:02.0] "
                           "fault addr 0x1000 [fault reason 0x06] PTE Read access is not set\n",
        "escapes": "[    1.000000] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 "
                   "[fault reason 0x06] \x1b]0;pwned\x07\x1b[2J\r\n" * 3,
    }
    out = {}
    for name, text in cases.items():
        p = d / f"{name}.log"
        p.write_text(text)
        out[f"log-{name}"] = p
    return out


# The command as `python -m explorer.cli.main` runs it, writing its own peak resident set (kB) to $PEAK_FILE as it
# exits, however it exits: at exec, the new program's memory counters start afresh
_CHILD = """import atexit, os, re, sys
def _peak():
    with open('/proc/self/status') as f, open(os.environ['PEAK_FILE'], 'w') as out:
        out.write(re.search(r'VmHWM:\\s+(\\d+)', f.read())[1])
atexit.register(_peak)
from explorer.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run(argv: list[str], timeout: float) -> tuple[str, int, bytes, bytes, float]:
    """One command in a child: ('ok'|'crash'|'hang', status, stdout, stderr, its peak RSS in MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        p = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], stdout=out, stderr=err, cwd=ROOT,
                             start_new_session=True, env={**os.environ, "PEAK_FILE": peak.name})
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                p.returncode = os.waitstatus_to_exitcode(os.wait4(p.pid, 0)[1])  # reaped here: Popen is told
                out.seek(0), err.seek(0)
                return "hang", -9, out.read(), err.read(), 0.0  # (killed: its peak is not known)
            time.sleep(0.01)
        code = p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 (for its usage): Popen is told
        out.seek(0), err.seek(0)
        o, e = out.read(), err.read()
        kb = peak.read().strip()
    verdict = "crash" if code not in (0, 1, 2) or b"Traceback" in e else "ok"
    # a command killed by a signal writes nothing: wait4's figure, which may overstate it, stands in
    return verdict, code, o, e, (int(kb) if kb.isdigit() else usage.ru_maxrss) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="size of the big cases (1.0: a million events)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a command counts as hung")
    ap.add_argument("--floor-mb", type=float, default=200.0, help="the memory budget's fixed part")
    ap.add_argument("--case", action="append", default=[], metavar="NAME",
                    help="run only this case (repeatable; 'one', the baseline of memory per item, always runs)")
    ap.add_argument("--command", action="append", default=[], metavar="WORD",
                    help="run only the commands that start with this word (repeatable: info, check, export, import)")
    args = ap.parse_args()
    totals = {"cases": 0, "runs": 0, "crashes": 0, "hangs": 0, "injections": 0, "over_budget": 0}
    peak, worst_ratio, per_finding = 0.0, 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.monotonic()
        cases = recordings(d, args.scale, lambda name: not args.case or name in args.case)
        print(f"built {len(cases)} recordings in {time.monotonic() - t0:.1f} s", flush=True)
        jobs = [(name, path, [c.replace("{out}", str(d / name)) for c in cmd]) for name, path in cases.items()
                for cmd in COMMANDS]
        hostile_logs = logs(d)
        known = {*cases, *hostile_logs, *BIG_CASES}
        unknown = sorted(set(args.case) - known)
        if unknown:
            ap.error(f"no case named {', '.join(unknown)} (the cases: {', '.join(sorted(known))})")
        jobs += [(name, path, ["import", "{path}", "-o", str(d / f"{name}.pasidrec")])
                 for name, path in hostile_logs.items()]
        jobs = [j for j in jobs if (not args.case or j[0] in (*args.case, "one"))
                and (not args.command or j[2][0] in args.command)]
        seen: set[str] = set()
        check_bytes: dict[str, int] = {}  # bytes `check` printed, by case
        check_rss: dict[str, float] = {}  # `check`'s peak, by case (MiB)
        for name, path, cmd in jobs:
            argv = [cmd[0], str(path), *cmd[1:]] if cmd[1:2] != ["{path}"] else [cmd[0], str(path), *cmd[2:]]
            verdict, code, out, err, rss = run(argv, args.timeout)
            totals["runs"] += 1
            if name not in seen:
                seen.add(name)
                totals["cases"] += 1
            written = [out, err] + ([Path(argv[-1]).read_bytes()] if argv[-1].endswith(".csv") and
                                    Path(argv[-1]).exists() else [])
            injected = any(c in w for w in written for c in RAW)
            size_mb = path.stat().st_size / 2**20
            budget = 4 * size_mb + args.floor_mb
            totals["crashes"] += verdict == "crash"
            totals["hangs"] += verdict == "hang"
            totals["injections"] += injected
            totals["over_budget"] += rss > budget
            peak = max(peak, rss)
            worst_ratio = max(worst_ratio, (rss - args.floor_mb) / max(size_mb, 1e-6))
            if cmd == ["check"]:
                check_bytes[name] = len(out)
                check_rss[name] = rss
            if cmd[:2] == ["check", "--json"] and verdict == "ok" and name in check_bytes:
                found = sum(a.get("repeats", 0) + 1 for a in json.loads(out).get("anomalies", []))
                if found:
                    per_finding.append(check_bytes[name] / found)
            if verdict != "ok" or injected or rss > budget:
                print(f"{verdict.upper()}{' INJECTION' if injected else ''} {name}: {' '.join(cmd)} -> {code}, "
                      f"{rss:.0f} MiB (budget {budget:.0f}); {err.decode(errors='replace')[-300:]!r}", flush=True)
            if name in BIG_CASES and cmd[0] == "check":
                print(f"  {name} ({size_mb:.1f} MiB): {' '.join(cmd)}: {rss:.0f} MiB peak", flush=True)
    per_item = {name: round((check_rss[name] - check_rss["one"]) * 2**20 / n)
                for name, n in items(args.scale).items() if name in check_rss and "one" in check_rss}
    result = {**totals, "peak_rss_mb": round(peak, 1), "worst_rss_ratio": round(worst_ratio, 2),
              "check_bytes_per_finding": round(min(per_finding) if per_finding else 0, 2),
              "check_bytes_per_finding_max": round(max(per_finding) if per_finding else 0, 1), "scale": args.scale,
              "bytes_per_item": per_item}
    print(f"{totals['cases']} cases, {totals['runs']} runs: {totals['crashes']} crashes, {totals['hangs']} hangs, "
          f"{totals['injections']} injections, {totals['over_budget']} over the memory budget; peak RSS "
          f"{peak:.0f} MiB; check prints {result['check_bytes_per_finding']}-"
          f"{result['check_bytes_per_finding_max']} bytes per finding")
    print("memory per item (check's peak less a one-chunk recording's): " +
          ", ".join(f"{name} {b} B" for name, b in per_item.items()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
