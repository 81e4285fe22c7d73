"""Recordings keep every event, every field, and every complete chunk, whatever happens to the file."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.errors import RecordingError
from explorer.events import KINDS, Event, Kind, make
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter, write_events
from explorer.recording.framing import MAGIC, frame

DEV = "0000:6a:01.0"
HEADER = Header("test", host={"kernel": "6.18.0"}, devices=[DeviceInfo(DEV, 20, True, True, "idxd")])

_values = {int: st.integers(0, 2**63 - 1), str: st.text(max_size=12), bool: st.booleans(),
           dict: st.dictionaries(st.text(max_size=5), st.integers(0, 99), max_size=3),
           list: st.lists(st.integers(0, 99), max_size=3)}


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(sorted(KINDS)))
    fields = {}
    for f in KINDS[kind]:
        typ = f.type[0] if isinstance(f.type, tuple) else f.type
        if f.required or draw(st.booleans()):
            fields[f.name] = draw(_values[typ])
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
        w.append_row([5, "pasid_teleport", DEV, 7, 0, 1, "x", "probe-v9", {"warp": 3}, "extra-column"])
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
            assert str(err.value).startswith(f"{cut}:byte ")
            continue
        with Recording(cut) as rec:
            complete = sum(1 for end in chunk_ends if end <= size)
            assert list(rec.iter_events()) == [e for c in chunks[:complete] for e in c], size
            assert rec.damage, f"a file cut at byte {size} must say it was cut"
            assert not rec.complete


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


def test_a_newer_major_version_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "v2.pasidrec"
    write_events(path, HEADER, [])
    data = path.read_bytes()
    header = msgpack.packb({**HEADER.to_dict(), "version": 99})
    rest_start = len(MAGIC) + 12 + int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "little")
    path.write_bytes(MAGIC + frame(b"HEAD", header) + data[rest_start:])
    with pytest.raises(RecordingError, match="newer than this explorer reads"):
        Recording(path)


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
