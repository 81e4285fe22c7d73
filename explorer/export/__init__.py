"""Exporters: hand a recording to the tools people already use.

    jsonl     one JSON object per event, every field named           (jq, pandas.read_json(lines=True))
    csv       a fixed column set, one column per event field         (spreadsheets, pandas.read_csv)
    perfetto  a Chrome JSON trace with a track per device and PASID  (ui.perfetto.dev, chrome://tracing)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from ..errors import InputError
from ..loading import open_index
from .jsonl import write_jsonl
from .perfetto import write_perfetto
from .rows import open_rows
from .table import write_csv

FORMATS = ("jsonl", "csv", "perfetto")
Tick = Callable[[int, int], None]


def export(path: str, to: str, out: str, progress: Tick | None = None) -> int:
    """Write recording (or scenario) `path` as `to` into `out` ('-' for stdout); returns the items written."""
    if to not in FORMATS:
        raise InputError(path, "", f"unknown export format {to!r} (known: {', '.join(FORMATS)})")
    if out == "-":
        return _write(path, to, sys.stdout, progress)
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            n = _write(path, to, f, progress)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    return n


def _write(path: str, to: str, f, progress: Tick | None) -> int:  # type: ignore[no-untyped-def]
    if to == "perfetto":
        idx = open_index(path, progress=progress)
        total = idx.n
        return write_perfetto(idx, f, None if progress is None else lambda n: progress(n, total))
    with open_rows(path) as (_, rows, total):
        tick = None if progress is None else (lambda n: progress(n, total))
        return (write_jsonl if to == "jsonl" else write_csv)(rows, f, tick)


__all__ = ["FORMATS", "export", "write_csv", "write_jsonl", "write_perfetto"]
