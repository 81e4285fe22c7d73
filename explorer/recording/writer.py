"""Writes recordings as events arrive, chunk by chunk, so that a capture killed at any moment keeps its past."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any, BinaryIO

import msgpack
import numpy as np

from ..events import R_DEVICE, R_KIND, R_TS, Event, Row
from ..outputs import open_recording
from .columns import ChunkColumns, columns_of, pack
from .encoded import PackedRows
from .framing import MAGIC, TAG_CHUNK, TAG_FOOTER, TAG_HEADER, frame, tail
from .header import MERGED_VERSION, PACKED_VERSION, DeviceInfo, Header
from .packed import Packer

DEFAULT_CHUNK_EVENTS = 4096

ChunkListener = Callable[[list[int], "np.ndarray | None"], None]
"""Told of each chunk once it is in the file: its footer entry (offset, length, t0, t1, n) and, when sorting by
time moved rows, `order`: the chunk's i-th row is the `order[i]`-th of those appended for it."""


class RecordingWriter:
    """Append events; each full chunk goes to disk at once (and to stable storage when `durable`, or at most every
    `sync_every_s`: an fsync per chunk stalls a capture draining half a million events a second).

    Events inside a chunk are sorted by time. `close()` writes the footer index and the tail; without them the
    reader still recovers every complete chunk.

    Rows go in one at a time (`append_row`) or a batch at a time (`extend_rows`, for a consumer that decodes
    many at once: one call per batch, and whole chunks are cut from it without a Python call per row).
    By default chunks are compressed columns (`packed`, format version 3), or rows for a chunk whose rows do not
    fit them; `compress=False` writes rows only, which explorers before version 3 read (version 1, or 2 for a
    merged recording).

    `on_chunk` (a `ChunkListener`) lets a reader follow the file as it is written (`live -o` reads its older rows
    back from its own output).
    """

    def __init__(self, path: str | os.PathLike[str] | BinaryIO, header: Header, *,
                 chunk_events: int = DEFAULT_CHUNK_EVENTS, durable: bool = False,
                 compress: bool = True, sync_every_s: float | None = None, replace: bool = True) -> None:
        if isinstance(path, (str, os.PathLike)):  # (`replace` False: a file there that is not empty is kept)
            self.path = str(path)
            self._f: BinaryIO = open_recording(path, replace=replace)  # owned, closed in close()
            self._owns_file = True
        else:
            self.path = str(getattr(path, "name", "<stream>"))
            self._f = path
            self._owns_file = False
        self.header = header
        self.chunk_events = chunk_events
        self.durable = durable
        self.sync_every_s = sync_every_s  # fsync at most this often (and at close) instead of every chunk
        self._synced = -math.inf
        self._packer = Packer() if compress else None
        self._rows: list[Row] = []
        self._packed: list[PackedRows] = []  # encoded batches not yet in a chunk, before `_rows`
        self._npacked = 0
        self._index: list[Row] = []
        self._counts: Counter[str] = Counter()
        self._devices = {d.name: d for d in header.devices}
        self._offset = 0
        self.events_written = 0
        self.closed = False
        self.on_chunk: ChunkListener | None = None
        self._write(MAGIC)
        # The version this file needs, whatever the header was read from: rows, merged rows, or compressed columns
        rows_version = MERGED_VERSION if len(header.machines) > 1 else 1
        head = {**header.to_dict(), "version": PACKED_VERSION if compress else rows_version}
        self._write(frame(TAG_HEADER, msgpack.packb(head, use_bin_type=True)))
        self._sync()

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._offset += len(data)

    def _sync(self, final: bool = False) -> None:
        """Hand what is written to the kernel (a killed writer keeps it); to stable storage when `durable`, or
        when `sync_every_s` has passed since the last time, or at the end."""
        self._f.flush()
        now = time.monotonic()
        if self.durable or (self.sync_every_s is not None and (final or now - self._synced >= self.sync_every_s)):
            os.fsync(self._f.fileno())
            self._synced = now

    def append(self, event: Event) -> None:
        self.append_row(event.to_row())

    def append_row(self, row: Row) -> None:
        self._rows.append(row)
        if len(self._rows) + self._npacked >= self.chunk_events:  # (`pending`, without a property's call per row)
            self.flush()

    def extend_rows(self, rows: list[Row]) -> None:
        """Append a batch of rows (`Event.to_row` lists); full chunks are written as the batch fills them."""
        if self._packed:
            self._rows.extend(rows)
            self._take_rows()
            self._cut_packed()
            return
        at = 0
        while at < len(rows):
            take = min(len(rows) - at, self.chunk_events - len(self._rows))
            self._rows.extend(rows[at:at + take] if at or take < len(rows) else rows)
            at += take
            if len(self._rows) >= self.chunk_events:
                self.flush()

    def extend(self, events: Any) -> None:
        for ev in events:
            self.append(ev)

    def add_device(self, device: DeviceInfo) -> None:
        """Devices found after the header was written go into the footer's table."""
        self._devices[device.name] = device

    def append_packed(self, rows: PackedRows) -> None:
        """Append rows a live capture encoded in bulk (in time order). Their chunks are written from the batches'
        columns (`PackedRows.columns`) without decoding a row, and hold the same bytes as the rows appended one
        by one would."""
        if self._packer is None:
            self.extend_rows(rows.rows())
            return
        self._take_rows()
        self._packed.append(rows)
        self._npacked += len(rows)
        self._cut_packed()

    def _cut_packed(self) -> None:
        """Write the whole chunks the encoded batches hold."""
        if self._npacked < self.chunk_events:
            return
        batch, at = PackedRows.concat(self._packed), 0
        while len(batch) - at >= self.chunk_events:
            self._store_packed(batch.slice(at, at + self.chunk_events))
            at += self.chunk_events
        self._packed, self._npacked = [batch.slice(at, len(batch))], len(batch) - at

    def _take_rows(self) -> None:
        """Rows appended one by one after packed ones join them, so that they stay in the order appended. Rows the
        columns cannot hold (not a capture's) are written at once, with the batches before them, as rows."""
        if not self._rows:
            return
        try:
            batch = PackedRows.of_rows(self._rows)
        except ValueError:  # (through extend_rows' row path, cut at chunk_events however many there are)
            rows = PackedRows.concat(self._packed).rows() + self._rows
            self._packed, self._npacked, self._rows = [], 0, []
            self.extend_rows(rows)
            return
        self._packed.append(batch)
        self._npacked += len(batch)
        self._rows = []

    @property
    def chunks_written(self) -> int:
        return len(self._index)

    @property
    def pending(self) -> int:
        return self._npacked + len(self._rows)

    def flush(self) -> None:
        """Write buffered events as one chunk now (a live capture calls this on a timer too)."""
        if self._packed:
            self._take_rows()
            batch = PackedRows.concat(self._packed)
            self._packed, self._npacked = [], 0
            if len(batch):
                self._store_packed(batch)
        self._flush_rows()

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        ts = list(map(itemgetter(R_TS), self._rows))
        order = sorted(range(len(ts)), key=ts.__getitem__)  # stable, as the rows' sort
        rows = list(map(self._rows.__getitem__, order))
        self._rows = []
        self._store_rows(rows, columns_of(rows), _moved(np.array(order)))

    def _store_rows(self, rows: list[Row], cols: ChunkColumns | None, order: np.ndarray | None) -> None:
        counts = cols.counts() if cols is not None else Counter(r[R_KIND] for r in rows)
        devices = (k[1] for k in cols.keys) if cols is not None else (r[R_DEVICE] for r in rows)
        chunk = self._chunk_meta(rows[0][R_TS], rows[-1][R_TS], len(rows), counts, devices)
        payload = self._packer.chunk(rows, chunk, cols) if self._packer is not None else None
        self._store(chunk, payload if payload is not None else self._row_chunk(rows, chunk, cols), order)

    def _store_packed(self, appended: PackedRows) -> None:
        """A chunk of encoded rows, sorted by time, from their columns (as rows when the packer cannot take
        them: see `Packer.columns_chunk`)."""
        assert self._packer is not None
        batch = appended.sorted()
        order = None if batch is appended else _moved(np.argsort(appended.ts, kind="stable"))
        split = batch.columns()
        cols = ChunkColumns(split.ts, split.keys, split.key_of)
        chunk = self._chunk_meta(int(split.ts[0]), int(split.ts[-1]), len(batch), cols.counts(),
                                 (k[1] for k in split.keys))
        payload = self._packer.columns_chunk(split, chunk)
        self._store(chunk, payload if payload is not None else self._row_chunk(batch.rows(), chunk, cols), order)

    def _chunk_meta(self, t0: int, t1: int, n: int, counts: dict[str, int], devices: Iterable[Any]
                    ) -> dict[str, Any]:
        """A chunk's leading keys; counts its kinds and devices into the footer's."""
        self._counts.update(counts)
        for dev in devices:
            if dev is not None and dev not in self._devices:
                self._devices[dev] = DeviceInfo(dev)
        return {"seq": len(self._index), "t0": t0, "t1": t1, "n": n, "counts": dict(counts)}

    def _store(self, chunk: dict[str, Any], payload: bytes, order: np.ndarray | None) -> None:
        self._index.append([self._offset, len(payload), chunk["t0"], chunk["t1"], chunk["n"]])
        self._write(frame(TAG_CHUNK, payload))
        self.events_written += chunk["n"]
        self._sync()
        if self.on_chunk is not None:
            self.on_chunk(self._index[-1], order)

    @staticmethod
    def _row_chunk(rows: list[Row], chunk: dict[str, Any], cols: Any) -> bytes:
        """Format 1's chunk: the rows themselves, after their uncompressed columns."""
        packer = msgpack.Packer(use_bin_type=True)
        encoded = list(map(packer.pack, rows))  # one by one: the columns say where each row starts
        if cols is not None:
            chunk["cols"] = pack(cols, list(map(len, encoded)))
        # the same bytes as packing the map with its events list last, so that any msgpack reader reads it
        head = [packer.pack_map_header(len(chunk) + 1), *(packer.pack(x) for kv in chunk.items() for x in kv),
                packer.pack("events"), packer.pack_array_header(len(rows))]
        return b"".join(head + encoded)

    def close(self, end_reason: str = "complete", **extra: Any) -> None:
        """Flush, then write the footer index and tail; `end_reason` says why the capture ended."""
        if self.closed:
            return
        self.flush()
        footer = {
            "chunks": self._index, "events": self.events_written, "counts": dict(self._counts),
            "devices": [d.to_dict() for d in self._devices.values()], "end_reason": end_reason, **extra,
        }
        footer_offset = self._offset
        self._write(frame(TAG_FOOTER, msgpack.packb(footer, use_bin_type=True)))
        self._write(tail(footer_offset))
        self._sync(final=True)
        self.closed = True
        if self._owns_file:
            self._f.close()

    def abandon(self) -> None:
        """Close without writing more, after a write failed (a full disk): the file ends where it broke, which
        the reader names as a cut, and keeps every chunk before; rows not yet in a chunk are dropped."""
        if self.closed:
            return
        self.closed = True
        if self._owns_file:
            with contextlib.suppress(OSError):  # (the file is closed even when its last buffered bytes fail)
                self._f.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close("complete" if exc_type is None else f"aborted: {getattr(exc_type, '__name__', exc_type)}")


def _moved(order: np.ndarray) -> np.ndarray | None:
    """A chunk's sort order, or None where it left every row in place."""
    return None if bool((order == np.arange(len(order))).all()) else order


def write_events(path: str | os.PathLike[str], header: Header, events: Any, **kw: Any) -> int:
    """Write a whole recording from an iterable of events; returns the number written."""
    with RecordingWriter(path, header, **kw) as w:
        w.extend(events)
    return w.events_written
