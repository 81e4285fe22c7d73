"""Format 2 chunks: the events of a chunk as compressed columns, about 11 bytes an event on disk instead of 85.

A chunk's payload is still one msgpack map whose leading keys (`seq`, `t0`, `t1`, `n`, `counts`) a reader
walking a cut file reads without decompressing anything; its last key, `z`, maps column names to zstd frames:

  ts       each event's time minus the previous one's (the first: minus t0)            unsigned ints
  keys     msgpack list of the chunk's distinct [kind, device, pasid]
  key_of   each event's index into keys                                                unsigned ints
  procs    msgpack list of the chunk's distinct [cpu, pid, comm, source]
  proc_of  each event's index into procs                                               unsigned ints
  flen     each event's packed fields map's length in bytes                            unsigned ints
  fields   the packed fields maps, back to back (so that any one decodes alone)
  extra    optional: msgpack map {event position: [row items past the ninth]} (a newer writer's columns)

Unsigned ints are stored as one byte giving their width (1, 2, 4 or 8) and then their bytes split into planes
(all first bytes, then all second bytes, ...), which zstd compresses far better than interleaved integers.

Delta times, dictionary-coded keys and processes, and one shared frame for the field maps make the columns
small; the index reads only `ts`, `keys` and `key_of`, and the model decodes only the rows it replays. Nothing in
a chunk is trusted: every frame must declare its size, no more than `MAX_EXPANSION` times its own plus
`EXPANSION_ALLOWANCE` (a crafted frame cannot make a small file take gigabytes), and every column must have
exactly one entry per event. A writer pads a chunk that compresses below one byte an event, so that a reader may
refuse a chunk claiming more events than bytes (see footer.MIN_EVENT_BYTES).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from operator import itemgetter
from typing import Any

import msgpack
import numpy as np
import zstandard

from ..events import R_COMM, R_CPU, R_FIELDS, R_PASID, R_PID, R_SOURCE, Row
from ..schema import common_fit
from .columns import ChunkColumns
from .encoded import RowColumns
from .fieldmaps import FieldColumns, FieldRows, field_columns, field_maps

LEVEL = 3  # zstd level: level 3 writes 4,096 events in about 0.1 ms and gains little from more
MAX_EXPANSION = 256  # a frame may decompress to this many times its size ...
EXPANSION_ALLOWANCE = 1 << 20  # ... plus this many bytes
_TS_END = 1 << 63
_WIDTHS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_local = threading.local()  # zstd contexts are not to be shared between threads (the model runs in a worker)


class BadChunk(ValueError):
    """A format 2 chunk that passes its checksum but whose columns do not decode or do not fit its events."""


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def expansion_limit(compressed: int) -> int:
    return compressed * MAX_EXPANSION + EXPANSION_ALLOWANCE


def _declared(z: dict[Any, Any], name: str) -> tuple[bytes, int]:
    """A column's zstd frame and the size it declares, refused when it declares none or more than the expansion
    limit allows (nothing is decompressed)."""
    data = z.get(name)
    if not isinstance(data, bytes):
        raise BadChunk(f"column {name} is missing")
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as e:
        raise BadChunk(f"column {name} is not a zstd frame ({e})") from None
    if size < 0 or size > expansion_limit(len(data)):
        raise BadChunk(f"column {name} declares {'no' if size < 0 else size} decompressed bytes "
                       f"from {len(data)} (at most {expansion_limit(len(data))})")
    return data, size


def _decompressed(data: bytes, size: int, name: str) -> bytes:
    try:
        out = _decompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise BadChunk(f"column {name} does not decompress ({e})") from None
    if len(out) != size:
        raise BadChunk(f"column {name} decompresses to {len(out)} bytes, not the {size} it declares")
    return out


def _inflate(z: dict[Any, Any], name: str) -> bytes:
    return _decompressed(*_declared(z, name), name)


def _blocks_end_at_its_end(frame: bytes) -> bool:
    """Whether a zstd frame's blocks, read from their headers alone (RFC 8878 3.1.1), end where its bytes do: a
    frame cut short or run on fails this without being decompressed."""
    if len(frame) < 6 or frame[4] & 0x08:  # (the magic number is checked by `_declared`; 0x08: a reserved bit)
        return False
    descriptor = frame[4]
    single = descriptor >> 5 & 1
    at = 5 + (not single) + (0, 1, 2, 4)[descriptor & 3] + (single, 2, 4, 8)[descriptor >> 6]
    while at + 3 <= len(frame):
        header = int.from_bytes(frame[at:at + 3], "little")
        kind, size = header >> 1 & 3, header >> 3
        if kind == 3:  # reserved
            return False
        at += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if header & 1:  # the last block, then the checksum when the frame has one
            return at + 4 * (descriptor >> 2 & 1) == len(frame)
    return False


def _pack_uints(values: np.ndarray) -> bytes:
    """Non-negative ints in the narrowest width that holds them, split into byte planes."""
    top = int(values.max()) if len(values) else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    planes = values.astype(_WIDTHS[width]).view(np.uint8).reshape(-1, width).T
    return bytes([width]) + planes.tobytes()


def _unpack_uints(data: bytes, n: int, name: str) -> np.ndarray:
    width = data[0] if data else 0
    if width not in _WIDTHS or len(data) != 1 + width * n:
        raise BadChunk(f"column {name} holds {len(data)} bytes, not one of width {width} for {n} events")
    planes = np.frombuffer(data, np.uint8, offset=1).reshape(width, n)
    return np.ascontiguousarray(planes.T).view(_WIDTHS[width]).reshape(n)


def _list_of(z: dict[Any, Any], name: str, items: int) -> list[tuple[Any, ...]]:
    try:
        got = msgpack.unpackb(_inflate(z, name), raw=False, strict_map_key=False)
    except BadChunk:
        raise
    except Exception as e:  # msgpack raises several unrelated types
        raise BadChunk(f"column {name} is not msgpack ({e})") from None
    if not isinstance(got, list) or got and (set(map(type, got)) != {list} or set(map(len, got)) != {items}):
        raise BadChunk(f"column {name} is not a list of {items}-item lists")
    return list(map(tuple, got))


def _index(z: dict[Any, Any], name: str, n: int, table: int) -> np.ndarray:
    of = _unpack_uints(_inflate(z, name), n, name)
    if n and int(of.max()) >= table:
        raise BadChunk(f"column {name} points past its table of {table}")
    return of


# -- writing ---------------------------------------------------------------------------------------------------
def _plain_key(k: tuple[Any, Any, Any]) -> bool:
    """Types a dictionary of keys cannot confuse (True would be taken for 1, 1.0 for 1)."""
    kind, device, pasid = k
    return type(kind) is str and (device is None or type(device) is str) and (pasid is None or type(pasid) is int)


_INT_ITEMS = tuple(map(itemgetter, (R_PASID, R_CPU, R_PID)))
_PROC, _FIELDS = itemgetter(R_CPU, R_PID, R_COMM, R_SOURCE), itemgetter(R_FIELDS)
_INT_OR_NIL = {int, type(None)}


def _ints_where_ints_go(rows: list[Row]) -> bool:
    """Whether every row's PASID, CPU and pid is an int or nil. The tables of distinct keys and processes are
    dictionaries, which take True and 1.0 for 1: judging their entries alone would let a row's True stand under
    an earlier row's 1 and come back as 1, unrefused."""
    return all(set(map(type, map(item, rows))) <= _INT_OR_NIL for item in _INT_ITEMS)


def _plain_proc(p: tuple[Any, Any, Any, Any]) -> bool:
    cpu, pid, comm, source = p
    return (cpu is None or type(cpu) is int) and (pid is None or type(pid) is int) and \
        (comm is None or type(comm) is str) and (source is None or type(source) is str)


@dataclass(slots=True)
class Packer:
    """Encodes chunks; one per writer (a zstd context is not shared between threads)."""

    _z: zstandard.ZstdCompressor = field(default_factory=lambda: zstandard.ZstdCompressor(level=LEVEL))
    _mp: msgpack.Packer = field(default_factory=lambda: msgpack.Packer(use_bin_type=True))

    def _frame(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def chunk(self, rows: list[Row], meta: dict[str, Any], cols: ChunkColumns | None) -> bytes | None:
        """The payload of a chunk of time-sorted `rows` (`meta`: seq, t0, t1, n, counts; `cols`: their times and
        keys, `columns.columns_of`), or None when a row does not fit the columns (not a list of nine or more
        items, a time outside 0..2^63-1, a kind, device, PASID, CPU, pid, comm or source of a type a dictionary
        could confuse, field maps too repetitive for a reader to accept): the caller then writes the rows
        themselves, as format 1 does."""
        n = len(rows)
        if cols is None or not set(map(type, rows)) <= {list}:
            return None
        sizes = list(map(len, rows))
        if min(sizes, default=9) < 9 or not _ints_where_ints_go(rows):
            return None
        procs: defaultdict[tuple[Any, Any, Any, Any], int] = defaultdict(count().__next__)  # in first-seen order
        try:
            proc_of = np.fromiter(map(procs.__getitem__, map(_PROC, rows)), np.uint32, n)
        except TypeError:
            return None  # an unhashable CPU, pid, comm or source
        fields = list(map(self._mp.pack, map(_FIELDS, rows)))
        split = RowColumns(cols.ts, cols.keys, cols.key_of, list(procs), proc_of,
                           np.frombuffer(b"".join(fields), np.uint8), np.fromiter(map(len, fields), np.int64, n))
        extra = {j: rows[j][9:] for j, k in enumerate(sizes) if k > 9} if max(sizes, default=9) > 9 else None
        return self.columns_chunk(split, meta, extra)

    def columns_chunk(self, cols: RowColumns, meta: dict[str, Any], extra: dict[int, Row] | None = None
                      ) -> bytes | None:
        """The payload of a chunk of rows already split into columns (`PackedRows.columns`, or `chunk`'s), with
        `extra`: items past the ninth by row; None as for `chunk`."""
        ts, n = cols.ts, len(cols.ts)
        if n and (int(ts[0]) != meta["t0"] or int(ts[0]) < 0 or bool((ts[1:] < ts[:-1]).any())) or \
                not all(map(_plain_key, cols.keys)) or not all(map(_plain_proc, cols.procs)):
            return None  # times out of order (the writer sorts them) or keys a dictionary could confuse
        z = {
            "ts": self._frame(_pack_uints(np.diff(ts, prepend=ts[:1]).view(np.uint64))),
            "keys": self._frame(msgpack.packb([list(k) for k in cols.keys], use_bin_type=True)),
            "key_of": self._frame(_pack_uints(cols.key_of)),
            "procs": self._frame(msgpack.packb([list(p) for p in cols.procs], use_bin_type=True)),
            "proc_of": self._frame(_pack_uints(cols.proc_of)),
            "flen": self._frame(_pack_uints(cols.flen)),
            "fields": self._frame(cols.fields.tobytes()),
        }
        if len(cols.fields) > expansion_limit(len(z["fields"])):
            return None  # a reader would refuse it as a decompression bomb
        if extra:
            z["extra"] = self._frame(msgpack.packb(extra, use_bin_type=True))
        payload = msgpack.packb({**meta, "z": z}, use_bin_type=True)
        if len(payload) < n:  # a chunk of n events holds at least n bytes: readers may then bound n by the file
            payload = msgpack.packb({**meta, "pad": bytes(n - len(payload)), "z": z}, use_bin_type=True)
        return payload


# -- reading ---------------------------------------------------------------------------------------------------
def _columns_of(table: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """A table of `width`-item entries as `width` columns."""
    return [list(c) for c in zip(*table, strict=True)] if table else [[] for _ in range(width)]


class PackedChunk:
    """A format 2 chunk's columns, decompressed as they are needed: the index needs times and keys only, the
    model the rows it replays, a full read every row."""

    def __init__(self, z: Any, n: int, t0: int) -> None:
        if not isinstance(z, dict):
            raise BadChunk("its columns are not a map")
        self._z, self.n = z, n
        self._mp = msgpack.Packer(use_bin_type=True)
        deltas = _unpack_uints(_inflate(z, "ts"), n, "ts").astype(np.uint64)
        ts = np.cumsum(deltas, dtype=np.uint64)
        ts += np.uint64(t0)
        # Deltas are unsigned: a sum that wrapped around, or passed 2^63, shows as a step back or a top bit
        if n and (bool((ts[:-1] > ts[1:]).any()) or int(ts[-1]) >= _TS_END or int(deltas[0]) != 0):
            raise BadChunk("column ts does not add up to times in order from t0")
        keys = _list_of(z, "keys", 3)
        self.cols = ChunkColumns(ts.view(np.int64), keys, _index(z, "key_of", n, len(keys)))
        self._procs: list[tuple[Any, ...]] | None = None
        self._proc_of = np.zeros(0, np.uint32)  # (set, with the next two, by `check`)
        self._fields: bytes | None = None  # decompressed when a row is first decoded (`_field_bytes`)
        self._fields_frame = (b"", 0)  # its frame and the size it declares
        self._at = np.zeros(1, np.uint64)
        self._extra: dict[Any, Any] = {}
        self._fit: bool | None = None
        self._kinds: tuple[np.ndarray, list[str]] | None = None  # (see `_kind_codes`)

    def tables_fit(self) -> bool:
        """Whether every row's time, key, CPU, pid, comm and source fit the schema, judged once on what rows are
        made of: the ends of the times (in order, so they bound the rest), the distinct keys and processes. When
        they do, a row's fields (and machine) are all that is left to judge."""
        if self._fit is None:
            self.check()
            assert self._procs is not None
            ts = self.cols.ts
            ends = [int(ts[0]), int(ts[-1])] if self.n else []
            self._fit = common_fit(ends, *_columns_of(self.cols.keys, 3), *_columns_of(self._procs, 4))
        return self._fit

    def check(self) -> None:
        """BadChunk unless the columns rows need besides times and keys decompress and fit its events (once).
        The field maps, most of a chunk's bytes, are only checked to be a whole frame of the size their lengths
        add up to: they are decompressed, decoded and judged with the first rows read (opening a file reads
        none, so it decompresses a fifth of what it did)."""
        if self._procs is not None:
            return
        z, n = self._z, self.n
        procs = _list_of(z, "procs", 4)
        proc_of = _index(z, "proc_of", n, len(procs))
        fields = _declared(z, "fields")
        if not _blocks_end_at_its_end(fields[0]):
            raise BadChunk("column fields does not decompress (its blocks do not end where the frame does)")
        at = np.zeros(n + 1, np.uint64)
        np.cumsum(_unpack_uints(_inflate(z, "flen"), n, "flen"), out=at[1:])
        if int(at[-1]) != fields[1]:
            raise BadChunk(f"column flen adds up to {int(at[-1])} bytes, column fields holds {fields[1]}")
        extra: Any = {}
        if "extra" in z:
            try:
                extra = msgpack.unpackb(_inflate(z, "extra"), raw=False, strict_map_key=False)
            except BadChunk:
                raise
            except Exception as e:  # msgpack raises several unrelated types
                raise BadChunk(f"column extra is not msgpack ({e})") from None
            if not isinstance(extra, dict) or not all(type(k) is int and 0 <= k < n and isinstance(v, list)
                                                      for k, v in extra.items()):
                raise BadChunk("column extra is not a map of event positions to lists")
        self._proc_of, self._fields_frame, self._at, self._extra = proc_of, fields, at, extra
        self._procs = procs  # last: another thread reading the chunk takes it as the sign the rest are there

    def _field_bytes(self) -> bytes:
        """The field maps, decompressed once (BadChunk when they do not decompress)."""
        if self._fields is None:
            self._fields = _decompressed(*self._fields_frame, "fields")
        return self._fields

    def _field_maps(self, cols: ChunkColumns, positions: Sequence[int]) -> tuple[list[Any], list[int] | None]:
        """The field maps at `positions` and, when the chunk's tables fit the schema and it holds no items past
        the ninth (see `tables_fit`), the places (in that list) of the rows whose fields may break it, judged a
        layout at a time as they are decoded (`fieldmaps`); else None: every part of each row is still to judge.
        BadChunk when a map does not decode."""
        data = self._field_bytes()
        try:
            if not self._extra and self.tables_fit():
                at = np.arange(self.n) if isinstance(positions, range) and positions == range(self.n) \
                    else np.asarray(positions, np.intp)
                code_of, names = self._kind_codes(cols)
                return field_maps(data, self._at, at, code_of[cols.key_of[at]], names, self._unpack)
            if isinstance(positions, range) and positions == range(self.n):
                return msgpack.unpackb(self._mp.pack_array_header(self.n) + data, raw=False,
                                       strict_map_key=False), None
            view, at, j = memoryview(data), self._at, np.asarray(positions, np.intp)
            return [self._unpack(view[a:b]) for a, b in zip(at[j].tolist(), at[j + 1].tolist(), strict=True)], None
        except Exception as e:  # msgpack raises several unrelated types
            raise BadChunk(f"column fields does not decode ({e})") from None

    def field_columns(self, cols: ChunkColumns, positions: np.ndarray, wanted: frozenset[str],
                      names: tuple[str, ...]) -> FieldColumns | None:
        """The field maps at `positions` of the kinds `wanted` read as columns of `names` without decoding them
        (`fieldmaps.field_columns`), or None when the chunk's tables do not fit the schema or it holds items
        past the ninth (its rows are then judged whole as they are decoded). BadChunk as `check`."""
        got = self.field_rows(cols, positions)
        return None if got is None else field_columns(*got, wanted, names)

    def field_rows(self, cols: ChunkColumns, positions: np.ndarray) -> FieldRows | None:
        """What `field_columns` reads the rows at `positions` from (None as there). BadChunk as `check`."""
        self.check()
        data = self._field_bytes()
        if self._extra or not self.tables_fit():
            return None
        code_of, kinds = self._kind_codes(cols)
        return data, self._at, positions, code_of[cols.key_of[positions]], kinds

    def _kind_codes(self, cols: ChunkColumns) -> tuple[np.ndarray, list[str]]:
        """Each key's kind as a number, and the kinds by number (once a chunk: the model reads its rows in a few
        calls, always with the chunk's own columns)."""
        if self._kinds is None:
            names: dict[str, int] = {}
            code_of = np.array([names.setdefault(kind, len(names)) for kind, _, _ in cols.keys], np.int64)
            self._kinds = (code_of, list(names))
        return self._kinds

    def pids(self, positions: list[int]) -> list[Any]:
        """The pid of each row at `positions`, as `rows_at` makes it (its process's). BadChunk as `check`."""
        self.check()
        assert self._procs is not None
        pid_of = [proc[1] for proc in self._procs]
        return [pid_of[p] for p in self._proc_of[positions].tolist()]

    @staticmethod
    def _unpack(data: memoryview) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def rows(self) -> tuple[list[Row], list[int] | None]:
        """Every row, as format 1 stores them, with the places of those that may break the schema when they
        were judged as they were decoded (see `rows_at`); BadChunk when a column does not decode."""
        return self.rows_at(self.cols, range(self.n))

    def rows_at(self, cols: ChunkColumns, positions: Sequence[int]) -> tuple[list[Row], list[int] | None]:
        """The rows at `positions`, their times and keys taken from `cols` (the chunk's own: see ChunkHead), and
        the places (in that list) of the rows that may break the schema, or None (see `_field_maps`). Only their
        entries of each column become Python objects, however big the chunk."""
        self.check()
        assert self._procs is not None
        keys, procs = cols.keys, self._procs
        at: slice | np.ndarray = slice(None) if isinstance(positions, range) and positions == range(self.n) \
            else np.asarray(positions, np.intp)
        fields, suspected = self._field_maps(cols, positions)
        out = [[t, *keys[k], *procs[p], f] for t, k, p, f in zip(cols.ts[at].tolist(), cols.key_of[at].tolist(),
                                                                 self._proc_of[at].tolist(), fields, strict=True)]
        if self._extra:
            place = {j: p for p, j in enumerate(positions) if j in self._extra}
            for j, p in place.items():
                out[p].extend(self._extra[j])
        return out, suspected
