"""Recordings keep every event, every field, and every complete chunk, whatever happens to the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.errors import RecordingError
from explorer.events import KINDS, Event, Kind, make
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter, write_events
from explorer.recording.framing import MAGIC, frame
from explorer.schema import INT_RANGES
from explorer.workload import generate_rows, workload_header, write_workload

DEV = "0000:6a:01.0"
HEADER = Header("test", host={"kernel": "6.18.0"}, devices=[DeviceInfo(DEV, 20, True, True, "idxd")])

_values = {int: st.integers(0, 2**63 - 1), str: st.text(max_size=12), bool: st.booleans(),
           dict: st.dictionaries(st.text(max_size=5), st.integers(0, 99), max_size=3),
           list: st.lists(st.integers(0, 99), max_size=3)}
_named = {"seen_by": st.lists(st.text(max_size=8), max_size=3)}  # hook names (explorer.schema)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(sorted(KINDS)))
    fields = {}
    for f in KINDS[kind]:
        typ = f.type[0] if isinstance(f.type, tuple) else f.type
        if f.required or draw(st.booleans()):
            if f.name == "same_as":  # [time, machine number, device] (explorer.schema)
                fields[f.name] = [draw(st.integers(0, 2**62)), draw(st.integers(0, 255)), DEV]
                continue
            lo_hi = INT_RANGES.get(f.name)  # the schema's own ranges, so that no drawn value is out of range
            fields[f.name] = draw(st.integers(lo_hi[0], lo_hi[1] - 1) if lo_hi else _named.get(f.name, _values[typ]))
    return make(kind, draw(st.integers(0, 2**62)), device=draw(st.sampled_from([None, DEV, "0000:3b:00.0"])),
                pasid=draw(st.none() | st.integers(0, (1 << 20) - 1)), cpu=draw(st.none() | st.integers(0, 255)),
                pid=draw(st.none() | st.integers(1, 4_000_000)), comm=draw(st.none() | st.text(max_size=15)),
                source=draw(st.sampled_from(["probe", "scenario", ""])), **fields)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events(), max_size=40), st.integers(1, 9))
def test_round_trip_keeps_every_event_and_field(tmp_path: Path, evs: list[Event], chunk: int) -> None:
    path = tmp_path / "r.pasidrec"
    write_events(path, HEADER, evs, chunk_events=chunk)
    with Recording(path) as rec:
        assert rec.complete
        back = list(rec.iter_events())
        assert rec.header.devices[0].pasid_width == 20 and rec.header.kernel == "6.18.0"
    # Each chunk is sorted by time; within the same time, order is kept.
    expected = [e for i in range(0, len(evs), chunk) for e in sorted(evs[i:i + chunk], key=lambda e: e.ts_ns)]
    assert back == expected


def test_unknown_kinds_fields_and_row_items_from_a_newer_writer_survive(tmp_path: Path) -> None:
    path = tmp_path / "future.pasidrec"
    with RecordingWriter(path, HEADER) as w:
        w.append_row([5, "pasid_teleport", DEV, 7, 0, 1, "x", "probe-v9", {"warp": 3}, 0, "extra-column"])
        w.append(make(Kind.PAGE_REQUEST, 9, device=DEV, pasid=7, prg=1, addr=0x1000))
        w.append_row([11, "page_request", DEV, 7, 0, 1, "x", "probe-v9", {"prg": 2, "addr": 0, "hologram": True}])
    evs = list(Recording(path).iter_events())
    assert evs[0].kind == "pasid_teleport" and not evs[0].known_kind
    assert evs[0].fields == {"warp": 3, "_extra": ["extra-column"]}
    assert evs[2].get("hologram") is True
    out = tmp_path / "copy.pasidrec"
    write_events(out, HEADER, evs)
    assert list(Recording(out).iter_events()) == evs


def _small_file(tmp_path: Path) -> tuple[Path, bytes, list[list[Event]]]:
    chunks = [[make(Kind.PAGE_REQUEST, c * 100 + i, device=DEV, pasid=1, prg=i, addr=i * 4096, last=True)
               for i in range(3)] for c in range(4)]
    path = tmp_path / "small.pasidrec"
    with RecordingWriter(path, HEADER, chunk_events=3) as w:
        for chunk in chunks:
            w.extend(chunk)
    return path, path.read_bytes(), chunks


def test_truncation_at_every_byte_keeps_every_complete_chunk_and_says_so(tmp_path: Path) -> None:
    path, data, chunks = _small_file(tmp_path)
    header_end = len(MAGIC) + 12 + int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "little")
    chunk_ends = [c.offset + 12 + c.length for c in Recording(path).chunks]
    cut = tmp_path / "cut.pasidrec"
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        if size < header_end:
            with pytest.raises(RecordingError) as err:
                Recording(cut)
            why = "empty file" if size == 0 else "not a PASID Explorer" if size < len(MAGIC) else "file ends inside"
            assert str(err.value).startswith(f"{cut}:byte ") and why in str(err.value), size
            continue
        with Recording(cut) as rec:
            complete = sum(1 for end in chunk_ends if end <= size)
            assert list(rec.iter_events()) == [e for c in chunks[:complete] for e in c], size
            summary = rec.damage_summary()
            assert summary, f"a file cut at byte {size} must say it was cut"
            assert "checksum" not in summary and "corrupt" not in summary, f"a cut is no corruption: {summary}"
            assert not rec.complete


@pytest.mark.parametrize("footer", [True, False])
def test_a_damaged_byte_in_the_header_costs_what_it_said_never_the_chunks(tmp_path: Path, footer: bool) -> None:
    """Every byte of the header frame (tag, length, checksum, payload) flipped in turn, with the footer's index and
    without it: every chunk is read, the damage names the header, and what it said is unknown (the devices but
    for the footer's table)."""
    path, data, chunks = _small_file(tmp_path)
    header_end = len(MAGIC) + 12 + int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "little")
    with Recording(path) as rec:
        data = data if footer else data[:rec.chunks[-1].payload_offset + rec.chunks[-1].length]
    for at in range(len(MAGIC), header_end):
        bad = bytearray(data)
        bad[at] ^= 1 << at % 8
        path.write_bytes(bytes(bad))
        with Recording(path) as rec:
            assert list(rec.iter_events()) == [e for c in chunks for e in c], at
            said = str(rec.damage[0])
            assert said.startswith("byte 8: header frame damaged (") and f"read ({len(chunks)} chunks)" in said
            assert (rec.header.source, rec.header.kernel) == ("?", None), at
            assert [d.name for d in rec.devices] == ([DEV] if footer else []), at


@dataclass(repr=False)  # hypothesis prints the arguments of a failing example; the rows are megabytes
class Footerless:
    """A workload recording cut just before its footer, with each chunk's rows and frame offset."""

    path: Path
    data: bytes
    rows: list[list[list]]
    offsets: list[int]


@pytest.fixture(scope="module")
def footerless(tmp_path_factory: pytest.TempPathFactory) -> Footerless:
    path = tmp_path_factory.mktemp("footerless") / "w.pasidrec"
    write_workload(str(path), 20_000, 1)
    with Recording(path) as rec:
        rows = [rec.chunk_rows(i) for i in range(len(rec.chunks))]
        offsets = [c.offset for c in rec.chunks]
        footer_offset = rec.chunks[-1].offset + 12 + rec.chunks[-1].length
    return Footerless(path, path.read_bytes()[:footer_offset], rows, offsets)


@settings(max_examples=40)
@given(st.data())
def test_without_a_footer_a_damaged_byte_costs_only_its_chunk(footerless: Footerless, data: st.DataObject) -> None:
    f = footerless
    cut_inside_last = data.draw(st.booleans(), "cut inside the last chunk")
    size = f.offsets[-1] + 1000 if cut_inside_last else len(f.data)
    complete = len(f.offsets) - cut_inside_last
    hit = data.draw(st.integers(0, complete - 1), "damaged chunk")
    frame_len = (f.offsets[hit + 1] if hit + 1 < len(f.offsets) else len(f.data)) - f.offsets[hit]
    where = data.draw(st.integers(0, 11) | st.integers(12, frame_len - 1), "byte in its frame")
    bad = bytearray(f.data[:size])
    bad[f.offsets[hit] + where] ^= 1 << data.draw(st.integers(0, 7), "bit")
    damaged = f.path.with_name("damaged.pasidrec")
    damaged.write_bytes(bytes(bad))
    with Recording(damaged) as rec:
        assert list(rec.iter_rows()) == [r for i in range(complete) if i != hit for r in f.rows[i]]
        *skipped, last = rec.damage
        # The hit chunk is named where the damage is; only the end of the file (or the cut) is reported besides.
        assert f.offsets[hit] in [d.offset for d in rec.damage] and len(skipped) <= 1, rec.damage_summary()
        assert last.what.endswith(f"; {complete - 1} complete chunks kept"), rec.damage_summary()


def test_a_footerless_workload_with_a_flipped_byte_keeps_its_other_chunks(footerless: Footerless) -> None:
    f = footerless
    bad = bytearray(f.data[:-5])  # the last chunk is cut too
    bad[f.offsets[0] + 12 + 100] ^= 0x40
    damaged = f.path.with_name("flipped.pasidrec")
    damaged.write_bytes(bytes(bad))
    with Recording(damaged) as rec:
        assert list(rec.iter_rows()) == [r for chunk in f.rows[1:-1] for r in chunk]
        summary = rec.damage_summary()
        assert summary.startswith(f"byte {f.offsets[0]}: CHNK frame fails its checksum")
        assert summary.endswith(f"the recording was cut short here; {len(f.rows) - 2} complete chunks kept")


def test_zeros_left_after_a_crash_end_the_walk_in_one_line(footerless: Footerless) -> None:
    damaged = footerless.path.with_name("zeros.pasidrec")
    damaged.write_bytes(footerless.data + bytes(4096))
    with Recording(damaged) as rec:
        assert list(rec.iter_rows()) == [r for chunk in footerless.rows for r in chunk]
        assert [str(d) for d in rec.damage] == [
            f"byte {len(footerless.data)}: not a frame (tag {bytes(4)!r}): nothing intact from here to the end "
            f"(4096 bytes); {len(footerless.rows)} complete chunks kept"]


def test_a_corrupt_byte_is_caught_by_its_checksum_and_costs_only_its_chunk(tmp_path: Path) -> None:
    path, data, chunks = _small_file(tmp_path)
    rec = Recording(path)
    second = rec.chunks[1]
    bad = bytearray(data)
    bad[second.payload_offset + second.length // 2] ^= 0x40
    path.write_bytes(bytes(bad))
    with Recording(path) as rec:
        kept = list(rec.iter_events())
        assert kept == chunks[0] + chunks[2] + chunks[3]
        assert any(d.offset == second.offset and "checksum" in d.what for d in rec.damage)
    # `info` does not blame the capture for what the file lost
    from core.test_cli import cli

    text = cli("info", str(path)).stdout
    assert f"{len(chunks[1]):,} events lost during capture, or unreadable in the file" in text and "damaged: " in text


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"GIF89a\x00\x00\x00\x00\x00\x00", "not a PASID Explorer recording"),
    (MAGIC + b"HEAD\x05\x00\x00\x00\x00\x00\x00\x00abcde", "header frame fails its checksum"),
])
def test_foreign_or_empty_files_get_one_line_errors_with_the_byte_offset(tmp_path: Path, content: bytes,
                                                                         message: str) -> None:
    path = tmp_path / "x.pasidrec"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as err:
        Recording(path)
    text = str(err.value)
    assert message in text and "byte " in text and "\n" not in text


def _with_header(path: Path, header: dict) -> Path:
    """A recording of one chunk whose header frame is replaced by `header` (with a valid checksum)."""
    write_events(path, HEADER, [make(Kind.MARKER, 1, text="m")])
    data = path.read_bytes()
    rest_start = len(MAGIC) + 12 + int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "little")
    path.write_bytes(MAGIC + frame(b"HEAD", msgpack.packb(header)) + data[rest_start:])
    return path


def test_a_newer_major_version_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = _with_header(tmp_path / "v2.pasidrec", {**HEADER.to_dict(), "version": 99})
    with pytest.raises(RecordingError, match="newer than this explorer reads"):
        Recording(path)


@pytest.mark.parametrize("size, message", [
    (10, "file ends inside a frame (2 of at least 12 bytes present)"),
    (12, "file ends inside a HEAD frame (4 of at least 12 bytes present)"),
    (20, "file ends inside a HEAD frame (12 of "),
    (100, "file ends inside a HEAD frame (92 of "),
])
def test_a_cut_inside_the_header_is_called_a_cut(tmp_path: Path, size: int, message: str) -> None:
    path, data, _ = _small_file(tmp_path)
    path.write_bytes(data[:size])
    with pytest.raises(RecordingError) as err:
        Recording(path)
    assert str(err.value).startswith(f"{path}:byte 8: {message}")


@pytest.mark.parametrize("change, message", [
    ({"host": "nothost"}, "header key host: expected a map, found 'nothost'"),
    ({"host": {"kernel": 5}}, "header key host.kernel: expected a string, found 5"),
    ({"probes": 5}, "header key probes: expected a map, found 5"),
    ({"probes": {"unavailable": ["x"]}}, "header key probes.unavailable: expected a map"),
    ({"probes": {"attached": "kprobe"}}, "header key probes.attached: expected a list"),
    ({"created_unix": "yesterday"}, "header key created_unix: expected a number, found 'yesterday'"),
    ({"created_unix": True}, "header key created_unix: expected a number, found True"),
    ({"version": "1"}, "header key version: expected a positive integer, found '1'"),
    ({"version": -3}, "header key version: expected a positive integer, found -3"),
    ({"version": None}, "header key version: expected a positive integer, found None"),
    ({"source": ["capture"]}, "header key source: expected a string"),
    ({"clock": 1}, "header key clock: expected a string, found 1"),
    ({"title": 3}, "header key title: expected a string, found 3"),
    ({"devices": {"a": 1}}, "header key devices: expected a list"),
    ({"devices": [5]}, "header key devices[0]: expected a map, found 5"),
    ({"devices": [{"pasid_width": 20}]}, "header key devices[0].name: expected a string, found None"),
    ({"devices": [{"name": DEV, "pasid_width": "20"}]}, "header key devices[0].pasid_width: expected an integer"),
    ({"devices": [{"name": DEV, "pasid_width": 10**9}]}, "header key devices[0].pasid_width: expected an integer"),
    ({"devices": [{"name": DEV, "pri": "yes"}]}, "header key devices[0].pri: expected true or false"),
    ({"format": "pcap"}, "header does not name the pasidrec format"),
])
def test_a_header_with_wrong_types_is_refused_naming_the_key(tmp_path: Path, change: dict, message: str) -> None:
    path = _with_header(tmp_path / "h.pasidrec", {**HEADER.to_dict(), **change})
    with pytest.raises(RecordingError) as err:
        Recording(path)
    assert str(err.value).startswith(f"{path}:byte 8: {message}") and "\n" not in str(err.value)


def test_unknown_header_keys_from_a_newer_writer_are_kept(tmp_path: Path) -> None:
    header = {**HEADER.to_dict(), "hologram": {"depth": 3}, "host": {"kernel": "6.18.0", "rack": 7},
              "devices": [{"name": DEV, "pasid_width": 20, "numa": 1}]}
    with Recording(_with_header(tmp_path / "h.pasidrec", header)) as rec:
        assert rec.header.extra == {"hologram": {"depth": 3}} and rec.header.host["rack"] == 7
        assert rec.header.devices[0].extra == {"numa": 1} and rec.event_count == 1


def test_a_directory_is_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="is a directory"):
        Recording(tmp_path)


def test_a_writer_killed_before_close_leaves_every_flushed_chunk(tmp_path: Path) -> None:
    path = tmp_path / "killed.pasidrec"
    w = RecordingWriter(path, HEADER, chunk_events=2)
    evs = [make(Kind.MARKER, i, text=f"m{i}") for i in range(5)]
    w.extend(evs)  # two chunks written, one event still buffered
    os.fsync(w._f.fileno())
    with Recording(path) as rec:  # read while the writer is still open: the state after kill -9
        assert list(rec.iter_events()) == evs[:4]
        assert "did not close cleanly" in rec.damage_summary()
    w.close()
    assert list(Recording(path).iter_events()) == evs


def test_the_format_document_describes_every_kind_and_field() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "recording-format.md").read_text()
    for kind, fields in KINDS.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{kind}` |")), None)
        assert row is not None, f"docs/recording-format.md lacks kind {kind}"
        for f in fields:
            assert f"`{f.name}`" in row, f"docs/recording-format.md lacks {kind}.{f.name}"


def _workload(path: Path, n: int, seed: int, compress: bool, **kw: object) -> Path:
    """A generated recording of compressed columns, or of rows as explorers before format version 3 wrote them."""
    with RecordingWriter(path, workload_header(n, seed), compress=compress) as w:
        w.extend_rows(list(generate_rows(n, seed, **kw)))
    return path


def _index_columns(path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple:
    from explorer.index import RecordingIndex

    if monkeypatch is not None:  # a reader of files without stored columns (other tools), or ignoring them
        monkeypatch.setattr(Recording, "chunk_head", lambda self, i: None)
    idx = RecordingIndex.build(Recording(path))
    return (idx.ts.tolist(), [idx.kind_names[k] for k in idx.kinds.tolist()],
            [idx.tracks[t] for t in idx.track_of.tolist()], [(a.rule, a.ts_ns) for a in idx.anomalies])


@pytest.mark.parametrize("compress", [False, True])
def test_stored_columns_index_exactly_as_the_rows_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     compress: bool) -> None:
    path = _workload(tmp_path / "w.pasidrec", 12_000, 9, compress, slow_every=400, loss_every=300)
    rec = Recording(path)
    assert all(rec.chunk_head(i) is not None for i in range(len(rec.chunks)))  # the writer stores them
    from_columns = _index_columns(path)
    assert from_columns == _index_columns(path, monkeypatch)


@pytest.mark.parametrize("cols", [
    {"ts": b"\0" * 8, "keys": [["fault", None, None]], "key_of": b"\0\0"},  # one time for two events
    {"ts": b"\0" * 16, "keys": [["fault", None, None]], "key_of": b"\0\0\1\0"},  # a key number out of range
    {"ts": b"\0" * 16, "keys": [["fault", None]], "key_of": b"\0\0\0\0"},  # a key of two parts
    "columns",
])
def test_stored_columns_that_do_not_fit_their_chunk_are_ignored(cols: object) -> None:
    from explorer.recording.columns import unpack

    assert unpack(cols, 2) is None


def test_rows_that_do_not_match_their_columns_are_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from explorer.recording.reader import ChunkHead

    path = _workload(tmp_path / "w.pasidrec", 9_000, 2, False, slow_every=300)  # rows beside columns
    head = Recording(path).chunk_head(0)
    assert head is not None and len(head.rows(list(range(10)))) == len(head.cols.ts)
    shifted = dataclasses.replace(head, cols=dataclasses.replace(head.cols, ts=head.cols.ts + 1))
    with pytest.raises(ValueError, match="does not match its columns"):
        shifted.rows([0])
    expected = _index_columns(path)
    original = ChunkHead.rows
    monkeypatch.setattr(ChunkHead, "rows", lambda self, positions: original(shifted, [0]))
    assert _index_columns(path) == expected  # every chunk fell back to its rows, to the same index


def test_a_damaged_frame_tag_is_named_in_hex_never_as_the_raw_bytes(tmp_path: Path) -> None:
    """A tag is arbitrary bytes in a damaged file: an escape sequence among them must not reach a terminal."""
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 20_000, seed=1)
    data = bytearray(path.read_bytes())
    at = Recording(path).chunks[2].offset
    data[at:at + 4] = b"\x1b[2J"
    path.write_bytes(bytes(data[:at + 100]))  # (cut there, the footer with it: the walk meets the frame)
    rec = Recording(path)
    list(rec.iter_events())
    said = [text for _, text in rec.unknown_frames] + [str(d) for d in rec.damage]
    assert any("1b5b324a" in s for s in said)
    assert not any("\x1b" in s for s in said)
