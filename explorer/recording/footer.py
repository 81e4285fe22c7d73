"""The footer's index and its other keys, checked before anything trusts them.

A footer may lie: a crafted one lists one chunk thousands of times, points past the end of the file, or gives a
count as a string. Its chunk list is refused whole unless every entry lies inside the file, after the header and
before the footer, in order and without overlap (the reader then walks the frames instead); any other key of the
wrong type is dropped, and both are reported as damage.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from ..machines import BadMachines, ClockSnapshot
from ..schema import TS_END
from .framing import FRAME, MAX_FRAME

MIN_ROW_BYTES = 10  # format 1: a row is a list of nine items, so a chunk of n events holds at least 10n bytes
MIN_EVENT_BYTES = 1  # format 2: compressed columns, padded by the writer to at least one byte an event


def _count(v: Any) -> bool:
    return isinstance(v, int) and v.__class__ is not bool and 0 <= v < TS_END


def entry_problem(entry: Any, min_event_bytes: int = MIN_ROW_BYTES) -> str | None:
    """What is wrong with one chunk entry's own values (types and ranges), or None; a chunk of n events holds at
    least `min_event_bytes` bytes for each (the format's least), so a count never exceeds what the file holds."""
    if not isinstance(entry, list | tuple) or len(entry) < 5:
        return f"entry {entry!r:.40} is not [offset, length, t0, t1, n]"
    offset, length, t0, t1, n = entry[:5]
    if not all(_count(v) for v in (offset, length, t0, t1, n)):
        return f"entry {list(entry[:5])!r:.80} holds a value that is not a count in 0..2^63-1"
    if length > MAX_FRAME:
        return f"chunk at byte {offset} claims {length} bytes"
    if t1 < t0:
        return f"chunk at byte {offset} ends (t1 {t1}) before it starts (t0 {t0})"
    if n * min_event_bytes > length:
        return f"chunk at byte {offset} claims {n} events in {length} bytes"
    return None


def index_problem(chunks: Any, first: int, end: int, min_event_bytes: int = MIN_ROW_BYTES) -> str | None:
    """What makes a footer's chunk list untrustworthy, or None when every chunk lies whole between `first` (the
    end of the header) and `end` (the footer's offset), in file order, none overlapping another."""
    if not isinstance(chunks, list):
        return f"its chunk list is a {type(chunks).__name__}"
    if _all_sound(chunks, first, end, min_event_bytes):
        return None
    at = first
    for k, entry in enumerate(chunks):
        problem = entry_problem(entry, min_event_bytes)
        if problem is not None:
            return f"chunk {k}: {problem}"
        offset, length = entry[0], entry[1]
        if offset < at:
            return f"chunk {k} at byte {offset} overlaps or comes before the one listed before it (which ends at {at})"
        at = offset + FRAME.size + length
        if at > end:
            return f"chunk {k} at byte {offset} runs past the footer (byte {end})"
    return None


def _all_sound(chunks: list[Any], first: int, end: int, min_event_bytes: int) -> bool:
    """Whether every entry is five counts that pass `index_problem`'s checks, judged in a few passes over the
    whole list (a day's quiet capture writes a chunk a second: 86,400 entries, each checked alone cost 0.4 s of
    opening it). False only says to look entry by entry, which names the first problem."""
    if not chunks or set(map(type, chunks)) != {list} or set(map(len, chunks)) != {5} or \
            set(map(type, chain.from_iterable(chunks))) != {int}:  # (a bool is not an int here)
        return False
    try:
        a = np.array(chunks, dtype=np.int64)
    except OverflowError:  # a count past 2^63
        return False
    offset, length, t0, t1, n = a.T
    if not ((a >= 0).all() and (length <= MAX_FRAME).all() and (offset <= end).all() and (t0 <= t1).all()
            and (n <= length).all()):  # (bounded first, so that nothing below overflows)
        return False
    ends = offset + FRAME.size + length
    return bool((n * min_event_bytes <= length).all() and offset[0] >= first and (offset[1:] >= ends[:-1]).all()
                and ends[-1] <= end)


def _is_map_of(values: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and values(x) for k, x in v.items())


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _kernel_count(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("type"), str | int) and _count(v.get("count")) and \
        not isinstance(v.get("type"), bool)


def _sample(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and _count(v[0]) and isinstance(v[1], str)


_IMPORT: dict[str, Callable[[Any], bool]] = {
    "format": _text, "input": _text, "lines": _count, "parsed": _count, "unknown": _count, "suppressed": _count,
    "ignored": _count, "events": _count, "by_vendor": _is_map_of(_count), "host": _is_map_of(lambda _: True),
    "unknown_samples": lambda v: isinstance(v, list) and all(map(_sample, v)),
}

# The keys readers use, and what each must be; the chunk list is checked by `index_problem`.
KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "events": (_count, "a count"),
    "counts": (_is_map_of(_count), "a map of kind to count"),
    "devices": (lambda v: isinstance(v, list), "a list"),
    "end_reason": (_text, "a string"),
    "lost": (_count, "a count"),
    "kernel_counts": (lambda v: isinstance(v, list) and all(map(_kernel_count, v)), "a list of {type, count}"),
    "kernel_counts_missed": (_count, "a count"),
    "unmatched_responses": (_count, "a count"),
    "import": (lambda v: isinstance(v, dict) and all(_IMPORT.get(k, lambda _: True)(x) for k, x in v.items()),
               "a map of import statistics"),
    "snapshots": (lambda v: isinstance(v, list), "a list of kernel state snapshots"),  # each: snapshot.stored
    "clock_end": (lambda v: _clocks(v) is not None, "the clocks read at the end (explorer/machines.py)"),
}


def _clocks(v: Any) -> ClockSnapshot | None:
    try:
        return ClockSnapshot.from_dict(v, "clock_end")
    except BadMachines:
        return None


def checked_keys(footer: dict[Any, Any]) -> tuple[dict[str, Any], list[str]]:
    """The footer without the known keys whose values are of the wrong type, and a line for each dropped."""
    kept, dropped = {}, []
    for key, value in footer.items():
        spec = KEYS.get(key) if isinstance(key, str) else None
        if spec is not None and not spec[0](value):
            dropped.append(f"footer key {key}: expected {spec[1]}, found {value!r:.40}; ignored")
            continue
        kept[key] = value
    return kept, dropped
