"""Format 2 recordings (compressed columns): every value a row may hold comes back as written, files of format 1
read exactly as the format 1 reader read them, and a compressed chunk damaged behind a valid checksum costs only
itself, named in one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from hostile_files import GOOD, hostile_rows, packed_payload, values, write_crafted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.cli.main import main
from explorer.events import KINDS, R_KIND, R_TS
from explorer.index import RecordingIndex
from explorer.recording import Header, Recording, RecordingWriter
from explorer.recording.encoded import PackedRows
from explorer.schema import row_problem

ROOT = Path(__file__).resolve().parents[2]
HEADER = Header("test", host={"kernel": "6.18.0"})

# What the format 1 reader (commit f6be248) read from each bundled recording: its rows, hashed as msgpack
FORMAT1_READS = {
    "01-two-processes-one-device": (41, "7eb24840abb0058ba0c0956b28548e272a11c5f69db562571e300d4f6807314b"),
    "02-one-process-two-devices": (27, "2b246807269dfbf28118e8d0c11df31277a033c3d0a302a88c899e3f556fafbe"),
    "03-guest-pasid-iommufd": (31, "25ec34dc5d66a5548933b2830f94d3a772e19172bb0050228dc11e3faa33d943"),
    "04-page-request-groups": (22, "2321f99d7bf0d2a276f6ccea56c550042009a3135b3cc610463ad84b5922448b"),
    "05-exhaustion-narrow-device": (43, "b3aaded452fd9d42d3294880d4e639d2e0caf29b0f7803728d32e952c1b51633"),
    "06-buggy-driver": (32, "640e6c8ea80e120497618d1d9dcd9878e86192eca41bda47c0c2734ccd7785a5"),
    "07-lost-events": (14, "fb6163d3ddc1a8e373dd93b1340c6dffc1febb4c69dd5569de77f8aab003844e"),
    "08-old-kernel-last-unbind": (15, "61956e5bdcd1b6534f286f4783dca6503844316e553db6763ff99d953e9ca3e2"),
    "09-lab-fault-queue": (42, "1450249ea87058e3194970a6c4e9720daf1282a5045371643177afaaf06ec16e"),
    "10-era-ioasid": (17, "ff8cc3075697a33c09157ce1a9d5b35455352957ad4b2eb11070f0ebba8f0c16"),
    "11-era-sva-ida": (14, "6956972ca70e4c08b613a7f730d4d202ab809132357b424f726f9554b6d36bfc"),
    "12-era-global-ida": (15, "5a0d7a64ce30a7886cdedea9a86807d194e2f3ec27d286ddf9b8990a7eb90845"),
    "lab/6.12-fault-queue": (42, "5941457ec22888e87e765aed8f68e39b1e6009db79415b6e7b20b1a78f4187c8"),
}


def _sha(rows: list[Any]) -> str:
    return hashlib.sha256(msgpack.packb(rows, use_bin_type=True)).hexdigest()


@pytest.mark.parametrize("name", sorted(FORMAT1_READS))
def test_bundled_format1_recordings_read_as_the_format1_reader_read_them(name: str, tmp_path: Path) -> None:
    path = ROOT / "recordings" / f"{name}.pasidrec"
    with Recording(path) as rec:
        rows = list(rec.iter_rows())
        assert rec.header.version == 1 and rec.complete
    assert (len(rows), _sha(rows)) == FORMAT1_READS[name]
    copy = tmp_path / "v2.pasidrec"  # and rewritten in format 2, they read the same, and model the same
    with RecordingWriter(copy, rec.header) as w:
        w.extend_rows(rows)
    with Recording(copy) as again:
        assert again.header.version == 3 and list(again.iter_rows()) == rows
    old, new = RecordingIndex.build(Recording(path)), RecordingIndex.build(Recording(copy))
    assert [(a.rule, a.ts_ns) for a in old.anomalies] == [(a.rule, a.ts_ns) for a in new.anomalies]


def _text(longest: int) -> st.SearchStrategy[str]:
    return st.text(max_size=longest) | st.sampled_from(["", "x" * longest, "\x1b]0;t\x07", "ü\x00"])


def _u32() -> st.SearchStrategy[int | None]:
    return st.none() | st.sampled_from([0, 1, (1 << 32) - 1]) | st.integers(0, (1 << 32) - 1)


@st.composite
def rows(draw: st.DrawFn) -> list[Any]:
    """A row with each position anywhere in the range the schema allows (its extremes often), fields of any
    value msgpack carries (the schema may refuse some: both formats must then read the same), and sometimes
    items past the ninth, as a newer writer adds."""
    row = [draw(st.sampled_from([0, 1, (1 << 63) - 1]) | st.integers(0, (1 << 63) - 1)),
           draw(st.sampled_from(sorted(KINDS)) | st.text(min_size=1, max_size=64)),
           draw(st.none() | _text(256)), draw(_u32()), draw(_u32()), draw(_u32()),
           draw(st.none() | _text(256)), draw(st.none() | _text(256)),
           draw(st.dictionaries(st.text(max_size=8), values, max_size=4))]
    return row + draw(st.lists(values, max_size=2) | st.just([]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rows(), min_size=1, max_size=30), st.integers(1, 12))
def test_format2_round_trip_keeps_every_value_the_schema_allows(tmp_path: Path, written: list[list[Any]],
                                                               chunk: int) -> None:
    reads = []
    for compress in (False, True):
        path = tmp_path / f"{compress}.pasidrec"
        with RecordingWriter(path, HEADER, chunk_events=chunk, compress=compress) as w:
            w.extend_rows([list(r) for r in written])
        with Recording(path) as rec:
            assert rec.header.version == (3 if compress else 1)
            reads.append(_sha(list(rec.iter_rows())))
            back = list(rec.iter_rows())
    assert reads[0] == reads[1]  # the same rows (NaN included, compared as bytes) as rows read
    expected = [r for i in range(0, len(written), chunk) for r in sorted(written[i:i + chunk], key=lambda r: r[0])]
    for got, want in zip(back, expected, strict=True):
        if row_problem(want) is None:
            assert _sha(got) == _sha(want)


def test_a_workload_takes_under_30_bytes_an_event_and_every_chunk_is_compressed(tmp_path: Path) -> None:
    from explorer.workload import write_workload

    path = tmp_path / "w.pasidrec"
    n = write_workload(str(path), 50_000, 3)
    assert path.stat().st_size / n < 30
    with Recording(path) as rec:
        assert all("z" in msgpack.unpackb(rec.chunk_payload(i), strict_map_key=False) for i in range(len(rec.chunks)))


def test_rows_the_columns_cannot_hold_are_written_as_rows_and_read_back(tmp_path: Path) -> None:
    odd = [[5, "fault", None, True, None, None, None, "t", {}],  # a bool PASID: a dictionary would call it 1
           [6, "fault", None, 1, None, None, None, "t", {}], [7, "marker", None, None, 1.5, None, None, "t", {}]]
    path = tmp_path / "odd.pasidrec"
    with RecordingWriter(path, HEADER) as w:
        w.extend_rows([list(r) for r in odd])
    with Recording(path) as rec:
        assert "events" in msgpack.unpackb(rec.chunk_payload(0), strict_map_key=False)
        assert [r[3] for r in rec.iter_rows()][:2] == [None, 1]  # the bool refused by the schema, the 1 kept
        assert "pasid is True" in rec.damage_summary()


def test_a_batch_holding_a_row_the_columns_cannot_hold_is_still_cut_into_chunks(tmp_path: Path) -> None:
    """Chunks stay at most `chunk_events` long (a kill -9 loses at most the one being written) when a big batch
    goes the row path because one of its rows has a tenth item."""
    rows = [[i, "marker", None, None, 0, 7, "m", "t", {"text": "m"}] for i in range(2_500)]
    rows[1_200].append(0)
    path = tmp_path / "cut.pasidrec"
    with RecordingWriter(path, HEADER, chunk_events=1_000) as w:
        w.append_packed(PackedRows.of_rows(rows[:100]))  # (a capture's batch first, which the rest then join)
        w.extend_rows(rows[100:])
    with Recording(path) as rec:
        assert [c.n for c in rec.chunks] == [1_000, 1_000, 500]
        assert [r[0] for r in rec.iter_rows()] == list(range(2_500))


@pytest.mark.parametrize("odd_first", [True, False])
@pytest.mark.parametrize(("odd", "good"), [
    ([0, "fault", None, True, None, None, None, "t", {}], [6, "fault", None, 1, None, None, None, "t", {}, 0]),
    ([0, "marker", None, None, 1.0, None, None, "t", {"text": "m"}],
     [6, "marker", None, None, 1, None, None, "t", {"text": "m"}, 0])])
def test_a_value_a_dictionary_takes_for_an_int_is_refused_whichever_comes_first(
        tmp_path: Path, odd: list[Any], good: list[Any], odd_first: bool) -> None:
    """A bool PASID or a float CPU in a chunk of rows beside the int it equals (both rows the capture's columns
    cannot hold: the second has a tenth item). The chunk's tables of distinct keys and processes are dictionaries,
    which take True and 1.0 for 1: judged by their entries alone, the odd row read back as the int, unrefused,
    when the int came first."""
    odd = [5 if odd_first else 7, *odd[1:]]
    path = tmp_path / "odd.pasidrec"
    with RecordingWriter(path, HEADER) as w:
        w.extend_rows([odd, list(good)])
    with Recording(path) as rec:
        assert [(r[0], r[1]) for r in rec.iter_rows()] == sorted([(6, good[1]), (odd[0], "lost")])
        assert len(rec.damage) == 1


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=hostile_rows().map(lambda r: [r]))
def test_a_crafted_row_in_a_compressed_chunk_is_read_or_refused_as_in_format1(
        tmp_path: Path, rows: list[Any]) -> None:
    chunk = GOOD[:2] + rows + GOOD[2:]
    reads = []
    for packed in (False, True):
        path = write_crafted(tmp_path / f"h{packed}.pasidrec", [chunk], packed=packed)
        with Recording(path) as rec:
            reads.append((_sha(list(rec.iter_rows())), [d.what for d in rec.damage]))
    assert reads[0] == reads[1]


def _chunks(n: int = 3) -> list[list[Any]]:
    return [[[1000 * (c * 10 + j), "marker", None, None, 0, 7, "m", "t", {"text": f"c{c} e{j}"}] for j in range(5)]
            for c in range(n)]


def _with_column(rows: list[Any], column: str, data: Any) -> bytes:
    """Format 2's payload of `rows` with one column's stored bytes replaced (a valid CRC goes around it)."""
    chunk = msgpack.unpackb(packed_payload(rows, 1), strict_map_key=False)
    if column in chunk["z"] or data is not None:
        chunk["z"][column] = data
    return msgpack.packb(chunk, use_bin_type=True)


def _z(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(raw)


def _real(rows: list[Any], column: str) -> bytes:
    return msgpack.unpackb(packed_payload(rows, 1), strict_map_key=False)["z"][column]


BROKEN = {  # column -> how its stored bytes are broken, and the words the one line uses
    "cut fields": ("fields", lambda rows: _real(rows, "fields")[:-4], "column fields does not decompress"),
    "fields not zstd": ("fields", lambda rows: b"\x00" * 40, "column fields is not a zstd frame"),
    "a bomb": ("fields", lambda rows: _z(bytes(2 << 20)), "decompressed bytes from"),
    "no size": ("keys", lambda rows: zstandard.ZstdCompressor(write_content_size=False).compress(b"\x90"),
                "column keys declares no decompressed bytes"),
    "key out of range": ("key_of", lambda rows: _z(bytes([1]) + bytes([9]) * 5), "column key_of points past"),
    "ts of the wrong length": ("ts", lambda rows: _z(bytes([1, 0, 0])), "column ts holds 3 bytes"),
    "ts that wraps": ("ts", lambda rows: _z(bytes([8]) + (b"\0" + b"\xff" * 4) * 8),
                      "column ts does not add up"),
    "lengths that lie": ("flen", lambda rows: _z(bytes([1]) + bytes([1]) * 5), "column flen adds up to 5"),
    "keys not a list": ("keys", lambda rows: _z(msgpack.packb({"a": 1})), "column keys is not a list"),
    "missing procs": ("procs", lambda rows: None, "column procs is missing"),
    "extra that lies": ("extra", lambda rows: _z(msgpack.packb({99: [1]})), "column extra is not a map"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_compressed_chunk_broken_behind_its_checksum_costs_only_itself_in_one_line(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    column, broken, words = BROKEN[case]
    good = _chunks()
    payload = _with_column(good[1], column, broken(good[1]))
    path = write_crafted(tmp_path / "broken.pasidrec", [good[0], payload, good[2]], packed=True)
    with Recording(path) as rec:
        assert list(rec.iter_rows()) == good[0] + good[2]
        [damage] = rec.damage
        assert damage.offset == rec.chunks[1].offset and "chunk 1 passes its checksum but does not decode" \
            in damage.what and words in damage.what and "its 5 events cannot be read" in damage.what, damage
        idx = RecordingIndex.build(rec)
        assert idx.n == 10 and sum(str(damage) in d for d in idx.damage) == 1
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["events"] == 10 and any(words in d and "\n" not in d for d in info["damage"])


def test_field_maps_whole_but_garbled_behind_their_checksum_are_shown_as_stored_and_read_as_losses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a file decompresses no field maps (only their frame's blocks are checked to be whole): maps whose
    compressed bytes are garbled are found when rows are read. The timeline keeps the chunk's stored events, the
    model counts them lost, and each reads as a loss, never a crash."""
    good = _chunks()
    real = _real(good[1], "fields")
    garbled = real[:12] + bytes(b ^ 0x5A for b in real[12:-3]) + real[-3:]
    path = write_crafted(tmp_path / "garbled.pasidrec", [good[0], _with_column(good[1], "fields", garbled), good[2]],
                         packed=True)
    with Recording(path) as rec:
        idx = RecordingIndex.build(rec)
        assert idx.n == 15 and [idx.event(i).kind for i in range(4, 11)] == ["marker"] + ["lost"] * 5 + ["marker"]
        walked = list(idx.iter_rows())  # what the exports number their events by: event i is the i-th
        assert [r[R_KIND] for r in walked] == [idx.event(i).kind for i in range(15)]
        assert [r[R_TS] for r in walked] == idx.ts.tolist()
        said = [d for d in idx.damage if "column fields does not decompress" in d]
        # the reader cannot read them, the index shows them as losses: no line says they were skipped
        assert said and not any("skipped" in d for d in said) and any("read as losses" in d for d in said), said
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lost"] == 5 and any("does not decompress" in d for d in info["damage"])


def test_a_chunk_claiming_more_events_than_bytes_is_refused_and_the_writer_pads_one_that_compresses_below(
        tmp_path: Path) -> None:
    path = tmp_path / "same.pasidrec"
    same = [[0, "marker", None, None, None, None, None, "t", {"text": "m"}]] * 4096
    with RecordingWriter(path, HEADER) as w:
        w.extend_rows([list(r) for r in same])
    with Recording(path) as rec:
        assert rec.complete and rec.chunks[0].length >= 4096 and list(rec.iter_rows()) == same
