"""Rows already encoded: a batch of rows as columns (times, keys, processes) beside their MessagePack field maps,
built from numpy columns.

A live capture at half a million events a second cannot afford a Python list and dict per event, nor packing
them one by one. Most of its events share one shape (an ioctl of one command: the same keys, the same constants,
a few integers that vary), so the field maps are written straight from numpy columns: a `Template` is a map with
`Col` placeholders, and `Encoded` lays out every map's bytes at once, each integer in the smallest MessagePack
form, exactly as `msgpack.packb` would write it. The rest of a row (its time, its (kind, device, PASID) key and
its (cpu, pid, comm, source) process) stays in the columns a format 3 chunk stores, so that the writer stores a
batch without parsing a row (`PackedRows.columns`); a live view decodes rows back when it needs them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import count
from operator import itemgetter
from typing import Any

import msgpack
import numpy as np

from ..events import R_FIELDS, R_TS, Row
from .columns import Key

_PACKER = msgpack.Packer(use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Col:
    """A placeholder in a template: the integer column of this name."""

    name: str


Template = Any  # a field map (dict / list / scalars) in which `Col` placeholders stand for per-row values

# The smallest MessagePack form of an integer: (low, high) bounds, first byte (None: the value itself, a fixint),
# payload bytes. msgpack's packer picks unsigned forms for values >= 0 and signed ones below.
_UNSIGNED = ((0, 0x7F, None, 0), (0x80, 0xFF, 0xCC, 1), (0x100, 0xFFFF, 0xCD, 2), (0x10000, 0xFFFFFFFF, 0xCE, 4),
             (0x100000000, 0xFFFFFFFFFFFFFFFF, 0xCF, 8))
_SIGNED = ((-32, -1, None, 0), (-128, -33, 0xD0, 1), (-32768, -129, 0xD1, 2), (-(1 << 31), -32769, 0xD2, 4),
           (-(1 << 63), -(1 << 31) - 1, 0xD3, 8))


class _Const:
    """Bytes every row has at this place (merged neighbouring constants of the template)."""

    def __init__(self, data: bytes) -> None:
        self.data = np.frombuffer(data, np.uint8)
        self.uniform: int | None = 0  # the form of every row, when they share one

    @property
    def lengths(self) -> np.ndarray:
        raise AssertionError("a constant has one width")

    def width(self, form: int) -> int:
        return len(self.data)


class _Ints:
    """An integer column; a row's form is its place in `_FORMS` (fixint, uint8, ..., int64)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.uniform, self.form = _forms(values)

    @property
    def lengths(self) -> np.ndarray:
        return _FORM_WIDTH[self.form]

    def width(self, form: int) -> int:
        return int(_FORM_WIDTH[form])

    def values_of(self, rows: np.ndarray) -> np.ndarray:
        return self.values if len(rows) == len(self.values) else self.values[rows]


def _field(form: int) -> tuple[int | None, str]:
    """An integer form's first byte (None for a fixint, which is its own byte) and the numpy type of its value."""
    low, _, first, size = _FORMS[form]
    kind = "i" if low < 0 else "u"
    return first, f"{kind}1" if first is None else f">{kind}{size}"


_Segment = _Const | _Ints
_FORMS = _UNSIGNED + _SIGNED
_FORM_WIDTH = np.array([1 + size for *_, size in _FORMS], np.int64)
_HIGHS = np.array([high for _, high, _, _ in _UNSIGNED[:-1]], np.uint64)  # 0x7f, 0xff, 0xffff, 0xffffffff
_LOWS = np.array([low for low, _, _, _ in _SIGNED[:-1]][::-1], np.int64)  # -2**31, -32768, -128, -32


def _forms(values: np.ndarray) -> tuple[int | None, np.ndarray | None]:
    """Each value's form (its index in `_FORMS`): the smallest that holds it, as msgpack's packer chooses.
    (the form, None) when every value has the same one, the usual case; else (None, each value's form)."""
    if not len(values):
        return 0, None
    low, high = values.min(), values.max()
    if low >= 0:
        forms = np.searchsorted(_HIGHS, np.array([low, high], np.uint64))
        if forms[0] == forms[1]:
            return int(forms[0]), None
        return None, np.searchsorted(_HIGHS, values.astype(np.uint64, copy=False)).astype(np.int64)
    if high < 0:
        forms = len(_FORMS) - 1 - np.searchsorted(_LOWS, np.array([low, high], np.int64), side="right")
        if forms[0] == forms[1]:
            return int(forms[0]), None
    signed = values.astype(np.int64, copy=False)
    negative = signed < 0
    form = np.searchsorted(_HIGHS, np.where(negative, 0, signed).astype(np.uint64)).astype(np.int64)
    form[negative] = len(_FORMS) - 1 - np.searchsorted(_LOWS, signed[negative], side="right")
    return None, form


def _walk(t: Any, columns: dict[str, Any], parts: list[bytes | _Segment]) -> None:
    """Appends the template's pieces to `parts`. (Not a closure: one that calls itself is a reference cycle,
    which would hold the columns, a capture's ring buffer memory, until the next garbage collection.)"""
    if isinstance(t, Col):
        parts.append(_Ints(np.asarray(columns[t.name])))
    elif isinstance(t, dict):
        parts.append(_PACKER.pack_map_header(len(t)))
        for k, v in t.items():
            _walk(k, columns, parts)
            _walk(v, columns, parts)
    elif isinstance(t, (list, tuple)):
        parts.append(_PACKER.pack_array_header(len(t)))
        for v in t:
            _walk(v, columns, parts)
    else:
        parts.append(_PACKER.pack(t))


def _segments(template: Template, columns: dict[str, Any]) -> list[_Segment]:
    """The template as a list of segments, adjacent constants merged."""
    parts: list[bytes | _Segment] = []
    _walk(template, columns, parts)
    out: list[_Segment] = []
    pending = b""
    for p in parts:
        if isinstance(p, bytes):
            pending += p
            continue
        if pending:
            out.append(_Const(pending))
            pending = b""
        out.append(p)
    if pending:
        out.append(_Const(pending))
    return out


class Encoded:
    """`n` field maps of one template, laid out: `lengths` first, then `write` into a buffer at given row starts.

    Rows whose every column takes the same MessagePack form have the same layout: each such group is filled as
    one two-dimensional array (the constants copied in once, then each integer column as one field of a record
    view), in place when its rows lie next to each other, as a batch of one command does."""

    def __init__(self, template: Template, columns: dict[str, Any], n: int) -> None:
        self.n = n
        self.segments = _segments(template, columns)
        fixed = sum(s.width(s.uniform) for s in self.segments if s.uniform is not None)
        varying = [s.lengths for s in self.segments if s.uniform is None]
        self.lengths = fixed + np.sum(varying, axis=0) if varying else np.full(n, fixed, np.int64)

    def _layouts(self) -> list[tuple[np.ndarray, list[int]]]:
        """The rows grouped by layout: (rows, the form of each segment)."""
        varying = [s for s in self.segments if s.uniform is None]
        if not varying:
            return [(np.arange(self.n), [s.uniform for s in self.segments])]  # type: ignore[misc]
        kinds, of = np.unique(np.stack([s.form for s in varying], axis=1), axis=0, return_inverse=True)
        of = of.reshape(-1)
        out = []
        for i, kind in enumerate(kinds.tolist()):
            it = iter(kind)
            out.append((np.flatnonzero(of == i), [s.uniform if s.uniform is not None else next(it)
                                                  for s in self.segments]))
        return out

    def write(self, out: np.ndarray, starts: np.ndarray) -> None:
        if not self.n:
            return
        for rows, forms in self._layouts():
            proto: list[bytes] = []  # the constants (and each integer's first byte) in place, once
            names, formats, offsets = [], [], []
            for i, (s, f) in enumerate(zip(self.segments, forms, strict=True)):
                if isinstance(s, _Const):
                    proto.append(s.data.tobytes())
                    continue
                first, fmt = _field(f)
                if first is not None:
                    proto.append(bytes([first]))
                names.append(f"v{i}")
                formats.append(fmt)
                offsets.append(sum(map(len, proto)))
                proto.append(bytes(int(_FORM_WIDTH[f]) - (first is not None)))
            row = np.frombuffer(b"".join(proto), np.uint8)
            at = starts[rows]
            step, first_at = len(row), int(at[0])
            together = int(at[-1]) - first_at == (len(rows) - 1) * step and bool((np.diff(at) == step).all())
            buf = out[first_at:first_at + len(rows) * step].reshape(-1, step) if together else \
                np.empty((len(rows), step), np.uint8)
            buf[:] = row
            # each integer written as one field of a record view of the rows: a cast per column, not per byte
            view = buf.reshape(-1).view(np.dtype({"names": names, "formats": formats, "offsets": offsets,
                                                  "itemsize": step}))
            for name, s in zip(names, (s for s in self.segments if isinstance(s, _Ints)), strict=True):
                view[name] = s.values_of(rows)
            if not together:
                out[at[:, None] + np.arange(step)] = buf


Proc = tuple[Any, Any, Any, Any]  # (cpu, pid, comm, source)


def _first_seen(codes: np.ndarray, table: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The entries of `table` that `codes` use, in order of first use, and each code renumbered into them."""
    used, first, of = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.uint32)
    rank[order] = np.arange(len(order), dtype=np.uint32)
    return [table[k] for k in used[order].tolist()], rank[of.reshape(-1)]


def _plain(table: list[Any]) -> list[tuple[Any, ...]]:
    """A table's entries as a reader reads them back: a str subclass (an enum's value) as the str it packs as."""
    return [tuple(e) for e in msgpack.unpackb(_PACKER.pack([list(e) for e in table]), raw=False)]


_COMPACT_TABLE = 64


def _merged(tables: list[list[Any]], codes: list[np.ndarray]) -> tuple[list[Any], np.ndarray]:
    """Several (table, codes) as one table of distinct entries and the codes into it, in order. A big table keeps
    only the entries its codes use (a capture's held-back rows would otherwise carry every process ever seen)."""
    ids: dict[Any, int] = {}
    out = []
    for table, of in zip(tables, codes, strict=True):
        if len(table) > _COMPACT_TABLE:
            table, of = _first_seen(of, table)
        out.append(np.array([ids.setdefault(e, len(ids)) for e in table], np.uint32)[of])
    return list(ids), np.concatenate(out)


_TS, _FIELDS = itemgetter(R_TS), itemgetter(R_FIELDS)
_KEY, _PROC = itemgetter(1, 2, 3), itemgetter(4, 5, 6, 7)
_KEY_AND_PROC = tuple(map(itemgetter, range(1, 8)))
_NONE = type(None)


def _rows_fit(rows: list[Row]) -> bool:
    """Whether every row is one as a capture writes it: nine items, an int time, and a key and process of ints,
    strings and nils (what the columns hold without a dictionary confusing True with 1). Judged a column at a time,
    by the types it holds."""
    if set(map(type, rows)) - {list} or set(map(len, rows)) - {9}:
        return False
    ts = list(map(_TS, rows))
    if set(map(type, ts)) - {int} or ts and not (min(ts) >= 0 and max(ts) < 1 << 63):
        return False
    return all(t is _NONE or issubclass(t, str) or (issubclass(t, int) and not issubclass(t, bool))
               for item in _KEY_AND_PROC for t in set(map(type, map(item, rows))))


@dataclass(frozen=True, slots=True)
class RowColumns:
    """Rows split into a format 3 chunk's columns: times, (kind, device, PASID) keys, (cpu, pid, comm, source)
    processes, and each row's packed fields map (`fields`, `flen` bytes each, back to back)."""

    ts: np.ndarray  # int64
    keys: list[Key]
    key_of: np.ndarray  # uint32
    procs: list[Proc]
    proc_of: np.ndarray  # uint32
    fields: np.ndarray  # uint8
    flen: np.ndarray  # int64


@dataclass(frozen=True, slots=True)
class PackedRows:
    """Rows in time order, as columns: row i is `[ts[i], *keys[key_of[i]], *procs[proc_of[i]], fields map]`, its
    fields map already MessagePack (`fields[field_at[i]:field_at[i + 1]]`). The tables hold distinct entries."""

    ts: np.ndarray  # int64
    keys: list[Key]
    key_of: np.ndarray  # uint32
    procs: list[Proc]
    proc_of: np.ndarray  # uint32
    fields: np.ndarray  # uint8
    field_at: np.ndarray  # int64, n + 1 offsets

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> PackedRows:
        z = np.zeros(0, np.uint32)
        return cls(np.zeros(0, np.int64), [], z, [], z, np.zeros(0, np.uint8), np.zeros(1, np.int64))

    @classmethod
    def of_rows(cls, rows: list[Row]) -> PackedRows:
        """Rows packed one by one (the few that are not worth a template; an import's); ValueError when one is not
        a row as a capture writes it (see `_rows_fit`): the writer then stores such rows as rows."""
        if not _rows_fit(rows):
            raise ValueError("a row the columns cannot hold")
        n = len(rows)
        keys: defaultdict[Key, int] = defaultdict(count().__next__)  # numbered in order of first appearance
        procs: defaultdict[Proc, int] = defaultdict(count().__next__)
        key_of = np.fromiter(map(keys.__getitem__, map(_KEY, rows)), np.uint32, n)
        proc_of = np.fromiter(map(procs.__getitem__, map(_PROC, rows)), np.uint32, n)
        packed = list(map(_PACKER.pack, map(_FIELDS, rows)))
        field_at = np.zeros(n + 1, np.int64)
        np.cumsum(np.fromiter(map(len, packed), np.int64, n), out=field_at[1:])
        return cls(np.fromiter(map(_TS, rows), np.int64, n), list(keys), key_of, list(procs), proc_of,
                   np.frombuffer(bytearray(b"".join(packed)), np.uint8), field_at)

    @classmethod
    def assemble(cls, ts: np.ndarray, keys: list[Key], key_of: np.ndarray, procs: list[Proc], proc_of: np.ndarray,
                 parts: list[tuple[np.ndarray, Any]]) -> PackedRows:
        """Rows whose field maps come from several sources, laid out in one buffer. `ts`, `key_of` and `proc_of`
        are in the rows' final (time) order; `parts` are (the final positions of its rows, an `Encoded` or a list
        of packed maps), together covering 0..n-1."""
        lengths = np.zeros(len(ts), np.int64)
        for pos, enc in parts:
            lengths[pos] = enc.lengths if isinstance(enc, Encoded) else [len(b) for b in enc]
        field_at = np.zeros(len(ts) + 1, np.int64)
        np.cumsum(lengths, out=field_at[1:])
        fields = np.empty(int(field_at[-1]), np.uint8)
        for pos, enc in parts:
            if isinstance(enc, Encoded):
                enc.write(fields, field_at[pos])
            else:
                for p, b in zip(field_at[pos].tolist(), enc, strict=True):
                    fields[p:p + len(b)] = np.frombuffer(b, np.uint8)
        return cls(np.asarray(ts, np.int64), keys, np.asarray(key_of, np.uint32), procs,
                   np.asarray(proc_of, np.uint32), fields, field_at)

    def slice(self, i: int, j: int) -> PackedRows:
        """Rows i..j-1 (sharing this batch's memory)."""
        a, b = int(self.field_at[i]), int(self.field_at[j])
        return PackedRows(self.ts[i:j], self.keys, self.key_of[i:j], self.procs, self.proc_of[i:j],
                          self.fields[a:b], self.field_at[i:j + 1] - a)

    @staticmethod
    def concat(batches: list[PackedRows]) -> PackedRows:
        """One batch of several, in the given order (a caller merging out-of-order batches sorts after)."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return PackedRows.empty()
        if len(batches) == 1:
            return batches[0]
        keys, key_of = _merged([b.keys for b in batches], [b.key_of for b in batches])
        procs, proc_of = _merged([b.procs for b in batches], [b.proc_of for b in batches])
        bases = np.cumsum([0] + [len(b.fields) for b in batches[:-1]])
        field_at = np.concatenate([[0]] + [b.field_at[1:] + base for b, base in zip(batches, bases, strict=True)])
        return PackedRows(np.concatenate([b.ts for b in batches]), keys, key_of, procs, proc_of,
                          np.concatenate([b.fields for b in batches]), field_at)

    def sorted(self) -> PackedRows:
        """The same rows in time order (stable)."""
        if len(self.ts) < 2 or bool((np.diff(self.ts) >= 0).all()):
            return self
        order = np.argsort(self.ts, kind="stable")
        lengths = np.diff(self.field_at)[order]
        field_at = np.zeros(len(order) + 1, np.int64)
        np.cumsum(lengths, out=field_at[1:])
        gather = np.repeat(self.field_at[:-1][order] - field_at[:-1], lengths) + np.arange(int(field_at[-1]))
        return PackedRows(self.ts[order], self.keys, self.key_of[order], self.procs, self.proc_of[order],
                          self.fields[gather], field_at)

    def columns(self) -> RowColumns:
        """The rows as a chunk's columns, with tables of the distinct keys and processes in order of first
        appearance (the order a writer packing rows one by one finds them), as a reader reads them back."""
        keys, key_of = _first_seen(self.key_of, self.keys)
        procs, proc_of = _first_seen(self.proc_of, self.procs)
        return RowColumns(self.ts, _plain(keys), key_of, _plain(procs), proc_of, self.fields, np.diff(self.field_at))

    def rows(self) -> list[Row]:
        """The rows as Python lists, as a reader decodes them."""
        n = len(self.ts)
        if not n:
            return []
        maps = msgpack.unpackb(_PACKER.pack_array_header(n) + self.fields.tobytes(), raw=False,
                               strict_map_key=False)
        keys, procs = _plain(self.keys), _plain(self.procs)
        return [[t, *keys[k], *procs[p], f] for t, k, p, f in
                zip(self.ts.tolist(), self.key_of.tolist(), self.proc_of.tolist(), maps, strict=True)]
