"""Exporters: hand a recording to the tools people already use.

    jsonl     one JSON object per event, every field named           (jq, pandas.read_json(lines=True))
    csv       a fixed column set, one column per event field         (spreadsheets, pandas.read_csv)
    perfetto  a Chrome JSON trace with a track per device and PASID  (ui.perfetto.dev, chrome://tracing)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import InputError
from ..loading import open_index
from ..outputs import atomic_output
from .jsonl import write_jsonl
from .perfetto import write_perfetto
from .rows import open_rows
from .table import write_csv

FORMATS = ("jsonl", "csv", "perfetto")
Tick = Callable[[int, int], None]


def export(path: str, to: str, out: str, progress: Tick | None = None, damage: list[str] | None = None,
           anomalies: bool = False) -> int:
    """Write recording (or scenario) `path` as `to` into `out` ('-' for stdout); returns the items written.
    What the input lost (unreadable chunks, malformed events) is appended to `damage`. `anomalies` adds the
    model's findings as `anomaly` events (perfetto always has them)."""
    if to not in FORMATS:
        raise InputError(path, "", f"unknown export format {to!r} (known: {', '.join(FORMATS)})")
    found: list[str] = [] if damage is None else damage
    if out == "-":
        return _write(path, to, sys.stdout, progress, found, anomalies)
    with atomic_output(out) as f:
        return _write(path, to, f, progress, found, anomalies)


def _write(path: str, to: str, f, progress: Tick | None, damage: list[str],  # type: ignore[no-untyped-def]
           anomalies: bool) -> int:
    if to == "perfetto":
        idx = open_index(path, progress=progress)
        total = idx.n
        n = write_perfetto(idx, f, None if progress is None else lambda n: progress(n, total))
        damage.extend(idx.damage)
        return n
    with open_rows(path, anomalies) as (_, rows, total, found):
        tick = None if progress is None else (lambda n: progress(n, total))
        n = (write_jsonl if to == "jsonl" else write_csv)(rows, f, tick)
    damage.extend(found)
    return n

__all__ = ["FORMATS", "export", "write_csv", "write_jsonl", "write_perfetto"]
