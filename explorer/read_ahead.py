"""A packed chunk's inputs to the model, read a few chunks ahead in a helper process (a big recording's model pass).

About half of the model pass over a packed chunk is getting its inputs ready: reading and decompressing the chunk,
reading its page rows' fields as columns (`recording.fieldmaps`) and decoding the rows not read so. None of it
depends on the model, so a helper process (`serve`, on the machine's other core) does it for the next chunks while
the index models the current one. It sends back what the same calls make here: the chunk decompressed, the field
columns, the rows decoded and the rows the schema refused. The index takes a chunk's inputs from the helper once it
is up, and reads the chunk itself otherwise (before the helper is up, where the helper could not read the chunk, or
once it has died): the model is the same either way. The helper reads the fields of the chunks asked for and
waiting as columns in one pass (`fieldmaps.field_columns_together`: fewer, bigger groups of rows of one layout); a
row may then be read as columns that its chunk alone leaves to decode, and its values are the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import astuple, dataclass, replace
from typing import Any

import msgpack
import numpy as np

from .allocator import buffers_reused
from .events import Row
from .recording import Recording
from .recording.fieldmaps import FieldColumns, FieldRows, field_columns_together
from .recording.reader import ChunkHead
from .simulator.pages import NAMES, WANTED, Found, Settling, batches, fill, find, unread_pages

AHEAD = 4  # chunks asked for before their answers are read: the helper's memory and this one's stay bounded
_ASK = struct.Struct("<qq")  # file chunk, stateful positions
_SIZE = struct.Struct("<q")  # an answer's bytes (0: the helper has opened the recording)
# Both pipes: a few whole answers, each written and read in one go; all the asks AHEAD of a few big chunks, written
# without waiting for the helper's thread that reads them (Linux's limit)
_PIPE_BYTES = 1 << 20
_STALLED_S = 10.0  # an answer that stops half written: the helper is stuck, and is let go
# The helper multiplies no matrices: numpy's BLAS is kept from starting a thread a core, which spin as they start
# (0.05 s of CPU, a third of the helper's start-up) and now and then after
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1"}
_UNREADABLE = (TypeError, ValueError, OverflowError, IndexError, msgpack.UnpackException)  # (a chunk's rows, damaged)


@dataclass(frozen=True, slots=True)
class Pages:
    """A packed chunk's inputs to the model: its head, its stateful rows not read as columns or run by the
    handlers whatever the state, decoded (None elsewhere; see `RecordingIndex._page_columns`), and what each
    batch's columns say (`simulator.pages.find`)."""

    head: ChunkHead | None  # (None: read by the helper, which sends no field maps)
    rows: list[Row | None]
    found: list[Found]
    ts: np.ndarray  # the stateful rows' times


def read_pages(head: ChunkHead, stateful: np.ndarray, settling: Settling, fields: FieldColumns | None = None
               ) -> Pages | None:
    """The chunk's inputs at its `stateful` positions; None where its rows are read whole instead (a chunk without
    stored columns, or whose rows do not decode). `fields`: their field columns where they were read already."""
    try:
        fields = fields or head.field_columns(stateful, WANTED, NAMES)
        if fields is None:
            return None
        cols = head.cols
        key_of, ts = cols.key_of[stateful], cols.ts[stateful]
        # The page rows not read are decoded first where there are any: the groups are found from their fields.
        # (The rows not read are among those the handlers run whatever the state: else decoded with them.)
        unread = unread_pages(cols.keys, key_of, fields)
        rows = head.rows(stateful[~fields.read].tolist()) if len(unread) else [None] * len(cols.ts)
        fill(cols.keys, key_of, fields, rows, stateful, unread)
        found, slow = [], []
        for _, _, lo, hi in batches(stateful, len(cols.ts), settling.every):
            at = stateful[lo:hi]
            found.append(find(cols.keys, key_of[lo:hi], ts[lo:hi], fields[lo:hi], at, head.pids, settling))
            slow += at[found[-1].slow].tolist()
        todo = [j for j in slow if rows[j] is None]
        if todo:
            got = head.rows(todo)
            for j in todo:
                rows[j] = got[j]
        return Pages(head, rows, found, ts)
    except _UNREADABLE:
        return None


def _answers(recording: Recording, asks: list[tuple[int, np.ndarray]], settling: Settling
             ) -> Iterator[tuple[Any, ...] | None]:
    """The answers to `asks` (file chunk, stateful positions), in order: each chunk's inputs as the helper sends
    them (where it lies, the rows, what each batch's columns say, the stateful rows' times, and each row refused
    and why: the index notes them as its own reading would), or None where it cannot be read so. Not the chunk:
    the rows the state makes the model decode besides are few, if any, and the index reads them itself. The
    chunks' page and iommufd fields are read as columns together (`field_columns_together`)."""
    heads = [recording.chunk_head(i) for i, _ in asks]
    refused: list[list[tuple[int, str]]] = [[] for _ in asks]
    fields = _fields_together(heads, [stateful for _, stateful in asks])
    for (i, stateful), head, f, out in zip(asks, heads, fields, refused, strict=True):
        pages = None if head is None or head.packed is None else \
            read_pages(replace(head, refused=lambda j, problem, out=out: out.append((j, problem))), stateful,
                       settling, f)
        yield None if pages is None else (recording.chunks[i].offset, pages.rows, pages.found, pages.ts, out)


def _fields_together(heads: list[ChunkHead | None], stateful: list[np.ndarray]) -> list[FieldColumns | None]:
    """Each chunk's field columns at its `stateful` positions, read in one pass where there are several chunks
    (None for a chunk left to `read_pages` to read alone, or to refuse: one that does not read as columns)."""
    parts: dict[int, FieldRows] = {}
    for k, (head, places) in enumerate(zip(heads, stateful, strict=True)):
        with contextlib.suppress(*_UNREADABLE):  # (`read_pages` meets it again, alone)
            got = head.packed.field_rows(head.cols, places) if head is not None and head.packed is not None else None
            if got is not None:
                parts[k] = got
    out: list[FieldColumns | None] = [None] * len(heads)
    if len(parts) > 1:
        with contextlib.suppress(*_UNREADABLE):  # (each chunk is then read alone: one that fails so fails alone)
            for k, fields in zip(parts, field_columns_together(list(parts.values()), WANTED, NAMES), strict=True):
                out[k] = fields
    return out


_SERVE = "import os, sys; sys.path[:] = sys.argv[1].split(os.pathsep); from explorer.read_ahead import serve; serve()"


def serve() -> None:
    """The helper: open the recording named on the command line, say so, then answer each file chunk asked for on
    stdin, in order, on stdout, until stdin closes (the index is done, or gone), settling as the command line says."""
    recording = Recording(sys.argv[2])
    settling = Settling(*json.loads(sys.argv[3]))
    asks: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
    threading.Thread(target=_take_asks, args=(asks,), daemon=True).start()
    # Each chunk's buffers (its columns decompressed, its answer pickled) are freed and made again for the next:
    # kept in the heap, not mapped afresh and faulted in a page at a time (0.1 s of CPU per million events)
    with buffers_reused(), os.fdopen(1, "wb", buffering=0) as out:
        out.write(_SIZE.pack(0))
        while todo := _waiting(asks):
            for answer in _answers(recording, [(i, np.frombuffer(p, np.uint32)) for i, p in todo], settling):
                data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
                out.write(_SIZE.pack(len(data)) + data)


def _waiting(asks: queue.SimpleQueue[tuple[int, bytes] | None]) -> list[tuple[int, bytes]]:
    """The next ask and those waiting behind it (the index asks at most AHEAD ahead): none once stdin has closed."""
    todo: list[tuple[int, bytes]] = []
    ask = asks.get()
    while ask is not None:
        todo.append(ask)
        if len(todo) == AHEAD:
            break
        try:
            ask = asks.get_nowait()
        except queue.Empty:
            break
    else:
        asks.put(None)  # (said again: the asks before it are answered first)
    return todo


def _take_asks(asks: queue.SimpleQueue[tuple[int, bytes] | None]) -> None:
    """Read the asks on stdin as they come, on a thread of their own, then None once it closes. An ask bigger than
    the room left in its pipe (a big chunk's positions) must not wait while this process waits to write an answer
    the index has no room for yet: each would wait for the other for ever. (The index asks at most AHEAD ahead.)"""
    with os.fdopen(0, "rb", buffering=0) as f:
        while len(ask := _read(f, _ASK.size)) == _ASK.size:
            i, n = _ASK.unpack(ask)
            if len(positions := _read(f, 4 * n)) < 4 * n:
                break
            asks.put((i, positions))
    asks.put(None)


def _read(f: Any, n: int) -> bytes:
    """`n` bytes from `f`, fewer only at its end."""
    got = bytearray()
    while len(got) < n and (part := f.read(n - len(got))):
        got += part
    return bytes(got)


class ReadAhead:
    """The helper process, asked for the file chunks `upcoming` yields (file chunk, stateful positions), in the
    order the model takes them, at most AHEAD at a time."""

    def __init__(self, recording: Recording, upcoming: Iterator[tuple[int, np.ndarray]],
                 proc: subprocess.Popen[bytes]) -> None:
        self.recording = recording
        self._upcoming = upcoming
        self._asked: deque[int] = deque()
        self._proc: subprocess.Popen[bytes] | None = proc
        self._up = False

    @classmethod
    def start(cls, recording: Recording, upcoming: Iterator[tuple[int, np.ndarray]], settling: Settling
              ) -> ReadAhead | None:
        """Start the helper (it starts up while the index reads on alone), settling as `settling` says; None where
        it cannot be started."""
        # It imports what this process would (its path, not the environment's nor the working directory's)
        path = os.pathsep.join(os.path.abspath(p) for p in sys.path)
        fd = recording._fd  # noqa: SLF001 - the file this index reads, even if its name is given to another since
        if fd is None:
            return None
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _SERVE, path, f"/proc/self/fd/{fd}", json.dumps(astuple(settling))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, pass_fds=(fd,),
                start_new_session=True,  # (a terminal's Ctrl+C is the explorer's; the helper ends with its stdin)
                env={**os.environ, **_ONE_THREAD})
        except (OSError, ValueError):  # (no interpreter to start, no file descriptors left)
            return None
        assert proc.stdout is not None
        for pipe in (proc.stdout, proc.stdin):
            with contextlib.suppress(OSError, AttributeError):  # (a lower limit, or none: they come in pieces)
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        return cls(recording, upcoming, proc)

    def _started(self) -> bool:
        """Whether the helper has opened the recording (it says so first): until then the index reads chunks
        itself rather than wait for it."""
        if not self._up and self._proc is not None and self._readable(0):
            self._up = self._read_exact(_SIZE.size) == _SIZE.pack(0)
            if not self._up:
                self.close()
            self._ask()
        return self._up

    def _ask(self) -> None:
        while self._proc is not None and len(self._asked) < AHEAD:
            nxt = next(self._upcoming, None)
            if nxt is None:
                return
            i, stateful = nxt
            positions = stateful.astype(np.uint32, copy=False)
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(_ASK.pack(i, len(positions)) + positions.tobytes())
            except OSError:
                self.close()
                return
            self._asked.append(i)

    def take(self, i: int) -> Pages | None:
        """File chunk `i`'s inputs from the helper, or None: the index then reads the chunk itself. Answers to
        chunks before `i` (which the index had at hand) are passed over."""
        if not self._started():
            return None
        while self._asked and self._asked[0] <= i:
            asked = self._asked.popleft()
            answer = self._answer()
            self._ask()
            if asked == i and answer is not None and answer[0] == self.recording.chunks[i].offset:
                _, rows, found, ts, refused = answer
                for j, problem in refused:
                    self.recording.refuse(i, j, problem)
                return Pages(None, rows, found, ts)
        return None

    def _answer(self) -> tuple[int, list[Row | None], list[Found], np.ndarray, list[tuple[int, str]]] | None:
        """The next answer; None where the helper could not read its chunk, or is gone."""
        size = self._read_exact(_SIZE.size)
        n = _SIZE.unpack(size)[0] if len(size) == _SIZE.size else 0
        data = self._read_exact(n) if n > 0 else None
        if data is None or len(data) < n:  # (it ended, or ended mid-answer)
            self.close()
            return None
        answer: Any = pickle.loads(data)
        return answer

    def _readable(self, timeout: float) -> bool:
        """Whether the helper's answer can be read within `timeout` s (poll(2): select() refuses a descriptor past
        1023, which a process holding many files open gets)."""
        assert self._proc is not None and self._proc.stdout is not None
        poll = select.poll()
        poll.register(self._proc.stdout, select.POLLIN)
        return bool(poll.poll(timeout * 1000))

    def _read_exact(self, n: int) -> bytearray:
        """`n` bytes of the helper's answers; fewer when it ends or stalls (it is then let go)."""
        if self._proc is None:
            return bytearray()
        out = self._proc.stdout
        assert out is not None
        got = bytearray(n)
        view, at = memoryview(got), 0
        while at < n:
            part = out.readinto(view[at:]) if self._readable(_STALLED_S) else 0
            if not part:
                self.close()
                return got[:at]
            at += part
        return got

    def close(self) -> None:
        """End the helper now (the pass is done, stopped, or the helper failed): the index reads on alone."""
        proc, self._proc = self._proc, None
        self._asked.clear()
        if proc is not None:
            proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
