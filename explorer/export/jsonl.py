"""JSON Lines: one object per event with every field named (`Event.as_dict`), for jq and scripts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ..events import Event
from ..text import json_encoder, json_text


def write_jsonl(rows: Iterable[list[Any]], out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    n = 0
    encoder = json_encoder(separators=(",", ":"))
    for row in rows:
        out.write(json_text(Event.from_row(row).as_dict(), encoder))
        out.write("\n")
        n += 1
        if tick is not None and n % 65536 == 0:
            tick(n)
    return n
