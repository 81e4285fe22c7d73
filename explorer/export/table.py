"""CSV for spreadsheets: a fixed column set, the same for every recording, so files can be stacked.

Columns: the common event fields, then one column per field any event kind defines (in the event model's order),
then `extra` holding any field this version does not know (JSON). Lists and dicts are JSON text; booleans are
true/false; a field an event does not have is empty.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ..events import COMMON_FIELDS, KINDS, R_FIELDS
from .jsonl import json_default


def field_columns() -> list[str]:
    seen: dict[str, None] = {}
    for spec in KINDS.values():
        for f in spec:
            if f.name not in COMMON_FIELDS:
                seen.setdefault(f.name, None)
    return list(seen)


COLUMNS: list[str] = [*COMMON_FIELDS, *field_columns(), "extra"]


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=json_default)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def write_csv(rows: Iterable[list[Any]], out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    known = set(COLUMNS)
    fields_cols = COLUMNS[len(COMMON_FIELDS):-1]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    for row in rows:
        f = row[R_FIELDS] or {}
        extra = {k: v for k, v in f.items() if k not in known}
        if len(row) > R_FIELDS + 1:
            extra["_extra"] = list(row[R_FIELDS + 1:])
        w.writerow([*(_cell(x) for x in row[:R_FIELDS]), *(_cell(f.get(c)) for c in fields_cols),
                    _cell(extra) if extra else ""])
        n += 1
        if tick is not None and n % 65536 == 0:
            tick(n)
    return n
