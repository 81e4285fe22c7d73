"""JSON Lines: one object per event with every field named (`Event.as_dict`), for jq and scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ..events import Event


def json_default(o: Any) -> Any:
    """Values JSON lacks: bytes as hex, anything else as its text."""
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    return str(o)


def write_jsonl(rows: Iterable[list[Any]], out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
    for row in rows:
        out.write(dumps(Event.from_row(row).as_dict()))
        out.write("\n")
        n += 1
        if tick is not None and n % 65536 == 0:
            tick(n)
    return n
