"""Opens recordings: fast through the footer index when the file is whole, by walking frames when it is not.

A recording cut short (kill -9, power loss) or damaged in the middle still yields every complete, CRC-valid
chunk; what was lost is described in `Recording.damage`, with byte offsets, instead of being hidden.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import RecordingError
from ..events import Event
from .framing import FRAME, MAGIC, MAX_FRAME, TAG_CHUNK, TAG_FOOTER, TAG_HEADER, TAIL, TAIL_MAGIC
from .header import FORMAT_NAME, FORMAT_VERSION, DeviceInfo, Header


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """Where one chunk's payload lies and what time span and how many events it covers."""

    offset: int  # of the frame
    length: int  # of the payload
    t0: int
    t1: int
    n: int

    @property
    def payload_offset(self) -> int:
        return self.offset + FRAME.size


@dataclass(frozen=True, slots=True)
class Damage:
    """A place where the file stops making sense, and what that cost."""

    offset: int
    what: str

    def __str__(self) -> str:
        return f"byte {self.offset}: {self.what}"


def _unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


def _chunk_meta(payload: bytes) -> dict[str, Any]:
    """A chunk's leading keys (t0, t1, n, ...) without decoding its events."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(payload)
    meta: dict[str, Any] = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        if key == "events":
            break
        meta[key] = u.unpack()
    return meta


class Recording:
    """A read-only view of a .pasidrec file; chunks are read and decoded only when asked for.

    Chunks are read with pread rather than mmap so that a big recording's bytes do not stay resident.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise RecordingError(self.path, "", e.strerror or str(e)) from None
        self.size = os.fstat(self._fd).st_size
        if self.size == 0:
            self.close()
            raise RecordingError(self.path, "byte 0", "empty file, not a recording")
        self.damage: list[Damage] = []
        self.footer: dict[str, Any] | None = None
        self.chunks: list[ChunkInfo] = []
        self.unknown_frames: list[tuple[int, str]] = []
        try:
            self.header = self._read_header()
            if not self._open_by_footer():
                self._open_by_walking()
        except BaseException:
            self.close()
            raise

    def _read(self, off: int, n: int) -> bytes:
        assert self._fd is not None, "recording is closed"
        return os.pread(self._fd, n, off)

    # -- opening -------------------------------------------------------------------------------------------
    def _fail(self, offset: int, what: str) -> RecordingError:
        return RecordingError(self.path, f"byte {offset}", what)

    def _read_header(self) -> Header:
        head = self._read(0, len(MAGIC))
        if head != MAGIC:
            raise self._fail(0, f"not a PASID Explorer recording (starts with {head!r}, "
                                f"expected {MAGIC!r})")
        tag, length, crc, payload, _ = self._frame_at(len(MAGIC))
        if tag != TAG_HEADER:
            raise self._fail(len(MAGIC), f"expected the header frame, found {tag!r}")
        if zlib.crc32(payload) != crc:
            raise self._fail(len(MAGIC), "header frame fails its checksum (corrupt)")
        try:
            d = _unpack(payload)
        except Exception as e:  # msgpack raises several unrelated types
            raise self._fail(len(MAGIC) + FRAME.size, f"header is not valid msgpack ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise self._fail(len(MAGIC), "header does not name the pasidrec format")
        if not isinstance(d.get("version"), int) or d["version"] > FORMAT_VERSION:
            raise self._fail(len(MAGIC), f"format version {d.get('version')} is newer than this explorer "
                                         f"reads ({FORMAT_VERSION}); upgrade pasid-explorer")
        self._after_header = len(MAGIC) + FRAME.size + length
        return Header.from_dict(d)

    def _frame_at(self, off: int, want_payload: bool = True) -> tuple[bytes, int, int, bytes, str | None]:
        """Frame at `off`: tag, length, crc, payload, and why it is incomplete (None when whole)."""
        if off + FRAME.size > self.size:
            return b"", 0, 0, b"", f"file ends inside a frame header ({self.size - off} of " \
                                   f"{FRAME.size} bytes present)"
        tag, length, crc = FRAME.unpack(self._read(off, FRAME.size))
        start = off + FRAME.size
        if length > MAX_FRAME:
            return tag, length, crc, b"", f"frame length {length} is implausible (corrupt)"
        if start + length > self.size:
            return tag, length, crc, b"", (f"file ends inside a {tag.decode('ascii', 'replace')} "
                                           f"frame ({self.size - start} of {length} bytes present)")
        return tag, length, crc, self._read(start, length) if want_payload else b"", None

    def _open_by_footer(self) -> bool:
        if self.size < self._after_header + TAIL.size:
            return False
        footer_off, magic = TAIL.unpack(self._read(self.size - TAIL.size, TAIL.size))
        if magic != TAIL_MAGIC or not self._after_header <= footer_off < self.size - TAIL.size:
            return False
        tag, _, crc, payload, why = self._frame_at(footer_off)
        if why or tag != TAG_FOOTER or zlib.crc32(payload) != crc:
            return False
        try:
            footer = _unpack(payload)
            chunks = [ChunkInfo(*map(int, c[:5])) for c in footer["chunks"]]
        except Exception:
            return False
        self.footer = footer
        self.chunks = chunks
        return True

    def _open_by_walking(self) -> None:
        off = self._after_header
        while off < self.size:
            tag, length, crc, payload, why = self._frame_at(off)
            if why:
                self.damage.append(Damage(off, f"{why}: the recording was cut short here; "
                                               f"{len(self.chunks)} complete chunks kept"))
                return
            if zlib.crc32(payload) != crc:
                self.damage.append(Damage(off, f"{tag.decode('ascii', 'replace')} frame fails its checksum: "
                                               f"corrupt from here; {len(self.chunks)} complete chunks kept"))
                return
            if tag == TAG_CHUNK:
                try:
                    meta = _chunk_meta(payload)
                    info = ChunkInfo(off, length, int(meta["t0"]), int(meta["t1"]), int(meta["n"]))
                except Exception:
                    self.damage.append(Damage(off, "chunk passes its checksum but does not decode; skipped"))
                else:
                    self.chunks.append(info)
            elif tag == TAG_FOOTER:
                # A footer without a tail: only the last 16 bytes were lost. Nothing more to walk.
                self.damage.append(Damage(off, "footer present but the closing tail is missing"))
                return
            else:
                self.unknown_frames.append((off, tag.decode("ascii", "replace")))
            off += FRAME.size + length
        self.damage.append(Damage(self.size, f"no footer: the capture did not close cleanly (killed?); "
                                             f"{len(self.chunks)} complete chunks kept"))

    # -- reading --------------------------------------------------------------------------------------------
    def chunk_payload(self, i: int) -> bytes:
        """Chunk `i`'s payload, checked against its frame's CRC."""
        c = self.chunks[i]
        tag, length, crc, payload, why = self._frame_at(c.offset)
        if why or tag != TAG_CHUNK or length != c.length:
            raise self._fail(c.offset, f"chunk {i} of {c.n} events is unreadable ({why or 'bad frame'})")
        if zlib.crc32(payload) != crc:
            raise self._fail(c.offset, f"chunk {i} of {c.n} events fails its checksum (corrupt)")
        return payload

    def chunk_rows(self, i: int) -> list[list[Any]]:
        """Decode chunk `i` into rows (see `Event.to_row`)."""
        payload = self.chunk_payload(i)
        try:
            rows = _unpack(payload)["events"]
        except Exception as e:
            raise self._fail(self.chunks[i].offset, f"chunk {i} passes its checksum but does not decode ({e})") \
                from None
        if not isinstance(rows, list):
            raise self._fail(self.chunks[i].offset, f"chunk {i} holds no event list")
        return rows

    def try_chunk_rows(self, i: int) -> list[list[Any]] | None:
        """Chunk `i`'s rows, or None after noting in `damage` why it cannot be read."""
        try:
            return self.chunk_rows(i)
        except RecordingError as e:
            offset = self.chunks[i].offset
            if all(d.offset != offset for d in self.damage):
                self.damage.append(Damage(offset, f"{e.what}; its {self.chunks[i].n} events are skipped"))
            return None

    def iter_rows(self) -> Iterator[list[Any]]:
        """Every readable row in order; unreadable chunks are skipped and described in `damage`."""
        for i in range(len(self.chunks)):
            yield from self.try_chunk_rows(i) or ()

    def iter_events(self) -> Iterator[Event]:
        for row in self.iter_rows():
            yield Event.from_row(row)

    @property
    def event_count(self) -> int:
        return sum(c.n for c in self.chunks)

    @property
    def complete(self) -> bool:
        return self.footer is not None and not self.damage

    @property
    def devices(self) -> list[DeviceInfo]:
        """The header's device table, completed by devices the footer learned of during capture."""
        table = {d.name: d for d in self.header.devices}
        for d in (self.footer or {}).get("devices", []):
            if isinstance(d, dict) and d.get("name") not in table:
                info = DeviceInfo.from_dict(d)
                table[info.name] = info
        return list(table.values())

    def damage_summary(self) -> str | None:
        """One honest line about what is missing, or None for a whole file."""
        if not self.damage:
            return None
        return "; ".join(str(d) for d in self.damage)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_recording(path: str | os.PathLike[str]) -> Recording:
    return Recording(path)
