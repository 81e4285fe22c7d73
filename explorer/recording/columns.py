"""Per-chunk columns: every event's time and (kind, device, PASID) key, packed beside the chunk's rows.

Opening a recording needs these three values of every event to build its per-device / per-PASID index, and
reading them from millions of decoded rows in Python costs as much as decoding them. The writer has the rows at
hand, so it packs the columns once (a byte string of times, the chunk's distinct keys, a byte string of key
numbers) and readers take them with numpy. They are an optional addition: readers check them against the chunk
and fall back to the rows when they are absent or do not fit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import count
from operator import itemgetter
from typing import Any

import numpy as np

from ..events import R_DEVICE, R_KIND, R_PASID, R_TS, Row

Key = tuple[Any, Any, Any]  # (kind, device, pasid)
_TS, _KEY = itemgetter(R_TS), itemgetter(R_KIND, R_DEVICE, R_PASID)
_MALFORMED = (TypeError, ValueError, OverflowError, IndexError)


@dataclass(frozen=True, slots=True)
class ChunkColumns:
    ts: np.ndarray  # int64, one per event
    keys: list[Key]  # the chunk's distinct (kind, device, pasid), in order of first appearance
    key_of: np.ndarray  # per event, its index in `keys`
    row_at: list[int] | None = None  # n + 1 byte offsets of the rows inside the events array, when stored

    def counts(self) -> dict[str, int]:
        """Events per kind, as the chunk's `counts` map has them."""
        per_key = np.bincount(self.key_of, minlength=len(self.keys)).tolist()
        out: dict[str, int] = {}
        for (kind, _, _), n in zip(self.keys, per_key, strict=True):
            out[kind] = out.get(kind, 0) + n
        return out


def columns_of(rows: list[Row]) -> ChunkColumns | None:
    """The columns of rows a writer is about to store; None when a row is malformed (readers use the rows)."""
    n = len(rows)
    ids: defaultdict[Key, int] = defaultdict(count().__next__)
    try:
        ts = np.fromiter(map(_TS, rows), np.int64, n)
        key_of = np.fromiter(map(ids.__getitem__, map(_KEY, rows)), np.uint32, n)
    except _MALFORMED:
        return None
    return ChunkColumns(ts, list(ids), key_of)


def pack(cols: ChunkColumns, row_sizes: list[int]) -> dict[str, Any]:
    """The stored form; `row_sizes` are the rows' encoded lengths, from which readers find any one row."""
    width = "<u2" if len(cols.keys) <= 0xFFFF else "<u4"
    row_at = np.zeros(len(row_sizes) + 1, "<u4")
    np.cumsum(row_sizes, out=row_at[1:])
    return {"ts": cols.ts.astype("<i8").tobytes(), "keys": [list(k) for k in cols.keys],
            "key_of": cols.key_of.astype(width).tobytes(), "row_at": row_at.tobytes()}


def unpack(packed: Any, n: int) -> ChunkColumns | None:
    """A chunk's stored columns, or None when they are missing or inconsistent with its `n` events."""
    if not isinstance(packed, dict):
        return None
    ts, keys, key_of = packed.get("ts"), packed.get("keys"), packed.get("key_of")
    if not (isinstance(ts, bytes) and isinstance(keys, list) and isinstance(key_of, bytes)) or len(ts) != 8 * n:
        return None
    if not all(isinstance(k, list) and len(k) == 3 for k in keys):
        return None
    width = len(key_of) // n if n else 2
    if width not in (2, 4) or len(key_of) != width * n:
        return None
    of = np.frombuffer(key_of, "<u2" if width == 2 else "<u4")
    if n and int(of.max()) >= len(keys):
        return None
    return ChunkColumns(np.frombuffer(ts, "<i8"), [tuple(k) for k in keys], of, _row_at(packed.get("row_at"), n))


def _row_at(packed: Any, n: int) -> list[int] | None:
    if not isinstance(packed, bytes) or len(packed) != 4 * (n + 1):
        return None
    at = np.frombuffer(packed, "<u4")
    return at.tolist() if at[0] == 0 and bool((np.diff(at) > 0).all()) else None
