"""Where a live session's older rows go: a recording written as it goes, read back on demand.

`live` keeps only a window of recent rows in memory (see `RecordingIndex.add_rows`); a seek, the event panel or
a search reads older ones back through the ordinary recording reader, which follows the file as it grows.
Memory then holds per batch only its place in the file. The file is
  - with `-o`, the recording `live` writes anyway (`OutputSpill`): its writer cuts chunks of its own (4,096
    events, or a second's) and sorts each by time, so the screen's batch `c` is found by where its rows arrived
    in the writer's stream, and a chunk the sort reordered is put back in arrival order;
  - without, an unnamed temporary recording (`TempSpill`), one chunk per batch (format 3: zstd-compressed
    columns, about 11 bytes an event).
"""

from __future__ import annotations

import os
import stat
import tempfile
from bisect import bisect_right
from typing import Protocol

import numpy as np

from .errors import ExplorerError
from .events import R_TS, Kind, Row
from .recording import ChunkInfo, Header, Recording, RecordingWriter
from .recording.framing import FRAME

_NEVER = 1 << 62  # the writer cuts no chunk of its own: each batch is flushed as one


class LiveSpill(Protocol):
    """Older live batches, by the index's chunk number."""

    def put(self, c: int, start: int, rows: list[Row]) -> bool:
        """Take chunk `c` (the index's events `start` ...): False when its rows must stay in memory."""
        ...

    def __contains__(self, c: int) -> bool: ...

    def close(self) -> None:
        """Let go of the files it reads (and writes)."""
        ...

    def rows(self, c: int) -> list[Row]:
        """Chunk `c`'s rows as they arrived (`unreadable` stand-ins, when the file can no longer give them)."""
        ...


def unreadable(chunk: ChunkInfo, path: str) -> list[Row]:
    """Stand-ins for a written chunk that no longer reads back as written (the file was cut or overwritten while
    the session ran, or its disk failed): one loss an event at the chunk's start, so that every view still finds
    as many rows as it counted, and the model's replay over them marks its state uncertain."""
    why = f"{path} no longer holds the chunk written at byte {chunk.offset} (cut, overwritten or unreadable)"
    return [[chunk.t0, str(Kind.LOST), None, None, None, None, None, "recording", {"count": 1, "why": why}]
            for _ in range(chunk.n)]


class TempSpill:
    """Live batches written out as chunks of a temporary recording."""

    def __init__(self, header: Header) -> None:
        fd, path = tempfile.mkstemp(prefix="pasid-live-", suffix=".pasidrec")
        try:
            self._file = os.fdopen(fd, "w+b")
            self._writer = RecordingWriter(self._file, header, chunk_events=_NEVER)
            self._reader = Recording(path)  # the header alone so far: chunks are added as they are written
        finally:
            os.unlink(path)  # the open descriptors keep it; nothing is left behind, however the session ends
        self._chunk_of: dict[int, int] = {}

    def put(self, c: int, start: int, rows: list[Row]) -> bool:
        """Write a batch as one chunk of the file; one out of time order stays in memory (the writer would
        reorder it)."""
        if not all(a[R_TS] <= b[R_TS] for a, b in zip(rows, rows[1:], strict=False)):
            return False
        at = self._file.tell()
        self._writer.extend_rows(rows)
        self._writer.flush()
        length = self._file.tell() - at - FRAME.size
        self._reader.follow(at, length, rows[0][R_TS], rows[-1][R_TS], len(rows))
        self._chunk_of[c] = len(self._reader.chunks) - 1
        return True

    def __contains__(self, c: int) -> bool:
        return c in self._chunk_of

    def close(self) -> None:
        self._reader.close()
        self._file.close()  # (the writer's, which it does not own)

    def rows(self, c: int) -> list[Row]:
        k = self._chunk_of[c]
        rows = self._reader.try_chunk_rows(k)
        return rows if rows is not None and len(rows) == self._reader.chunks[k].n else \
            unreadable(self._reader.chunks[k], "the temporary recording")


class OutputSpill:
    """Live batches read back from the recording `live -o` writes of the same rows, in the same order (the
    index is fed what the writer was given, and nothing else)."""

    def __init__(self, writer: RecordingWriter) -> None:
        assert writer.events_written == 0, "the spill follows the writer from its first chunk"
        self._reader = Recording(writer.path)
        self._starts = [0]  # where each written chunk's rows begin among those appended; last: all written
        self._order: dict[int, np.ndarray] = {}  # the chunks the writer's sort reordered: how
        self._span: dict[int, tuple[int, int]] = {}  # the index's chunk -> its events [start, end)
        writer.on_chunk = self._written  # called on the capture's thread: `_starts` grows last

    @staticmethod
    def of(writer: RecordingWriter) -> OutputSpill | None:
        """A spill on `writer`'s file, or None when it cannot be read back (not a regular file: `-o /dev/null`)."""
        try:
            if not stat.S_ISREG(os.stat(writer.path).st_mode):
                return None
            return OutputSpill(writer)
        except (OSError, ExplorerError):
            return None

    def _written(self, entry: list[int], order: np.ndarray | None) -> None:
        offset, length, t0, t1, n = entry
        if order is not None:
            self._order[len(self._starts) - 1] = order
        self._reader.follow(offset, length, t0, t1, n)
        self._starts.append(self._starts[-1] + n)

    def put(self, c: int, start: int, rows: list[Row]) -> bool:
        """Chunk `c` is in the file once the writer has written all its rows."""
        if start + len(rows) > self._starts[-1]:
            return False
        self._span[c] = (start, start + len(rows))
        return True

    def __contains__(self, c: int) -> bool:
        return c in self._span

    def close(self) -> None:
        self._reader.close()

    def rows(self, c: int) -> list[Row]:
        start, end = self._span[c]
        k = bisect_right(self._starts, start) - 1
        out: list[Row] = []
        while start < end:
            arrived = self._arrived(k)
            out += arrived[start - self._starts[k]:end - self._starts[k]]
            start, k = self._starts[k + 1], k + 1
        return out

    def _arrived(self, k: int) -> list[Row]:
        """Written chunk `k`'s rows in the order they were appended."""
        rows = self._reader.try_chunk_rows(k)
        if rows is None or len(rows) != self._starts[k + 1] - self._starts[k]:
            return unreadable(self._reader.chunks[k], self._reader.path)
        order = self._order.get(k)
        if order is None:
            return rows
        arrived = list(rows)
        for row, at in zip(rows, order.tolist(), strict=True):
            arrived[at] = row
        return arrived
