"""Field maps decoded a layout at a time, and judged by the schema from their bytes.

A chunk's rows of one kind mostly carry maps of one layout: the same names in the same order, each value of the
same MessagePack type and width (a page request's `prg`, `addr`, `perm`, `last`, `needs_pasid`). Decoding them one
call a row costs a call and a slice per row, and judging them as Python values a pass over each. Here the rows of
one kind and byte length are laid side by side as a two-dimensional array, and the first one's layout (or one met
in an earlier chunk) is checked against every row at once: the names, headers and type bytes must be equal, a
fixint or a bool must stay one. Rows that have it hold one item each of exactly that many bytes, so all of them
decode in one call, and the schema judges each name's values from the layout (their class) and the array (their
least and greatest: `schema.Known`). Rows no layout covers (small groups, bin and ext values, names that are not
strings) are decoded and judged one by one, as before, and fail there first, in order, when they do not decode.
A nested map's layout holds text names only, so the schema judges an `args` map from its layout (`NamedMap`)
without making it; `field_columns` reads numbers, bools and ASCII text as columns from rows it need not decode.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgpack
import numpy as np

from ..schema import Known, NamedMap, fields_suspects, shape_suspects

MIN_GROUP = 16  # rows of one kind and length below which decoding them one by one costs less
_LAYOUTS_PER_GROUP = 3  # layouts tried on the rows of one kind and length before the rest go one by one
_DEPTH = 16  # maps and arrays nested deeper are decoded one by one
_NUMBERS = {0xCC: ">u1", 0xCD: ">u2", 0xCE: ">u4", 0xCF: ">u8", 0xD0: ">i1", 0xD1: ">i2", 0xD2: ">i4",
            0xD3: ">i8", 0xCA: ">f4", 0xCB: ">f8"}
_PACKER = msgpack.Packer()
Unpack = Callable[[memoryview], Any]


class _Unsupported(Exception):
    """A map whose layout this module does not take: its rows are decoded one by one."""


@dataclass(slots=True)
class _Reading:
    """A layout as it is read: the bits every row must have, byte by byte (`mask`: which bits, `value`: what they
    are; every bit of a byte that must be equal, the sign bits of a fixint, all but the lowest of a bool), and where
    its strings' text lies (`texts`: start, length)."""

    mask: bytearray
    value: bytearray
    texts: list[tuple[int, int]] = field(default_factory=list)

    def fixed(self, start: int, data: bytes) -> None:
        self.mask[start:start + len(data)] = b"\xff" * len(data)
        self.value[start:start + len(data)] = data

    def bits(self, at: int, mask: int, value: int) -> None:
        self.mask[at], self.value[at] = mask, value


# A value as the schema sees it: its class and, for a number, where it lies and its numpy type (NamedMap: a map,
# its names text; None: nil or a list, whose values are made to judge them)
Value = tuple[type, int, str] | None


def _length(data: bytes, at: int, size: int) -> int:
    if at + size > len(data):
        raise _Unsupported
    return int.from_bytes(data[at:at + size], "big")


def _str_head(data: bytes, at: int) -> tuple[int, int]:
    """A string's header width and length at `at`; (0, 0) when no string starts there."""
    c = data[at] if at < len(data) else 0
    if 0xA0 <= c <= 0xBF:
        return 1, c & 0x1F
    if c in (0xD9, 0xDA, 0xDB):
        head = 2 if c == 0xD9 else 3 if c == 0xDA else 5
        return head, _length(data, at + 1, head - 1)
    return 0, 0


def _item(data: bytes, at: int, out: _Reading, depth: int) -> tuple[Value, int]:
    """Read the item at `at` into `out`: its value as the schema sees it, and where the next item starts."""
    if at >= len(data) or depth > _DEPTH:
        raise _Unsupported
    c = data[at]
    if c <= 0x7F or c >= 0xE0:  # a fixint (0x00-0x7f, 0xe0-0xff)
        out.bits(at, *((0x80, 0) if c <= 0x7F else (0xE0, 0xE0)))
        return (int, at, "u1" if c <= 0x7F else "i1"), at + 1
    if c in (0xC2, 0xC3):
        out.bits(at, 0xFE, 0xC2)
        return (bool, at, ""), at + 1
    out.fixed(at, data[at:at + 1])
    if c == 0xC0:
        return None, at + 1
    if c in _NUMBERS:
        kind = _NUMBERS[c]
        return (float if kind[1] == "f" else int, at + 1, kind), at + 1 + int(kind[2])
    head, size = _str_head(data, at)
    if head:
        out.fixed(at + 1, data[at + 1:at + head])
        out.texts.append((at + head, size))
        return (str, at, ""), at + head + size
    if 0x80 <= c <= 0x9F or c in (0xDC, 0xDD, 0xDE, 0xDF):  # a map or an array
        is_map = c <= 0x8F or c >= 0xDE
        head = 1 if c <= 0x9F else 3 if c in (0xDC, 0xDE) else 5
        n = c & 0x0F if c <= 0x9F else _length(data, at + 1, head - 1)
        out.fixed(at + 1, data[at + 1:at + head])
        value: Value = (NamedMap, at, "") if is_map else None
        at += head
        for _ in range(n):
            if is_map:
                at = _name(data, at, out)[1]
            at = _item(data, at, out, depth + 1)[1]
        return value, at
    raise _Unsupported  # bin, ext, and 0xc1 (never used)


def _name(data: bytes, at: int, out: _Reading) -> tuple[str, int]:
    """A map's name at `at` (a string, the same in every row), and where its value starts."""
    head, size = _str_head(data, at)
    if not head or at + head + size > len(data):
        raise _Unsupported
    out.fixed(at, data[at:at + head + size])
    try:
        return sys.intern(data[at + head:at + head + size].decode()), at + head + size
    except UnicodeDecodeError:
        raise _Unsupported from None


@dataclass(frozen=True, slots=True)
class Layout:
    """A field map's layout: the bits `mask` of a row's bytes are `value` in every row that has it; its top-level
    names and their values as the schema sees them."""

    mask: np.ndarray  # uint8, one a byte
    value: np.ndarray
    names: tuple[str, ...]
    values: tuple[Value, ...]
    texts: tuple[tuple[int, int], ...]  # where its strings' text lies (start, length), at any depth

    @classmethod
    def read(cls, data: bytes) -> Layout:
        """The layout of one field map (a map with distinct string names at its top); _Unsupported otherwise."""
        out = _Reading(bytearray(len(data)), bytearray(len(data)))
        c = data[0] if data else 0
        if not (0x80 <= c <= 0x8F or c in (0xDE, 0xDF)):
            raise _Unsupported
        head = 1 if c <= 0x8F else 3 if c == 0xDE else 5
        n = c & 0x0F if c <= 0x8F else _length(data, 1, head - 1)
        out.fixed(0, data[:head])
        at, names, values = head, [], []
        for _ in range(n):
            name, at = _name(data, at, out)
            value, at = _item(data, at, out, 1)
            names.append(name)
            values.append(value)
        if at != len(data) or len(set(names)) != n:
            raise _Unsupported
        return cls(np.frombuffer(out.mask, np.uint8), np.frombuffer(out.value, np.uint8), tuple(names),
                   tuple(values), tuple(out.texts))

    def fits(self, grid: np.ndarray) -> np.ndarray:
        """Which rows of `grid` (a map a row, each of the layout's length) have this layout."""
        wrong = grid & self.mask
        wrong ^= self.value
        n, size = grid.shape  # (numpy's reductions along a row of a few dozen bytes are slow: a row's bytes or-ed)
        return np.bitwise_or.reduceat(wrong.reshape(-1), np.arange(0, n * size, size)) == 0

    def columns(self, grid: np.ndarray, maps: Callable[[], list[dict[str, Any]]]) -> dict[str, list[Any] | Known]:
        """Each top-level name's values in `maps()` (decoded from the rows of `grid`, which all have this layout,
        only if a rule must see each value) as the schema judges them: known from the array where they are
        numbers, strings or bools."""
        out: dict[str, list[Any] | Known] = {}
        for name, value in zip(self.names, self.values, strict=True):
            values = _values(maps, name)
            if value is None:
                out[name] = values()
            else:
                out[name] = Known(value[0], _bounds(grid, value[1], value[2]), values)
        return out


def _given(maps: list[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    return lambda: maps


def _values(maps: Callable[[], list[dict[str, Any]]], name: str) -> Callable[[], list[Any]]:
    return lambda: list(map(itemgetter(name), maps()))


def _bounds(grid: np.ndarray, at: int, kind: str) -> Callable[[], tuple[Any, Any]]:
    """The least and greatest of the numbers at `at` of each row of `grid` (`kind`: their numpy type)."""
    def bounds() -> tuple[Any, Any]:
        width = int(kind[-1])
        column = np.ascontiguousarray(grid[:, at:at + width]).view(kind).reshape(-1)
        return column.min().item(), column.max().item()
    return bounds


_known: dict[int, tuple[Layout, ...]] = {}  # layouts met lately, by byte length, the latest first
_KNOWN_PER_LENGTH = 4
_KNOWN_LENGTHS = 1024


def _layout_of(grid: np.ndarray) -> tuple[Layout, np.ndarray]:
    """The layout of the map `grid`'s first row holds, and which rows of `grid` have it: one met lately (a chunk's
    maps mostly have the layouts of the chunk's before), else read from its bytes. _Unsupported when it has none
    this module takes."""
    known = _known.get(grid.shape[1], ())
    for layout in known:
        fits = layout.fits(grid)
        if fits[0]:
            return layout, fits
    found = Layout.read(grid[0].tobytes())
    if len(_known) >= _KNOWN_LENGTHS:
        _known.clear()
    _known[grid.shape[1]] = (found, *known[:_KNOWN_PER_LENGTH - 1])
    return found, found.fits(grid)


def _groups(kind_codes: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The rows (indices) of each kind and length, with that kind code and length."""
    key = kind_codes.astype(np.int64) << 32 | lengths
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
    return [(int(ordered[a]) >> 32, int(ordered[a]) & 0xFFFFFFFF, order[a:b])
            for a, b in zip([0, *cuts], [*cuts, len(key)], strict=True)]


def _by_layouts(grid: np.ndarray, members: np.ndarray, kind: str, maps: list[Any], suspects: list[int]
                ) -> np.ndarray:
    """Decode the rows of one kind and length (`members`, their bytes the rows of `grid`) that have a layout into
    `maps`, adding to `suspects` those whose fields may break the schema; the members left to decode one by one."""
    for _ in range(_LAYOUTS_PER_GROUP):
        if len(members) < MIN_GROUP:
            break
        try:
            layout, fits = _layout_of(grid)
            rows = grid if bool(fits.all()) else grid[fits]
            # each row one item of exactly its bytes (the layout says so): all of them decode in one call (ValueError,
            # or msgpack's errors, when one does not: a string that is not UTF-8)
            decoded = msgpack.unpackb(_PACKER.pack_array_header(len(rows)) + rows.tobytes(), raw=False,
                                      strict_map_key=False)
        except (_Unsupported, ValueError, msgpack.UnpackException):
            break
        done = members.tolist() if rows is grid else members[fits].tolist()
        for i, m in zip(done, decoded, strict=True):
            maps[i] = m
        suspects += shape_suspects(kind, layout.columns(rows, _given(decoded)), done)
        members, grid = (members[:0], grid[:0]) if rows is grid else (members[~fits], grid[~fits])
    return members


def field_maps(fields: bytes, at: np.ndarray, positions: np.ndarray, kind_codes: np.ndarray, kinds: list[str],
               unpack: Unpack) -> tuple[list[Any], list[int]]:
    """The field maps at `positions` (each `fields[at[j]:at[j + 1]]`, of kind `kinds[kind_codes[i]]`), and the
    places (in that list) of those that may break the schema. Rows no layout covers are decoded one by one with
    `unpack`, whose exceptions pass through, at the first such row in order."""
    n = len(positions)
    if not n:
        return [], []
    maps: list[Any] = [None] * n
    suspects: list[int] = []
    starts = at[positions].astype(np.int64)
    lengths = at[positions + 1].astype(np.int64) - starts
    alone = []
    for code, length, members in _groups(kind_codes, lengths):
        if len(members) >= MIN_GROUP and length:
            # every `length` bytes of the column, one a row (a view), of which the group's rows are copied out
            grid = np.ndarray((len(fields) - length + 1, length), np.uint8, fields, strides=(1, 1))[starts[members]]
            members = _by_layouts(grid, members, kinds[code], maps, suspects)
        alone.append(members)
    rest = np.sort(np.concatenate(alone)).tolist()
    if rest:
        view = memoryview(fields)
        ends = (starts[rest] + lengths[rest]).tolist()
        decoded = [unpack(view[a:b]) for a, b in zip(starts[rest].tolist(), ends, strict=True)]
        for i, m in zip(rest, decoded, strict=True):
            maps[i] = m
        if set(map(type, decoded)) <= {dict, type(None)}:
            codes = kind_codes[rest].tolist()
            suspects += [rest[k] for k in fields_suspects([kinds[c] for c in codes], decoded)]
        else:
            suspects += rest
    return maps, sorted(set(suspects))


# A name's values as `field_columns` reads them: their class (ABSENT: the map lacks the name; TEXT: its number is
# the text's place in `FieldColumns.texts`; OTHER: nil, a float, a map, a list or an int past 2^63 - 1, whose
# value is not read)
ABSENT, INT, BOOL, OTHER, TEXT = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class FieldColumns:
    """Field maps read as columns without decoding them: which rows were read (a layout covers them and the schema
    suspects nothing of their fields), and, for each name asked, every row's value and its class (an int64 and
    an int8 column; a row's entries mean something only where it was read)."""

    read: np.ndarray  # bool
    values: dict[str, tuple[np.ndarray, np.ndarray]]
    texts: list[str]  # the texts read, by number

    def __getitem__(self, at: slice) -> FieldColumns:
        return FieldColumns(self.read[at], {k: (v[at], c[at]) for k, (v, c) in self.values.items()}, self.texts)


def _text_fits(layout: Layout, grid: np.ndarray) -> bool:
    """Whether every top-level value of the layout is a number, a bool, text or a map (no nil, no list), and all
    its text, at any depth, is ASCII in every row of `grid` (so that each row decodes): what a row must hold to be
    read without decoding it."""
    return None not in layout.values and not any(
        size and bool((grid[:, at:at + size] >= 0x80).any()) for at, size in layout.texts)


def _column(grid: np.ndarray, value: Value, texts: list[str]) -> tuple[np.ndarray, np.ndarray | int]:
    """A top-level value's column (int64) in the rows of `grid`, and its class (one for all, or each row's); the
    distinct texts of a text column are added to `texts` (ASCII: `_text_fits`)."""
    assert value is not None
    cls, at, kind = value
    if cls is bool:
        return grid[:, at].astype(np.int64) - 0xC2, BOOL
    if cls is str:
        head, size = _str_head(grid[0].tobytes(), at)
        if not size:
            texts.append("")
            return np.full(len(grid), len(texts) - 1, np.int64), TEXT
        text = np.ascontiguousarray(grid[:, at + head:at + head + size]).view(np.dtype((np.void, size))).reshape(-1)
        distinct, number = np.unique(text, return_inverse=True)
        texts += [t.tobytes().decode() for t in distinct]
        return number.astype(np.int64) + (len(texts) - len(distinct)), TEXT
    if cls is not int:
        return np.zeros(len(grid), np.int64), OTHER
    if kind in ("u1", "i1"):
        return grid[:, at].view(kind).astype(np.int64), INT
    column = np.ascontiguousarray(grid[:, at:at + int(kind[-1])]).view(kind).reshape(-1).astype(np.int64)
    return column, INT if kind != ">u8" else np.where(column < 0, OTHER, INT).astype(np.int8)  # (past 2^63 - 1)


def field_columns(fields: bytes, at: np.ndarray, positions: np.ndarray, kind_codes: np.ndarray, kinds: list[str],
                  wanted: frozenset[str], names: tuple[str, ...]) -> FieldColumns:
    """The field maps at `positions` (as `field_maps` takes them) of the kinds `wanted` read as columns of
    `names`, from the rows a layout covers and whose fields the schema, judging them a layout at a time as
    `field_maps` does, does not suspect. Other rows are left unread: they are decoded (`field_maps`) as before."""
    n = len(positions)
    read = np.zeros(n, bool)
    out = {name: (np.zeros(n, np.int64), np.zeros(n, np.int8)) for name in names}
    texts: list[str] = []
    starts = at[positions].astype(np.int64)
    lengths = at[positions + 1].astype(np.int64) - starts
    for code, length, members in _groups(kind_codes, lengths) if n else ():
        if kinds[code] not in wanted or len(members) < MIN_GROUP or not length:
            continue
        grid = np.ndarray((len(fields) - length + 1, length), np.uint8, fields, strides=(1, 1))[starts[members]]
        for _ in range(_LAYOUTS_PER_GROUP):
            if len(members) < MIN_GROUP:
                break
            try:
                layout, fits = _layout_of(grid)
            except _Unsupported:
                break
            every = bool(fits.all())
            rows, done = (grid, members) if every else (grid[fits], members[fits])
            if _text_fits(layout, rows):
                try:
                    suspect = shape_suspects(kinds[code], layout.columns(rows, _decoder(rows)), list(range(len(rows))))
                except (ValueError, msgpack.UnpackException):
                    suspect = list(range(len(rows)))
                read[done] = True
                if suspect:
                    read[done[suspect]] = False
                for name, value in zip(layout.names, layout.values, strict=True):
                    if name in out:
                        column, cls = _column(rows, value, texts)
                        out[name][0][done], out[name][1][done] = column, cls
            if every:
                break
            members, grid = members[~fits], grid[~fits]
    return FieldColumns(read, out, texts)


# Rows as `field_columns` takes them: the field maps' bytes, where each map lies, the positions to read, each one's
# kind code and the kinds by code
FieldRows = tuple[bytes, np.ndarray, np.ndarray, np.ndarray, list[str]]


def field_columns_together(parts: list[FieldRows], wanted: frozenset[str], names: tuple[str, ...]
                           ) -> list[FieldColumns]:
    """`field_columns` of several chunks' rows in one pass, one FieldColumns a part. The layouts' work is per group
    of rows of one kind and byte length: a few chunks' rows, in fewer and bigger groups, cost a third less. (A row
    may then be read here that a chunk alone leaves to decode, where its group is small: the values are the same.)"""
    kinds: dict[str, int] = {}
    fields, at, positions, codes = [], [], [], []
    offset = rows = 0
    for data, starts, places, code, names_of in parts:
        fields.append(data)
        at.append(starts[:-1].astype(np.int64) + offset)
        positions.append(places.astype(np.int64) + rows)
        codes.append(np.array([kinds.setdefault(kind, len(kinds)) for kind in names_of], np.int64)[code])
        offset, rows = offset + len(data), rows + len(starts) - 1
    whole = field_columns(b"".join(fields), np.append(np.concatenate(at), offset), np.concatenate(positions),
                          np.concatenate(codes), list(kinds), wanted, names)
    cuts = np.cumsum([len(part[2]) for part in parts]).tolist()
    return [whole[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]


def _decoder(rows: np.ndarray) -> Callable[[], list[dict[str, Any]]]:
    """The maps of `rows` (each one item of exactly its bytes), decoded when first asked for."""
    got: list[list[dict[str, Any]]] = []

    def maps() -> list[dict[str, Any]]:
        if not got:
            got.append(msgpack.unpackb(_PACKER.pack_array_header(len(rows)) + rows.tobytes(), raw=False,
                                       strict_map_key=False))
        return got[0]
    return maps
