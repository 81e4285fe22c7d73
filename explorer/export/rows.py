"""Where exporters read events from: a recording streamed chunk by chunk, or a scenario simulated in memory."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..events import R_FIELDS, R_TS, row_problem
from ..loading import open_index
from ..recording import Header, Recording


@contextmanager
def open_rows(path: str, anomalies: bool = False) -> Iterator[tuple[Header, Iterator[list[Any]], int, list[str]]]:
    """The header, every readable row in file order, the event count (for progress), and the damage found, a
    list that is complete once the rows are exhausted. With `anomalies`, the recording is run through the model
    and each finding becomes an `anomaly` event among the rows, at its time."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "", "no such file")
    if anomalies or p.suffix in (".yaml", ".yml"):  # a scenario is simulated, and findings need the model
        idx = open_index(p)
        damage = list(idx.damage)
        found = [a.to_event().to_row() for a in idx.anomalies] if anomalies else []
        rows = heapq.merge(_well_formed(idx.iter_rows(), damage), found, key=itemgetter(R_TS))
        yield idx.header, rows, idx.n + len(found), damage
        return
    damage = []
    with Recording(p) as rec:
        yield rec.header, _well_formed(rec.iter_rows(), damage, rec.damage), rec.event_count, damage


def _well_formed(rows: Iterator[Any], damage: list[str], after: list[Any] | None = None) -> Iterator[list[Any]]:
    """Rows an exporter can name every field of; the others are left out and described (`event n` counts the
    readable rows), and so, once the rows are done, is what the reader could not use (`after`). Values of
    unexpected types are written as they are."""
    for n, row in enumerate(rows):
        if usable(row):
            yield row
        else:
            damage.append(f"event {n}: {row_problem(row) or 'malformed'}; left out")
    damage.extend(str(d) for d in after or ())


def usable(row: Any) -> bool:
    """Whether an exporter can read every field of `row`: a row of the right length whose fields are a mapping."""
    return type(row) is list and len(row) > R_FIELDS and (row[R_FIELDS] is None or type(row[R_FIELDS]) is dict)
