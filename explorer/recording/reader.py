"""Opens recordings: fast through the footer index when the file is whole, by walking frames when it is not.

A recording cut short (kill -9, power loss) or damaged in the middle still yields every complete, CRC-valid
chunk; what was lost is described in `Recording.damage`, with byte offsets, instead of being hidden.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, NamedTuple

import msgpack
import numpy as np

from ..errors import RecordingError
from ..events import R_DEVICE, R_KIND, R_PASID, R_TS, Event, Row, machine_of
from ..machines import HOST, QUALIFIER, ClockSnapshot, Machine
from ..schema import TS_END, checked
from ..units import counted
from .columns import ChunkColumns
from .columns import unpack as unpack_columns
from .fieldmaps import FieldColumns
from .footer import MIN_EVENT_BYTES, MIN_ROW_BYTES, checked_keys, entry_problem, index_problem
from .framing import FRAME, MAGIC, MAX_FRAME, TAG_CHUNK, TAG_FOOTER, TAG_HEADER, TAIL, TAIL_MAGIC
from .header import PACKED_VERSION, BadHeader, DeviceInfo, Header
from .packed import BadChunk, PackedChunk

_TAGS = re.compile(re.escape(TAG_CHUNK) + b"|" + re.escape(TAG_FOOTER))
UNKNOWN_LOSS = "events of unknown number lost"  # what bytes skipped as damage cost
_SCAN_BLOCK = 1 << 20  # bytes read at a time when looking past damage for the next intact frame


class ChunkInfo(NamedTuple):
    """Where one chunk's payload lies and what time span and how many events it covers (a named tuple: a footer
    lists one a second of a long capture, and these are made in half a dataclass's time)."""

    offset: int  # of the frame
    length: int  # of the payload
    t0: int
    t1: int
    n: int

    @property
    def payload_offset(self) -> int:
        return self.offset + FRAME.size


class _Frame(NamedTuple):
    """A frame as found at some offset; `why` says why it is not whole (None when it is)."""

    tag: bytes
    length: int
    crc: int
    payload: bytes
    why: str | None

    @property
    def intact(self) -> bool:
        """Whole, CRC-valid and tagged in letters or digits (zeros left by a crash pass a CRC of nothing)."""
        return self.why is None and self.tag.isalnum() and zlib.crc32(self.payload) == self.crc

    @property
    def fault(self) -> str:
        if self.why:
            return self.why
        if not self.tag.isalnum():
            return f"not a frame (tag {self.tag!r})"
        return f"{self.tag.decode('ascii')} frame fails its checksum"


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
    """A chunk's leading keys (t0, t1, n, ...) without decoding its events (format 1) or columns (format 2)."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(payload)
    meta: dict[str, Any] = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        if key in ("events", "z"):
            break
        meta[key] = u.unpack()
    return meta


Refused = Callable[[int, str], None]  # told of a row the schema refuses: its place in the chunk, the problem


# The rows at some positions of a chunk, unchecked, and the places (in that list) of those that may break the schema
# when they were judged as they were decoded (None: they are still to judge)
Decode = Callable[[ChunkColumns, list[int]], tuple[list[Any], list[int] | None]]


@dataclass(frozen=True, slots=True)
class ChunkHead:
    """A chunk's columns and a way to decode any of its rows alone: the index decodes only the rows the model
    replays."""

    cols: ChunkColumns
    refused: Refused  # the reader's note of a row the schema refuses
    decode: Decode
    packed: PackedChunk | None = None  # its compressed columns (format 2 and 3), which `decode` reads

    def rows(self, positions: list[int]) -> list[Row | None]:
        """A list as long as the chunk with the rows at `positions` decoded (None elsewhere), each checked by the
        schema (a refused row comes back as a one-event loss). ValueError when a row does not decode, or (in
        format 1, where rows are stored beside their columns) is not the one its columns say."""
        out: list[Any] = [None] * len(self.cols.ts)
        rows, suspected = self.decode(self.cols, positions)
        good = checked(rows, lambda n, problem: self.refused(positions[n], problem),
                       common_known=self.packed is not None and self.packed.tables_fit(), suspected=suspected)
        for j, row in zip(positions, good, strict=True):
            out[j] = row
        return out

    def field_columns(self, positions: np.ndarray, wanted: frozenset[str], names: tuple[str, ...]
                      ) -> FieldColumns | None:
        """The field maps at `positions` of the kinds `wanted` read as columns of `names`, without decoding the rows
        (see `PackedChunk.field_columns`); None in a chunk without stored columns, or one whose rows are judged
        whole. A row not read is decoded by `rows` as before."""
        return None if self.packed is None else self.packed.field_columns(self.cols, positions, wanted, names)

    def pids(self, positions: list[int]) -> list[Any]:
        """The pid of each row at `positions`, read without decoding the rows (a chunk with stored columns)."""
        assert self.packed is not None
        return self.packed.pids(positions)

    def check_ends(self) -> None:
        """ValueError when the chunk's first or last row is not the event its columns say (format 1 stores rows
        beside their columns), or when the columns its rows are made of (format 2 and 3) do not decompress or do
        not fit its events; its rows are checked by the schema when they are decoded."""
        n = len(self.cols.ts)
        if self.packed is not None:
            self.packed.check()
        elif n:
            self.rows([0, n - 1])


@dataclass(frozen=True, slots=True)
class _StoredRows:
    """Format 1: rows stored one after another, located by the columns' byte offsets."""

    payload: bytes
    start: int  # where the first row begins in `payload`

    def __call__(self, cols: ChunkColumns, positions: list[int]) -> tuple[list[Any], None]:
        at, start, keys = cols.row_at, self.start, cols.keys
        assert at is not None
        view = memoryview(self.payload)
        out = []
        for j, t, k in zip(positions, cols.ts[positions].tolist(), cols.key_of[positions].tolist(), strict=True):
            row = msgpack.unpackb(view[start + at[j]:start + at[j + 1]], raw=False, strict_map_key=False)
            if type(row) is not list or len(row) <= R_PASID or row[R_TS] != t or \
                    (row[R_KIND], row[R_DEVICE], row[R_PASID]) != keys[k]:
                raise ValueError(f"event {j} of the chunk does not match its columns")
            out.append(row)
        return out, None


class Recording:
    """A read-only view of a .pasidrec file; chunks are read and decoded only when asked for.

    Chunks are read with pread rather than mmap so that a big recording's bytes do not stay resident.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._last_payload: tuple[int, bytes] = (-1, b"")
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise RecordingError(self.path, "", e.strerror or str(e)) from None
        st = os.fstat(self._fd)
        self.size = st.st_size
        if stat.S_ISDIR(st.st_mode):
            self.close()
            raise RecordingError(self.path, "", "is a directory, not a recording")
        if self.size == 0:
            self.close()
            raise RecordingError(self.path, "byte 0", "empty file, not a recording")
        self.damage: list[Damage] = []
        self._skipped: dict[int, Damage] = {}  # chunk -> the damage skipped just before it, walking: see loss_before
        self.footer: dict[str, Any] | None = None
        self.chunks: list[ChunkInfo] = []
        self._counted: tuple[list[ChunkInfo], int, int] = (self.chunks, 0, 0)  # see event_count
        self.unknown_frames: list[tuple[int, str]] = []
        self._refused: set[tuple[int, int]] = set()  # (chunk, event) of each row the schema refused
        self._refused_footer = -1  # offset of a footer whose index was refused: the walk ends there
        self._header_damage: str | None = None  # why the header frame could not be read (see _unread_header)
        try:
            self.header = self._read_header()
            if not self._open_by_footer():
                self._open_by_walking()
            if self._header_damage is not None:
                table = self._machines_of_rows()
                self.header = replace(self.header, machines=table)
                apart = f" (its rows name {len(table)} machines, each kept apart)" if table else ""
                self.damage.insert(0, Damage(len(MAGIC), f"{self._header_damage}; what follows it is read "
                                                         f"({counted(len(self.chunks), 'chunk')}){apart}, judged by "
                                                         "the current kernel's rules as a recording that could not "
                                                         "see the PASID lifecycle"))
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
        found = self._frame_at(len(MAGIC))
        tag, length, crc, payload, why = found
        if not TAG_HEADER.startswith(tag):
            return self._unread_header(found, f"expected the header frame, found {tag!r}",
                                       f"its tag is {_tag_text(tag)}, not HEAD")
        if why:
            return self._unread_header(found, why, f"its length, {length}, cannot be right")
        if zlib.crc32(payload) != crc:
            return self._unread_header(found, "header frame fails its checksum (corrupt)", "fails its checksum")
        try:
            d = _unpack(payload)
        except Exception as e:  # msgpack raises several unrelated types
            raise self._fail(len(MAGIC) + FRAME.size, f"header is not valid msgpack ({e})") from None
        if not isinstance(d, dict):
            raise self._fail(len(MAGIC), f"header is not a map (found {type(d).__name__})")
        try:
            header = Header.from_dict(d)
        except BadHeader as e:
            raise self._fail(len(MAGIC), str(e)) from None
        self._after_header = len(MAGIC) + FRAME.size + length
        self._min_event_bytes = MIN_ROW_BYTES if header.version < PACKED_VERSION else MIN_EVENT_BYTES
        return header

    def _unread_header(self, found: _Frame, error: str, damage: str) -> Header:
        """The header frame is damaged: the chunks after it, each under its own checksum, are read under a header
        that knows nothing (`Header.unread`), and `damage` says so. `error` is the file's one-line error when no
        intact chunk or footer follows (a file cut inside its header, a foreign one)."""
        first = self._next_intact_frame(len(MAGIC) + 1)
        if first is None:
            raise self._fail(len(MAGIC), error)
        # Its length is trusted where it ends at a frame, not past an intact one (a flipped length bit can land on
        # a later chunk): the walk then names any damage from there; else the walk starts at that intact frame.
        end = len(MAGIC) + FRAME.size + found.length
        if found.why is None and end <= first and self._may_start_frame(end):
            self._after_header = end
        else:
            self._after_header = first
            damage += f"; bytes {len(MAGIC)} to {first - 1} skipped, up to the next intact frame"
        self._min_event_bytes = MIN_EVENT_BYTES  # the version is unknown: the least a chunk's event may take
        self._header_damage = (f"header frame damaged ({damage}): the kernel, probes and machines it named are "
                               "unknown, and its devices but for those the footer lists")
        return Header.unread("the recording's header is damaged, so what its capture could see is not known")

    def _machines_of_rows(self) -> list[Machine]:
        """A damaged header's machines, recovered from the rows: a merged recording's rows name their machine by
        number and its devices by `name/`, so each machine keeps its own state in the model rather than one
        machine's PASIDs meeting another's. Each is unknown but for its name (its device prefix; `#n` where its
        rows name none), so each is judged as the header's own machine is; [] for rows of one machine. The rows
        are read once more for this, only for a file whose header is damaged."""
        names: dict[int, str | None] = {}
        for row in self.iter_rows():
            number, device = machine_of(row), row[R_DEVICE]
            if names.get(number) is None:
                head, sep, _ = device.partition(QUALIFIER) if isinstance(device, str) else ("", "", "")
                names[number] = head if sep and number else None
        if max(names, default=0) == 0:
            return []
        given = [HOST, *(names.get(n) or f"#{n}" for n in range(1, max(names) + 1))]
        if len(set(given)) < len(given):  # (two machines' rows under one prefix: numbers tell them apart)
            given = [HOST, *(f"#{n}" for n in range(1, len(given)))]
        notes = {"source": self.header.source, "probes": self.header.probes}  # (each as unknown as the first)
        return [Machine(name=name, extra=dict(notes)) for name in given]

    def _frame_at(self, off: int) -> _Frame:
        """The frame at `off`; one cut inside its 12 leading bytes comes back with what is present of its tag. The
        bytes are counted as read, not from the size at opening: a file cut shorter since reads as cut there."""
        head = self._read(off, FRAME.size)
        if len(head) < FRAME.size:
            return _Frame(head[:4], 0, 0, b"", f"file ends inside {_frame_name(head)} ({len(head)} of at least "
                                               f"{FRAME.size} bytes present)")
        tag, length, crc = FRAME.unpack(head)
        start = off + FRAME.size
        if length > MAX_FRAME:
            return _Frame(tag, length, crc, b"", f"frame length {length} is implausible (corrupt)")
        # (a length past the end is not read: it may be up to MAX_FRAME)
        data = self._read(start, length) if start + length <= self.size else b""
        if len(data) < length:
            present = FRAME.size + (len(data) if start + length <= self.size else self.size - start)
            return _Frame(tag, length, crc, b"", f"file ends inside {_frame_name(tag)} ({present} of "
                                                 f"{FRAME.size + length} bytes present)")
        return _Frame(tag, length, crc, data, None)

    def _open_by_footer(self) -> bool:
        if self.size < self._after_header + TAIL.size:
            return False
        footer_off, magic = TAIL.unpack(self._read(self.size - TAIL.size, TAIL.size))
        if magic != TAIL_MAGIC or not self._after_header <= footer_off < self.size - TAIL.size:
            return False
        found = self._frame_at(footer_off)
        if found.tag != TAG_FOOTER or not found.intact:
            return False
        try:
            footer = _unpack(found.payload)
        except Exception:  # msgpack raises several unrelated types
            footer = None
        if not isinstance(footer, dict):
            return False
        problem = index_problem(footer.get("chunks"), self._after_header, footer_off, self._min_event_bytes)
        if problem is not None:  # a lying index: the frames themselves say where the chunks are
            self.damage.append(Damage(footer_off, f"footer index refused ({problem}); the chunks are found by "
                                                  "walking the file"))
            self._refused_footer = footer_off
            return False
        self.footer, dropped = checked_keys(footer)
        self.damage += [Damage(footer_off, d) for d in dropped]
        self.chunks = [ChunkInfo._make(c[:5]) for c in footer["chunks"]]
        return True

    def follow(self, offset: int, length: int, t0: int, t1: int, n: int) -> None:
        """A chunk frame a writer has just completed at `offset` of this file, which grows as it writes (a live
        session's older rows): from now on it is the last of `chunks`, read as any other."""
        self.size = max(self.size, offset + FRAME.size + length)
        self.chunks.append(ChunkInfo(offset, length, t0, t1, n))

    def _open_by_walking(self) -> None:
        """Keep every intact chunk after the header, stepping over damage: there is no footer index to trust."""
        off = self._after_header
        while off < self.size and not self._is_tail(off):
            found = self._frame_at(off)
            if found.intact:
                if self._take_frame(off, found):
                    return
                off += FRAME.size + found.length
                continue
            resume = self._resume_after(off, found)
            if resume is None:
                return
            off = resume
        ending = ("the footer is lost though the file was closed" if self._is_tail(off) else
                  "no footer: the capture did not close cleanly (killed?)")
        self.damage.append(Damage(off, f"{ending}; {len(self.chunks)} complete chunks kept"))

    def _take_frame(self, off: int, found: _Frame) -> bool:
        """Keep an intact frame found by walking; True when it ends the walk (a footer)."""
        tag, length, _, payload, _ = found
        if tag == TAG_CHUNK:
            try:
                meta = _chunk_meta(payload)
                entry = [off, length, meta.get("t0"), meta.get("t1"), meta.get("n")]
                problem = entry_problem(entry, self._min_event_bytes)
            except Exception:  # msgpack raises several unrelated types
                problem = "does not decode"
            if problem is None:
                self.chunks.append(ChunkInfo(*entry))
            else:
                self._skip(off, f"chunk passes its checksum but {problem}; skipped: {UNKNOWN_LOSS}")
        elif tag == TAG_FOOTER and off == self._refused_footer:
            return True  # its index was refused, and said so: the chunks before it are all there is
        elif tag == TAG_FOOTER:
            # A footer without a tail: only the last 16 bytes were lost. Nothing more to walk.
            self.damage.append(Damage(off, "footer present but the closing tail is missing"))
            return True
        else:
            # Skipped as the format says; noted too, since in a damaged file it may be a chunk whose tag was hit.
            self.unknown_frames.append((off, _tag_text(tag)))
            self.damage.append(Damage(off, f"frame with unknown tag {tag!r} skipped ({length} bytes)"))
        return False

    def _resume_after(self, off: int, bad: _Frame) -> int | None:
        """Where walking goes on after the bad frame at `off` (None: nowhere), having noted what was lost.

        A whole frame whose end is where a frame may start lost only its payload; otherwise its length is not
        to be trusted, and the next intact chunk or footer is looked for byte by byte."""
        tag, length, _, _, why = bad
        end = off + FRAME.size + length
        if why is None and self._may_start_frame(end):
            self._skip(off, f"{bad.fault}; its {FRAME.size + length} bytes are skipped: {UNKNOWN_LOSS}")
            return end
        found = self._next_intact_frame(off + 1)
        if found is not None:
            self._skip(off, f"damaged frame (tag {tag!r}, length {length}): bytes {off} to {found - 1} skipped, "
                            f"up to the next intact frame: {UNKNOWN_LOSS}")
            return found
        kept = f"{len(self.chunks)} complete chunks kept"
        if why is not None and length <= MAX_FRAME:
            self.damage.append(Damage(off, f"{why}: the recording was cut short here; {kept}"))
        else:
            self.damage.append(Damage(off, f"{bad.fault}: nothing intact from here to the end "
                                           f"({self.size - off} bytes); {kept}"))
        return None

    def _skip(self, off: int, what: str) -> None:
        """Note bytes the walk steps over: the events they held are a loss before the next chunk kept."""
        self.damage.append(Damage(off, what))
        self._skipped.setdefault(len(self.chunks), self.damage[-1])

    def loss_before(self, i: int) -> tuple[int, str] | None:
        """The time (ns) and description of the events of unknown number lost to damage the walk stepped over
        just before chunk `i` (a file without a usable footer), or None. The loss is put just after the last
        readable event before it: the state is uncertain from there, as after an unreadable chunk's loss."""
        skipped = self._skipped.get(i)
        if skipped is None or not 0 <= i < len(self.chunks):
            return None
        t = self.chunks[i].t0 if i == 0 else min(self.chunks[i - 1].t1 + 1, self.chunks[i].t0)
        return t, str(skipped)

    def _may_start_frame(self, off: int) -> bool:
        """Is `off` the end of the file, the tail, or the start (perhaps cut) of a chunk or footer frame?"""
        head = self._read(off, len(TAG_CHUNK))
        return self._is_tail(off) or any(t.startswith(head) for t in (TAG_CHUNK, TAG_FOOTER))

    def _next_intact_frame(self, start: int) -> int | None:
        """Offset of the first whole, CRC-valid chunk or footer frame at or after `start`."""
        for block_start in range(start, self.size, _SCAN_BLOCK):
            block = self._read(block_start, _SCAN_BLOCK + len(TAG_CHUNK) - 1)
            for m in _TAGS.finditer(block):
                if self._frame_at(block_start + m.start()).intact:
                    return block_start + m.start()
        return None

    def _is_tail(self, off: int) -> bool:
        magic_at = self.size - len(TAIL_MAGIC)
        return off == self.size - TAIL.size and self._read(magic_at, len(TAIL_MAGIC)) == TAIL_MAGIC

    # -- reading --------------------------------------------------------------------------------------------
    def chunk_payload(self, i: int) -> bytes:
        """Chunk `i`'s payload, checked against its frame's CRC. The last one read is kept: opening a file
        written without columns looks for them, then reads the rows, from one read and one check."""
        last = self._last_payload  # one read of the pair: a worker thread may replace it meanwhile
        if last[0] == i:
            return last[1]
        c = self.chunks[i]
        tag, length, crc, payload, why = self._frame_at(c.offset)
        if why or tag != TAG_CHUNK or length != c.length:
            raise self._fail(c.offset, f"chunk {i} of {c.n} events is unreadable ({why or 'bad frame'})")
        if zlib.crc32(payload) != crc:
            raise self._fail(c.offset, f"chunk {i} of {c.n} events fails its checksum (corrupt)")
        self._last_payload = (i, payload)
        return payload

    def _packed(self, i: int, chunk: dict[Any, Any]) -> PackedChunk:
        """Chunk `i`'s format 2 columns, from its map (`z` and the leading keys); BadChunk when they do not fit
        what the index says of the chunk, or do not decode."""
        info = self.chunks[i]
        n, t0 = chunk.get("n"), chunk.get("t0")
        if n != info.n or type(n) is not int or t0 != info.t0 or type(t0) is not int:
            raise BadChunk(f"it says it holds {n!r:.20} events from {t0!r:.24}, its index {info.n} from {info.t0}")
        return PackedChunk(chunk.get("z"), n, t0)

    def _undecodable(self, i: int, e: Exception) -> RecordingError:
        return self._fail(self.chunks[i].offset, f"chunk {i} passes its checksum but does not decode ({e})")

    def chunk_rows(self, i: int) -> list[Row]:
        """Decode chunk `i` into rows (see `Event.to_row`), each checked by the schema: a refused row comes back
        as a one-event loss at its place, and `damage` names it."""
        fit, suspected = False, None
        try:
            chunk = _unpack(self.chunk_payload(i))
            if isinstance(chunk, dict) and "z" in chunk:
                packed = self._packed(i, chunk)
                (rows, suspected), fit = packed.rows(), packed.tables_fit()
            else:
                rows = chunk["events"]
        except RecordingError:
            raise
        except Exception as e:  # msgpack raises several unrelated types
            raise self._undecodable(i, e) from None
        if not isinstance(rows, list):
            raise self._fail(self.chunks[i].offset, f"chunk {i} holds no event list")
        t0 = self.chunks[i].t0
        return checked(rows, lambda j, problem: self.refuse(i, j, problem), t0 if 0 <= t0 < TS_END else 0,
                       common_known=fit, suspected=suspected)

    def refuse(self, i: int, j: int, problem: str) -> None:
        """Note, once, that event `j` of chunk `i` breaks the schema and is read as a one-event loss."""
        if (i, j) not in self._refused:
            self._refused.add((i, j))
            self.damage.append(Damage(self.chunks[i].offset, f"chunk {i}, event {j}: {problem}; "
                                                             "read as one lost event"))

    def chunk_head(self, i: int) -> ChunkHead | None:
        """Chunk `i`'s columns, with what it takes to decode any of its rows alone; None when it has no columns
        that locate its rows (or cannot be read): the caller then reads it whole."""
        refused: Refused = lambda j, problem: self.refuse(i, j, problem)  # noqa: E731
        try:
            payload = self.chunk_payload(i)
            u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(payload), 1))
            u.feed(payload)
            meta: dict[Any, Any] = {}
            for _ in range(u.read_map_header()):
                key = u.unpack()
                if key == "events":
                    n = u.read_array_header()
                    cols = unpack_columns(meta.get("cols"), n)
                    if cols is None or cols.row_at is None or u.tell() + cols.row_at[-1] != len(payload):
                        return None
                    return ChunkHead(cols, refused, _StoredRows(payload, u.tell()))
                if key in ("cols", "z", "n", "t0"):
                    meta[key] = u.unpack()
                else:
                    u.skip()
            if "z" in meta:
                return self.packed_head(i, self._packed(i, meta))
        except (RecordingError, ValueError, msgpack.UnpackException):
            return None
        return None

    def packed_head(self, i: int, packed: PackedChunk) -> ChunkHead:
        """Chunk `i`'s head from its columns (read here, or by the model's helper process: see read_ahead.py)."""
        return ChunkHead(packed.cols, lambda j, problem: self.refuse(i, j, problem), packed.rows_at, packed)

    def try_chunk_rows(self, i: int) -> list[Row] | None:
        """Chunk `i`'s rows, or None after noting in `damage` why it cannot be read."""
        try:
            return self.chunk_rows(i)
        except RecordingError as e:
            offset = self.chunks[i].offset
            if not any(d.offset == offset and d.what.startswith(e.what) for d in self.damage):
                self.damage.append(Damage(offset, f"{e.what}; its {self.chunks[i].n} events cannot be read"))
            return None

    def said_of(self, i: int) -> str:
        """Why chunk `i` could not be read: what `damage` says at its offset."""
        info = self.chunks[i]
        return next((str(d) for d in self.damage if d.offset == info.offset),
                    f"byte {info.offset}: unreadable chunk of {info.n} events")

    def iter_rows(self) -> Iterator[list[Any]]:
        """Every readable row in order; unreadable chunks are skipped and described in `damage`."""
        for i in range(len(self.chunks)):
            yield from self.try_chunk_rows(i) or ()

    def iter_events(self) -> Iterator[Event]:
        for row in self.iter_rows():
            yield Event.from_row(row)

    @property
    def event_count(self) -> int:
        """The events the chunks hold, each chunk counted once (the screen asks at every frame while it indexes,
        and a long quiet capture lists a chunk a second: chunks are only ever added to the list)."""
        chunks, seen, events = self._counted
        if chunks is not self.chunks:  # (the footer's list replaced the empty one)
            chunks, seen, events = self.chunks, 0, 0
        now = len(chunks)  # (a writer's thread may append meanwhile: the rest are counted next time)
        if seen != now:
            events += sum(c.n for c in islice(chunks, seen, now))
            self._counted = (chunks, now, events)
        return events

    @property
    def header_unread(self) -> bool:
        """Whether the header frame was damaged, so that `header` knows nothing but what the rows show."""
        return self._header_damage is not None

    @property
    def complete(self) -> bool:
        return self.footer is not None and not self.damage

    @property
    def devices(self) -> list[DeviceInfo]:
        """The header's device table, completed by devices the footer learned of during capture."""
        table = {d.name: d for d in self.header.devices}
        for d in (self.footer or {}).get("devices", []):
            try:
                info = DeviceInfo.from_dict(d)
            except BadHeader:
                continue  # the footer is only a completion of the header's table
            table.setdefault(info.name, info)
        return list(table.values())

    @property
    def machines(self) -> list[Machine]:
        """The header's machine table; a one-machine recording's end clocks are in the footer (`clock_end`),
        read there when the capture closed."""
        table = self.header.machine_table
        end = (self.footer or {}).get("clock_end")
        if len(table) == 1 and table[0].end is None and end is not None:
            return [replace(table[0], end=ClockSnapshot.from_dict(end, "clock_end"))]
        return table

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


def _tag_text(tag: bytes) -> str:
    """A frame's tag as text: its letters where it is four printable ASCII characters (every tag the format
    defines), else its bytes in hex (a damaged file's tag is arbitrary bytes, a terminal escape among them)."""
    return tag.decode("ascii") if len(tag) == 4 and all(0x20 < b < 0x7F for b in tag) else tag.hex()


def _frame_name(head: bytes) -> str:
    """How a damage line names the frame whose leading bytes are `head`."""
    return f"a {_tag_text(head[:4])} frame" if len(head) >= 4 else "a frame"
