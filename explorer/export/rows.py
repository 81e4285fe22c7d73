"""Where exporters read events from: a recording streamed chunk by chunk, or a scenario simulated in memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..loading import open_index
from ..recording import Header, Recording


@contextmanager
def open_rows(path: str) -> Iterator[tuple[Header, Iterator[list[Any]], int]]:
    """The header, every readable row in file order, and the event count (for progress)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "", "no such file")
    if p.suffix in (".yaml", ".yml"):
        idx = open_index(p)
        yield idx.header, (idx.row(i) for i in range(idx.n)), idx.n
        return
    with Recording(p) as rec:
        yield rec.header, rec.iter_rows(), rec.event_count
