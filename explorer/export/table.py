"""CSV for spreadsheets: a fixed column set, the same for every recording, so files can be stacked.

Columns: the common event fields, then one column per field any event kind defines (in the event model's order),
then `extra` holding any field this version does not know (JSON). Lists and dicts are JSON text; booleans are
true/false; a field an event does not have is empty.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ..events import COMMON_FIELDS, KINDS, R_FIELDS, R_MACHINE
from ..text import csv_cell, json_encoder, json_text

_JSON = json_encoder(separators=(",", ":"))


def field_columns() -> list[str]:
    seen: dict[str, None] = {}
    for spec in KINDS.values():
        for f in spec:
            if f.name not in COMMON_FIELDS:
                seen.setdefault(f.name, None)
    return list(seen)


COLUMNS: list[str] = [*COMMON_FIELDS, *field_columns(), "extra"]


def _cell(v: Any) -> Any:
    """A value as a spreadsheet reads it: text neutralised (no control characters, no formula), numbers as
    numbers (a non-finite one as text), maps and lists as JSON text."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return csv_cell(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return csv_cell(json_text(v, _JSON))


def write_csv(rows: Iterable[list[Any]], out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    fields_cols = COLUMNS[len(COMMON_FIELDS):-1]
    known = set(fields_cols)  # a field named like a common column (kind, device, extra) goes to `extra`
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    for row in rows:
        f = row[R_FIELDS] or {}
        extra = {k: v for k, v in f.items() if k not in known}
        if len(row) > R_MACHINE and row[R_MACHINE]:  # a merged recording's machine number (explorer/machines.py)
            extra["machine"] = row[R_MACHINE]
        if len(row) > R_MACHINE + 1:
            extra["_extra"] = list(row[R_MACHINE + 1:])
        w.writerow([*(_cell(x) for x in row[:R_FIELDS]), *(_cell(f.get(c)) for c in fields_cols),
                    _cell(extra) if extra else ""])
        n += 1
        if tick is not None and n % 65536 == 0:
            tick(n)
    return n
