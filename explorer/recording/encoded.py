"""Rows already encoded: a batch of MessagePack rows with their time and key columns, built from numpy columns.

A live capture at half a million events a second cannot afford a Python list and dict per event, nor packing
them one by one. Most of its events share one shape (an ioctl of one command: the same keys, the same constants,
a few integers that vary), so the rows are written straight from numpy columns: a `Template` is a row with
`Col` placeholders, and `encode` lays out every row's bytes at once, each integer in the smallest MessagePack
form, exactly as `msgpack.packb` would write it. `PackedRows` is what the writer stores (`append_packed`) and
what a live view decodes back into rows when it needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from ..events import R_DEVICE, R_KIND, R_PASID, R_TS, Row
from .columns import Key

_PACKER = msgpack.Packer(use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Col:
    """A placeholder in a template: the integer column of this name, or, with `texts`, a column of codes into
    `texts` (strings, or anything MessagePack packs, each encoded once)."""

    name: str


Template = Any  # a row (list / dict / scalars) in which `Col` placeholders stand for per-row values

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

    def fill(self, buf: np.ndarray, rows: np.ndarray, col: int, form: int) -> None:
        low, _, first, size = _FORMS[form]
        vals = self.values[rows]
        if first is None:  # a fixint is its own byte
            buf[:, col] = vals.astype(np.int8).view(np.uint8) if low < 0 else vals.astype(np.uint8)
            return
        buf[:, col] = first
        buf[:, col + 1:col + 1 + size] = vals.astype(f">{'i' if low < 0 else 'u'}{size}").view(np.uint8
                                                                                            ).reshape(-1, size)


class _Coded:
    """A column of codes, each standing for one value encoded once (a process name, a command name...); a row's
    form is its value's encoded length."""

    def __init__(self, codes: np.ndarray, values: list[Any]) -> None:
        self.codes = np.asarray(codes, np.int64)
        self.encoded = [_PACKER.pack(v) for v in values]
        widths = np.array([len(e) for e in self.encoded], np.int64)
        used = np.unique(widths[np.unique(self.codes)]) if len(self.codes) else widths[:1]
        self.uniform: int | None = int(used[0]) if len(used) == 1 else None
        self.form = None if self.uniform is not None else widths[self.codes]

    @property
    def lengths(self) -> np.ndarray:
        return self.form  # type: ignore[return-value]

    def width(self, form: int) -> int:
        return form

    def fill(self, buf: np.ndarray, rows: np.ndarray, col: int, form: int) -> None:
        table = np.zeros((len(self.encoded), form), np.uint8)
        for i, e in enumerate(self.encoded):
            if len(e) == form:
                table[i] = np.frombuffer(e, np.uint8)
        buf[:, col:col + form] = table[self.codes[rows]]


_Segment = _Const | _Ints | _Coded
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
        c = columns[t.name]
        parts.append(_Coded(*c) if isinstance(c, tuple) else _Ints(np.asarray(c)))
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
    """`n` rows of one template, laid out: `lengths` first, then `write` into a buffer at given row starts.

    Rows whose every column takes the same MessagePack form have the same layout: each such group is filled as
    one two-dimensional array (the constants copied in once, then a column slice per varying segment), in place
    when its rows lie next to each other, as a batch of one command does."""

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
            widths = [s.width(f) for s, f in zip(self.segments, forms, strict=True)]
            proto = np.zeros(sum(widths), np.uint8)  # the constants in place, once
            col = 0
            for s, w in zip(self.segments, widths, strict=True):
                if isinstance(s, _Const):
                    proto[col:col + w] = s.data
                col += w
            at = starts[rows]
            step, first = len(proto), int(at[0])
            together = int(at[-1]) - first == (len(rows) - 1) * step and bool((np.diff(at) == step).all())
            buf = out[first:first + len(rows) * step].reshape(-1, step) if together else \
                np.empty((len(rows), step), np.uint8)
            buf[:] = proto
            col = 0
            for s, f, w in zip(self.segments, forms, widths, strict=True):
                if not isinstance(s, _Const):
                    s.fill(buf, rows, col, f)
                col += w
            if not together:
                out[at[:, None] + np.arange(step)] = buf


_NINE = 0x99  # a MessagePack array of nine items
# The width of each MessagePack item by its first byte: ints, nil and fixstr; 0 where a capture writes no such item
# (str8 and str16, which carry their length after the first byte, are added in `_item_widths`).
_WIDTH = np.zeros(256, np.int64)
_WIDTH[0x00:0x80] = _WIDTH[0xE0:0x100] = _WIDTH[0xC0] = 1
_WIDTH[0xA0:0xC0] = 1 + np.arange(32)
for _b, _w in ((0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9), (0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9)):
    _WIDTH[_b] = _w
_STR8, _STR16 = 0xD9, 0xDA


def _item_widths(data: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    """The width of the item starting at each of `at`, or None when one is of a type a capture does not write."""
    first = data[at]
    width = _WIDTH[first]
    if bool((width == 0).any()):
        str8, str16 = first == _STR8, first == _STR16
        if bool((width == 0).sum() != str8.sum() + str16.sum()) or int(at.max()) + 3 > len(data):
            return None
        width[str8] = 2 + data[at[str8] + 1].astype(np.int64)
        width[str16] = 3 + (data[at[str16] + 1].astype(np.int64) << 8 | data[at[str16] + 2])
    return width


def _first_seen(codes: np.ndarray, table: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The entries of `table` that `codes` use, in order of first use, and each code renumbered into them."""
    used, first, of = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.uint32)
    rank[order] = np.arange(len(order), dtype=np.uint32)
    return [table[k] for k in used[order].tolist()], rank[of.reshape(-1)]


def _gather(data: np.ndarray, at: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The byte ranges `data[at[i]:at[i] + lengths[i]]`, back to back."""
    if len(at) > 1 and int(lengths.min()) == int(lengths.max()):  # rows of one layout: columns of a 2-D view
        step = int(at[1] - at[0])
        first, width = int(at[0]), int(lengths[0])
        if step >= width and int(at[-1]) - first == step * (len(at) - 1) and bool((np.diff(at) == step).all()):
            end = first + step * (len(at) - 1) + width
            grid = np.lib.stride_tricks.as_strided(data[first:end], (len(at), width),
                                                   (step * data.strides[0], data.strides[0]), writeable=False)
            return grid.reshape(-1)
    out_at = np.zeros(len(at), np.int64)
    np.cumsum(lengths[:-1], out=out_at[1:])
    return data[np.repeat(at - out_at, lengths) + np.arange(int(lengths.sum()))]


def _distinct_spans(data: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[list[Any] | None, np.ndarray]:
    """The rows' process items (cpu, pid, comm, source: the bytes from `start` to `end`) decoded once per distinct
    byte string, in order of first appearance, and each row's index among them; None when one does not decode."""
    width = end - start
    wide = int(width.max())
    if wide >= 1 << 16:
        return None, width
    # each row's bytes after its width (two bytes): spans that differ only in their padding differ
    grid = np.zeros((len(start), wide + 2), np.uint8)
    grid[:, 0], grid[:, 1] = width >> 8, width & 0xFF
    grid[:, 2:][np.arange(wide) < width[:, None]] = _gather(data, start, width)
    _, first, of = np.unique(grid.view(np.dtype((np.void, wide + 2))).reshape(-1), return_index=True,
                             return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.uint32)
    rank[order] = np.arange(len(order), dtype=np.uint32)
    spans = [grid[i, 2:2 + int(width[i])].tobytes() for i in first[order].tolist()]
    try:
        procs = [tuple(msgpack.unpackb(b"\x94" + s, raw=False)) for s in spans]
    except Exception:  # msgpack raises several unrelated types
        return None, rank
    return procs, rank[of.reshape(-1)]


@dataclass(frozen=True, slots=True)
class RowColumns:
    """Rows split into a format 3 chunk's columns: times, (kind, device, PASID) keys, (cpu, pid, comm, source)
    processes, and each row's packed fields map (`fields`, `flen` bytes each, back to back)."""

    ts: np.ndarray  # int64
    keys: list[Key]
    key_of: np.ndarray  # uint32
    procs: list[tuple[Any, Any, Any, Any]]
    proc_of: np.ndarray  # uint32
    fields: np.ndarray  # uint8
    flen: np.ndarray  # int64

    @classmethod
    def empty(cls) -> RowColumns:
        z = np.zeros(0, np.int64)
        return cls(z, [], z.astype(np.uint32), [], z.astype(np.uint32), z.astype(np.uint8), z)


@dataclass(frozen=True, slots=True)
class PackedRows:
    """Encoded rows in time order: `data[row_at[i]:row_at[i + 1]]` is row i as MessagePack, `ts` its time and
    `keys[key_of[i]]` its (kind, device, PASID)."""

    ts: np.ndarray  # int64
    keys: list[Key]
    key_of: np.ndarray  # uint32
    data: np.ndarray  # uint8
    row_at: np.ndarray  # int64, n + 1 offsets

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> PackedRows:
        return cls(np.zeros(0, np.int64), [], np.zeros(0, np.uint32), np.zeros(0, np.uint8), np.zeros(1, np.int64))

    @classmethod
    def of_rows(cls, rows: list[Row]) -> PackedRows:
        """Rows packed one by one: for the few rows that are not worth a template."""
        encoded = [_PACKER.pack(r) for r in rows]
        ids: dict[Key, int] = {}
        key_of = np.fromiter((ids.setdefault((r[R_KIND], r[R_DEVICE], r[R_PASID]), len(ids)) for r in rows),
                             np.uint32, len(rows))
        row_at = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=row_at[1:])
        return cls(np.fromiter((r[R_TS] for r in rows), np.int64, len(rows)), list(ids), key_of,
                   np.frombuffer(b"".join(encoded), np.uint8), row_at)

    @classmethod
    def assemble(cls, ts: np.ndarray, keys: list[Key], key_of: np.ndarray, parts: list[tuple[np.ndarray, Any]]
                 ) -> PackedRows:
        """Rows from several sources laid out in one buffer. `ts` and `key_of` are in the rows' final (time)
        order; `parts` are (the final positions of its rows, an `Encoded` or a list of encoded rows), together
        covering 0..n-1."""
        lengths = np.zeros(len(ts), np.int64)
        for pos, enc in parts:
            lengths[pos] = enc.lengths if isinstance(enc, Encoded) else [len(b) for b in enc]
        row_at = np.zeros(len(ts) + 1, np.int64)
        np.cumsum(lengths, out=row_at[1:])
        data = np.empty(int(row_at[-1]), np.uint8)
        for pos, enc in parts:
            if isinstance(enc, Encoded):
                enc.write(data, row_at[pos])
            else:
                for p, b in zip(row_at[pos].tolist(), enc, strict=True):
                    data[p:p + len(b)] = np.frombuffer(b, np.uint8)
        return cls(np.asarray(ts, np.int64), keys, np.asarray(key_of, np.uint32), data, row_at)

    def slice(self, i: int, j: int) -> PackedRows:
        """Rows i..j-1 (sharing this batch's memory)."""
        a, b = int(self.row_at[i]), int(self.row_at[j])
        return PackedRows(self.ts[i:j], self.keys, self.key_of[i:j], self.data[a:b], self.row_at[i:j + 1] - a)

    def compact(self) -> tuple[list[Key], np.ndarray]:
        """Only the keys these rows use, and the rows' indexes into them."""
        used, key_of = np.unique(self.key_of, return_inverse=True)
        return [self.keys[k] for k in used.tolist()], key_of.astype(np.uint32)

    @staticmethod
    def concat(batches: list[PackedRows]) -> PackedRows:
        """One batch of several, in the given order (a caller merging out-of-order batches sorts after)."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return PackedRows.empty()
        if len(batches) == 1:
            return batches[0]
        ids: dict[Key, int] = {}
        key_of = [np.array([ids.setdefault(k, len(ids)) for k in b.keys], np.uint32)[b.key_of] for b in batches]
        bases = np.cumsum([0] + [len(b.data) for b in batches[:-1]])
        row_at = np.concatenate([[0]] + [b.row_at[1:] + base for b, base in zip(batches, bases, strict=True)])
        return PackedRows(np.concatenate([b.ts for b in batches]), list(ids), np.concatenate(key_of),
                          np.concatenate([b.data for b in batches]), row_at)

    def sorted(self) -> PackedRows:
        """The same rows in time order (stable)."""
        if len(self.ts) < 2 or bool((np.diff(self.ts) >= 0).all()):
            return self
        order = np.argsort(self.ts, kind="stable")
        lengths = np.diff(self.row_at)[order]
        row_at = np.zeros(len(order) + 1, np.int64)
        np.cumsum(lengths, out=row_at[1:])
        gather = np.repeat(self.row_at[:-1][order] - row_at[:-1], lengths) + np.arange(int(row_at[-1]))
        return PackedRows(self.ts[order], self.keys, self.key_of[order], self.data[gather], row_at)

    def columns(self) -> RowColumns | None:
        """The rows split into a chunk's columns, as `numpy` arrays and tables of the distinct keys and processes
        in order of first appearance (the order a writer packing rows one by one finds them), without a Python
        object per row. None when a row is not nine items of the types a capture writes (ints, nil, strings)
        before its fields map: the caller then writes the rows themselves."""
        n = len(self.ts)
        data, starts = self.data, self.row_at[:-1]
        if not n or bool((data[starts] != _NINE).any()):
            return None if n else RowColumns.empty()
        at = starts + 1
        item_at = []
        for _ in range(8):  # the widths of items 0..7, all rows at once
            item_at.append(at)
            width = _item_widths(data, at)
            if width is None:
                return None
            at = at + width
        field_at, ends = at, self.row_at[1:]
        if bool((field_at >= ends).any()):
            return None
        keys, key_of = _first_seen(self.key_of, self.keys)
        try:  # as a reader reads them back: a str subclass (an enum's value) as the str it packs as
            keys = [tuple(k) for k in msgpack.unpackb(_PACKER.pack([list(k) for k in keys]), raw=False)]
        except Exception:  # msgpack raises several unrelated types
            return None
        procs, proc_of = _distinct_spans(data, item_at[4], field_at)
        if procs is None:
            return None
        flen = ends - field_at
        return RowColumns(self.ts, keys, key_of, procs, proc_of, _gather(data, field_at, flen), flen)

    def rows(self) -> list[Row]:
        """The rows as Python lists, as a reader decodes them."""
        if not len(self.ts):
            return []
        u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(self.data), 1 << 20))
        u.feed(self.data.tobytes())
        return list(u)
