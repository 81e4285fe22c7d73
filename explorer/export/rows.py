"""Where exporters read events from: a recording streamed chunk by chunk, or a scenario simulated in memory."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..events import R_TS
from ..loading import open_index
from ..recording import Header, Recording


@contextmanager
def open_rows(path: str, anomalies: bool = False) -> Iterator[tuple[Header, Iterator[list[Any]], int, list[str]]]:
    """The header, every readable row in file order (checked by the reader: a refused row is a one-event loss),
    the event count (for progress), and the damage found, a list that is complete once the rows are exhausted.
    With `anomalies`, the recording is run through the model and each finding becomes an `anomaly` event among
    the rows, at its time."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "", "no such file")
    damage: list[str] = []
    if anomalies or p.suffix in (".yaml", ".yml"):  # a scenario is simulated, and findings need the model
        with open_index(p) as idx:
            found = [a.to_event().to_row() for a in idx.anomalies] if anomalies else []
            rows = heapq.merge(idx.iter_rows(), found, key=itemgetter(R_TS))
            yield idx.header, _then(rows, lambda: damage.extend(idx.damage)), idx.n + len(found), damage
        return
    with Recording(p) as rec:
        yield rec.header, _then(rec.iter_rows(), lambda: damage.extend(map(str, rec.damage))), rec.event_count, \
            damage


def _then(rows: Iterator[list[Any]], done: Callable[[], None]) -> Iterator[list[Any]]:
    """`rows`, then `done()` once they are exhausted (what the reader found is known only then)."""
    yield from rows
    done()
