"""Durations and counts as people write and read them: nanoseconds are the model's unit, never a reader's."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)\s*$")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_duration(value: Any) -> int:
    """'1.5ms' -> 1500000 ns. A bare 0 is allowed; any other number needs a unit, to avoid ns/ms mix-ups."""
    if value == 0 and not isinstance(value, bool):
        return 0
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"expected a duration with a unit (e.g. 5ms, 250us, 1.5s), got {value!r}")
    return round(float(m.group(1)) * _UNITS[m.group(2)])


def counted(n: int, noun: str) -> str:
    """A count with its noun, singular for one ('1 line', '8,000 lines'); nouns here take a plain -s."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def fmt_ns(ns: int) -> str:
    """A duration in the unit a person reads fastest."""
    a = abs(ns)
    if a >= 1_000_000_000:
        return f"{ns / 1e9:.3f} s"
    if a >= 1_000_000:
        return f"{ns / 1e6:.3f} ms"
    if a >= 1_000:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns} ns"
