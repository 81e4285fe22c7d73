"""Rows encoded in bulk from numpy columns (explorer.recording.encoded.py): the same bytes as packing each row, and
the same recording when a writer stores them."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.recording import Header, Recording, RecordingWriter
from explorer.recording.encoded import Col, Encoded, PackedRows
from explorer.text import line

INT_TYPES = {"u1": (0, 255), "u2": (0, 65535), "u4": (0, (1 << 32) - 1), "u8": (0, (1 << 64) - 1),
             "i4": (-(1 << 31), (1 << 31) - 1), "i8": (-(1 << 63), (1 << 63) - 1)}
EDGES = (0, 1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, -1, -32, -33, -128, -129, -32768, -32769,
         -(1 << 31), -(1 << 31) - 1)


@st.composite
def columns(draw: st.DrawFn) -> tuple[int, dict[str, np.ndarray], list[str]]:
    n = draw(st.integers(0, 60))
    dtypes = draw(st.lists(st.sampled_from(sorted(INT_TYPES)), min_size=1, max_size=4))
    cols = {}
    for i, dt in enumerate(dtypes):
        low, high = INT_TYPES[dt]
        value = st.one_of(st.sampled_from([e for e in EDGES if low <= e <= high] + [low, high]), st.integers(low, high))
        cols[f"c{i}"] = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=dt)
    return n, cols, list(cols)


@settings(max_examples=150)
@given(columns())
def test_bulk_encoding_writes_the_bytes_msgpack_writes_for_each_row(case) -> None:  # type: ignore[no-untyped-def]
    n, cols, names = case
    template = {"fd": Col(names[0]), "name": "IOMMU_IOAS_ALLOC", "args": {k: Col(k) for k in names}, "ok": True}
    enc = Encoded(template, cols, n)
    proc = (0, 7, "c", "syscalls:sys_exit_ioctl")
    rows = PackedRows.assemble(np.arange(n), [("uapi", None, None)], np.zeros(n, np.uint32), [proc],
                               np.zeros(n, np.uint32), [(np.arange(n), enc)])
    maps = [{"fd": int(cols[names[0]][i]), "name": "IOMMU_IOAS_ALLOC", "args": {k: int(cols[k][i]) for k in names},
             "ok": True} for i in range(n)]
    assert rows.fields.tobytes() == b"".join(msgpack.packb(m) for m in maps)
    assert rows.rows() == [[i, "uapi", None, None, *proc, m] for i, m in enumerate(maps)]


def _row(ts: int, device: str | None = None) -> list:  # type: ignore[type-arg]
    return [ts, "uapi", device, None, 0, 7, "c", "syscalls:sys_exit_ioctl",
            {"cmd": 0x3B81, "name": "IOMMU_IOAS_ALLOC", "fd": 3, "args": {}, "ret": -25}]


@settings(max_examples=25)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=6), st.integers(1, 5))
def test_a_writer_stores_packed_batches_as_chunks_a_reader_reads_back(tmp_path_factory, sizes: list[int],
                                                                         row_every: int) -> None:
    """Batches of any size, and rows appended between them, come back in order, whole chunks of `chunk_events`
    plus what a flush cut; the footer counts and devices hold them."""
    path = Path(tmp_path_factory.mktemp("packed")) / "p.pasidrec"
    expected, ts = [], 0
    with RecordingWriter(path, Header(source="capture"), chunk_events=1024) as w:
        for i, size in enumerate(sizes):
            batch = [_row(ts + j, "0000:00:04.0" if j == 5 else None) for j in range(size)]
            ts += size
            w.append_packed(PackedRows.of_rows(batch).slice(0, size))
            expected += batch
            if i % row_every == 0:
                w.append_row(_row(ts))
                expected.append(_row(ts))
                ts += 1
    r = Recording(path)
    assert r.damage == [] and [row for c in range(len(r.chunks)) for row in r.chunk_rows(c)] == expected
    assert r.footer is not None and r.footer["events"] == len(expected) == sum(c.n for c in r.chunks)
    assert r.footer["counts"] == {"uapi": len(expected)}
    assert all(c.n <= 1024 for c in r.chunks)
    assert ("0000:00:04.0" in {d["name"] for d in r.footer["devices"]}) == any(s > 5 for s in sizes)


def test_out_of_order_batches_merge_into_time_order() -> None:
    a, b = PackedRows.of_rows([_row(1), _row(5), _row(9)]), PackedRows.of_rows([_row(2, "d"), _row(5, "d")])
    merged = PackedRows.concat([a, b]).sorted()
    assert [(r[0], r[2]) for r in merged.rows()] == [(1, None), (2, "d"), (5, None), (5, "d"), (9, None)]
    assert [merged.keys[k] for k in merged.key_of.tolist()] == [(r[1], r[2], r[3]) for r in merged.rows()]


HOSTILE_COMMS = ["c", "\x1b]52;c;cHduZWQ=\x07", "\u202eevil", "caf\ufffd", "", None, "a" * 15, "日本語のコマンド名です"]


@st.composite
def capture_rows(draw: st.DrawFn) -> list[list]:  # type: ignore[type-arg]
    """Rows as a capture writes them: any processes (hostile names, ids of every MessagePack width, none), a few
    devices and PASIDs, times in order with ties."""
    n = draw(st.integers(1, 400))
    ids = st.one_of(st.none(), st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1]))
    procs = draw(st.lists(st.tuples(ids, ids, st.one_of(st.sampled_from(HOSTILE_COMMS), st.text(max_size=40)),
                                    st.sampled_from([None, "syscalls:sys_exit_ioctl", "s" * 200, "源" * 100])),
                          min_size=1, max_size=6))
    keys = draw(st.lists(st.tuples(st.just("uapi"), st.sampled_from([None, "0000:00:04.0", "0000:3a:00.1"]),
                                   st.sampled_from([None, 0, 1, 1 << 19])), min_size=1, max_size=4))
    steps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    rows, ts = [], draw(st.integers(0, 1 << 40))
    for j, step in enumerate(steps):
        ts += step
        kind, dev, pasid = keys[draw(st.integers(0, len(keys) - 1))]
        rows.append([ts, kind, dev, pasid, *procs[draw(st.integers(0, len(procs) - 1))],
                     {"cmd": 0x3B81, "name": "IOMMU_IOAS_ALLOC", "fd": j, "ret": -25,
                      "args": {"x": draw(st.integers(-(1 << 63), (1 << 64) - 1))}}])
    return rows


@settings(max_examples=30)
@given(capture_rows(), st.integers(1, 5))
def test_chunks_written_from_columns_are_the_bytes_of_chunks_written_from_rows(
        tmp_path_factory, rows: list[list], parts: int) -> None:  # type: ignore[type-arg]
    """The same events appended as encoded batches (the capture's path, no row decoded) and as rows give the same
    file byte for byte, so they read back the same: strings interned per chunk, hostile names kept as they came
    and escaped where shown."""
    d, header = Path(tmp_path_factory.mktemp("same")), Header(source="capture")  # one header: it holds its time
    with RecordingWriter(d / "rows.pasidrec", header, chunk_events=128) as w:
        w.extend_rows(rows)
    cuts = sorted({0, len(rows), *(len(rows) * i // parts for i in range(1, parts))})
    with RecordingWriter(d / "cols.pasidrec", header, chunk_events=128) as w:
        for a, b in pairwise(cuts):
            w.append_packed(PackedRows.of_rows(rows[a:b]))
    assert (d / "cols.pasidrec").read_bytes() == (d / "rows.pasidrec").read_bytes()
    r = Recording(d / "cols.pasidrec")
    back = [row for c in range(len(r.chunks)) for row in r.chunk_rows(c)]
    assert r.damage == [], r.damage
    assert back == rows
    for c in range(len(r.chunks)):
        comms = {}
        for row in r.chunk_rows(c):
            assert comms.setdefault((row[4], row[5], row[6], row[7]), row[6]) is row[6]  # one string per process
    assert all("\x1b" not in line(e.comm) and "\u202e" not in line(e.comm) for e in r.iter_events() if e.comm)


def test_rows_a_capture_does_not_write_are_stored_as_the_row_path_stores_them(tmp_path: Path) -> None:
    """Rows the columns cannot hold (a float, a bool, a tenth item) appended after an encoded batch are written as
    the rows appended one by one would be, byte for byte."""
    header = Header(source="capture")
    odd = [[1, "uapi", None, None, 0, 1.5, "c", "s", {}], [2, "uapi", None, None, True, 7, "c", "s", {}],
           [3, "uapi", None, None, 0, 7, "c", "s", {}, "newer"]]
    for i, row in enumerate(odd):
        with RecordingWriter(tmp_path / f"r{i}", header) as w:
            w.extend_rows([_row(0), row])
        with RecordingWriter(tmp_path / f"c{i}", header) as w:
            w.append_packed(PackedRows.of_rows([_row(0)]))
            w.extend_rows([row])
        assert (tmp_path / f"c{i}").read_bytes() == (tmp_path / f"r{i}").read_bytes()
        assert Recording(tmp_path / f"c{i}").chunk_rows(0)[0] == _row(0)
