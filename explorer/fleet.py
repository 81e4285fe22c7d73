"""`check` over many recordings: one row of findings per recording, and a summary per host and kernel.

Each recording is checked on its own (`check_one`, run in a worker process by the CLI) and reduced to a small
row, so a fleet of thousands costs one recording's memory per worker. A recording that cannot be read is a row
with its one-line error, never the end of the run.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import INTERNAL_ERROR, ExplorerError, InputError
from .loading import open_index
from .simulator import Severity
from .summary import check_report
from .text import line

SUFFIXES = (".pasidrec",)  # what a directory is searched for (a scenario .yaml is named, not found)
SEVERITIES = tuple(str(s) for s in Severity)


def recordings_in(paths: Iterable[str]) -> list[str]:
    """The recordings named: files as given, directories searched recursively (sorted); an empty directory is
    an error, as a missing file is."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*") if f.suffix in SUFFIXES and f.is_file())
            if not found:
                raise InputError(p, "", f"no {' or '.join(SUFFIXES)} recordings in this directory")
            out += found
        else:
            out.append(p)
    return out


def check_one(path: str, stale_ns: int | None = None) -> dict[str, Any]:
    """One recording's row: who and what it is, its findings by severity and rule, and its status (0 clean,
    1 findings, 2 unreadable, 70 a bug of ours), with the one-line error when it could not be checked."""
    row: dict[str, Any] = {"file": path, "host": None, "kernel": None, "events": None,
                           **dict.fromkeys(SEVERITIES, 0), "rules": {}, "disagreements": 0, "damage": 0,
                           "status": 0, "read_error": None}
    try:
        # (what the row takes of the index after stays in memory; it seeks only to set kernel snapshots beside it)
        with open_index(path, stale_ns=stale_ns, history=None) as idx:
            report = check_report(path, idx)
    except ExplorerError as e:
        return row | {"status": e.exit_status, "read_error": line(str(e))}
    except Exception as e:  # a bug of ours: this row says so, the others go on
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return row | {"status": INTERNAL_ERROR, "read_error": line(f"internal error: {type(e).__name__}: {e} "
                                                              f"(at {Path(frame.filename).name}:{frame.lineno})")}
    host = idx.header.host
    rules: Counter[str] = Counter()
    for a in report["anomalies"]:
        row[a["severity"]] += 1 + a["repeats"]
        rules[a["kind"]] += 1 + a["repeats"]
    disagreements = len((report.get("kernel_state") or {}).get("disagreements", []))
    unreadable = idx.n == 0 and bool(idx.damage)
    return row | {"host": host.get("hostname"), "kernel": host.get("kernel"), "events": idx.n, "rules": dict(rules),
                  "disagreements": disagreements, "damage": len(idx.damage),
                  "status": 2 if unreadable else 1 if rules or disagreements else 0,
                  "read_error": "unreadable: " + line(idx.damage[0]) if unreadable else None}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings per (host, kernel): recordings, events, findings by severity, unreadable recordings, and the rules
    found most, in order of host and kernel."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["host"] or "?", r["kernel"] or "?")
        g = groups.setdefault(key, {"host": key[0], "kernel": key[1], "recordings": 0, "events": 0,
                                    **dict.fromkeys(SEVERITIES, 0), "disagreements": 0, "unreadable": 0,
                                    "rules": Counter()})
        g["recordings"] += 1
        g["events"] += r["events"] or 0
        for s in SEVERITIES:
            g[s] += r[s]
        g["disagreements"] += r["disagreements"]
        g["unreadable"] += r["status"] not in (0, 1)
        g["rules"].update(r["rules"])
    return [g | {"rules": dict(g["rules"].most_common())} for _, g in sorted(groups.items())]


def fleet_status(rows: list[dict[str, Any]]) -> int:
    """The run's exit status: the worst of its rows (a bug of ours, then unreadable input, then findings)."""
    statuses = {r["status"] for r in rows}
    return next((s for s in (INTERNAL_ERROR, 2, 1) if s in statuses), 0)


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """Plain aligned columns, numbers to the right; every cell made safe for a terminal."""
    cells = [[line(f"{c:,}" if isinstance(c, int) else "-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int) or r[i] is None for r in rows) for i in range(len(headers))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric, strict=True)).rstrip()

    return [fmt(headers), *(fmt(r) for r in cells)]


def fleet_text(rows: list[dict[str, Any]]) -> list[str]:
    """The per-recording table, then the summary per host and kernel."""
    def rules_of(d: dict[str, int]) -> str:
        top = list(d.items())
        return ", ".join(f"{k} {n:,}" for k, n in top[:3]) + (f" (+{len(top) - 3} more)" if len(top) > 3 else "")

    out = table(["recording", "host", "kernel", "events", *SEVERITIES, "status"],
                [[r["file"], r["host"], r["kernel"], r["events"], *(r[s] for s in SEVERITIES),
                  r["read_error"] or ("findings: " + rules_of(dict(Counter(r["rules"]).most_common())) if r["rules"]
                                 else "kernel state disagrees" if r["disagreements"] else "clean")]
                 for r in rows])
    groups = summary(rows)
    out += ["", f"summary: {len(rows):,} recordings, by host and kernel"]
    out += table(["host", "kernel", "recordings", "events", *SEVERITIES, "unreadable", "most found"],
                 [[g["host"], g["kernel"], g["recordings"], g["events"], *(g[s] for s in SEVERITIES), g["unreadable"],
                   rules_of(g["rules"]) or "-"] for g in groups])
    return out
