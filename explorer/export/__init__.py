"""Exporters: hand a recording to the tools people already use.

    jsonl        one JSON object per event, every field named            (jq, pandas.read_json(lines=True))
    csv          a fixed column set, one column per event field          (spreadsheets, pandas.read_csv)
    perfetto     a Perfetto protobuf trace: machine, device, PASID tracks (ui.perfetto.dev, trace processor)
    chrome-json  a Chrome JSON trace with a track per device and PASID   (chrome://tracing, older viewers)
    parquet      typed tables of events, findings and intervals          (DuckDB, Spark, Trino, pandas)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..loading import open_index
from ..outputs import atomic_output
from ..text import raw
from .chrome_json import write_chrome_json
from .jsonl import write_jsonl
from .rows import open_rows
from .table import write_csv

FORMATS = ("jsonl", "csv", "perfetto", "chrome-json", "parquet")
BINARY = frozenset({"perfetto"})
MODELLED = frozenset({"perfetto", "chrome-json"})  # formats that carry the model's intervals and findings
Tick = Callable[[int, int], None]


def export(path: str, to: str, out: str, progress: Tick | None = None, damage: list[str] | None = None,
           anomalies: bool = False) -> int:
    """Write recording (or scenario) `path` as `to` into `out` ('-' for stdout); returns the items written.
    What the input lost (unreadable chunks, malformed events) is appended to `damage`. `anomalies` adds the
    model's findings as `anomaly` events (perfetto and chrome-json always have them)."""
    if to not in FORMATS:
        raise InputError(path, "", f"unknown export format {to!r} (known: {', '.join(FORMATS)})")
    if to == "perfetto" and Path(out).suffix == ".json":
        raise InputError(out, "", "--to perfetto writes a protobuf trace (.pftrace); "
                                  "for a Chrome JSON trace use --to chrome-json")
    found: list[str] = [] if damage is None else damage
    if to == "parquet":  # a directory of tables, written in place once complete
        from .parquet import write_parquet  # pyarrow loads only when asked for

        with open_index(path, progress=progress) as idx:
            n = write_parquet(idx, Path(path).name, out, None if progress is None else lambda k: progress(k, idx.n))
            found.extend(idx.damage)
        return n
    mode = "wb" if to in BINARY else "w"
    if out == "-":
        return _write(path, to, raw(sys.stdout).buffer if to in BINARY else sys.stdout, progress, found, anomalies)
    with atomic_output(out, mode, reads=(path,)) as f:
        return _write(path, to, f, progress, found, anomalies)


def _write(path: str, to: str, f, progress: Tick | None, damage: list[str],  # type: ignore[no-untyped-def]
           anomalies: bool) -> int:
    if to in MODELLED:
        with open_index(path, progress=progress) as idx:
            total = idx.n
            tick = None if progress is None else (lambda n: progress(n, total))
            if to == "perfetto":
                from .perfetto import write_perfetto  # protobuf's Perfetto protos load only when asked for

                n = write_perfetto(idx, f, tick)
            else:
                n = write_chrome_json(idx, f, tick)
            damage.extend(idx.damage)
        return n
    with open_rows(path, anomalies) as (_, rows, total, found):
        tick = None if progress is None else (lambda n: progress(n, total))
        n = (write_jsonl if to == "jsonl" else write_csv)(rows, f, tick)
    damage.extend(found)
    return n

__all__ = ["FORMATS", "export", "write_chrome_json", "write_csv", "write_jsonl"]
