"""Where a live session's older rows go: a recording the index writes as it goes, read back on demand.

`live` keeps only a window of recent rows in memory (see `RecordingIndex.add_rows`); each older batch is written
as one chunk of a recording (format 3: zstd-compressed columns, about 11 bytes an event) in an unnamed
temporary file, and a seek, the event panel or a search reads it back through the ordinary recording reader,
which follows the file as it grows. Memory then holds per batch only its place in the file.
"""

from __future__ import annotations

import os
import tempfile

from .events import R_TS, Row
from .recording import Header, Recording, RecordingWriter
from .recording.framing import FRAME

_NEVER = 1 << 62  # the writer cuts no chunk of its own: each batch is flushed as one


class LiveSpill:
    """Live batches written out as chunks of a temporary recording, by the index's chunk number."""

    def __init__(self, header: Header) -> None:
        fd, path = tempfile.mkstemp(prefix="pasid-live-", suffix=".pasidrec")
        try:
            self._file = os.fdopen(fd, "w+b")
            self._writer = RecordingWriter(self._file, header, chunk_events=_NEVER)
            self._reader = Recording(path)  # the header alone so far: chunks are added as they are written
        finally:
            os.unlink(path)  # the open descriptors keep it; nothing is left behind, however the session ends
        self._chunk_of: dict[int, int] = {}

    @staticmethod
    def takes(rows: list[Row]) -> bool:
        """Whether a batch reads back as it went in: the writer orders a chunk by time, so it must be."""
        return all(a[R_TS] <= b[R_TS] for a, b in zip(rows, rows[1:], strict=False))

    def put(self, c: int, rows: list[Row]) -> None:
        """Write chunk `c`'s rows (a batch `takes`) as one chunk of the file."""
        start = self._file.tell()
        self._writer.extend_rows(rows)
        self._writer.flush()
        length = self._file.tell() - start - FRAME.size
        self._reader.follow(start, length, rows[0][R_TS], rows[-1][R_TS], len(rows))
        self._chunk_of[c] = len(self._reader.chunks) - 1

    def __contains__(self, c: int) -> bool:
        return c in self._chunk_of

    def rows(self, c: int) -> list[Row]:
        """Chunk `c`'s rows as written (none, when the file can no longer be read: the temporary directory's
        disk failed under it)."""
        return self._reader.try_chunk_rows(self._chunk_of[c]) or []

    @property
    def bytes_written(self) -> int:
        return self._file.tell()
