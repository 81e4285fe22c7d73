"""Helpers the subcommands share: opening an input with progress, and JSON output."""

from __future__ import annotations

import sys
from typing import Any

from ...index import RecordingIndex
from ...loading import open_index
from ...text import write_json
from ..progress import Progress


def open_with_progress(path: str, stale_ms: float | None = None, *, model: bool = True,
                       first: int | None = None, history: bool | None = True) -> RecordingIndex:
    """`model` False: the explorer runs the model itself, behind its first screen (and with `first`, indexes
    all but the first events there too). `history`: see `loading.open_index` (a report that never seeks the
    model keeps no checkpoints)."""
    progress = Progress(f"indexing {path}")
    stale_ns = None if stale_ms is None else int(stale_ms * 1e6)
    idx = open_index(path, progress=progress, stale_ns=stale_ns, model=model, first=first, history=history)
    progress.done()
    return idx


def warn_damage(path: str, damage: list[str]) -> None:
    """What the input lacks, one line each on stderr, so that a pipe of the output stays clean."""
    for d in damage:
        print(f"pasid-explorer: {path}: {d}", file=sys.stderr)


def print_json(data: Any) -> None:
    write_json(data, sys.stdout)
    sys.stdout.write("\n")
