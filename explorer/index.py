"""The per-device / per-PASID index of a recording, with simulator checkpoints for time travel.

Events are kept as a few numpy columns (time, kind, track), about 30 bytes an event, never as Python objects;
full events are decoded from their chunk on demand. The simulator runs once over the stateful events and leaves a
checkpoint every CHECKPOINT_EVERY events: what its state's maps changed since the checkpoint before (a full copy
only once the changes since the last full copy outnumber the state's entries, and FULL_COPY_AFTER), so
checkpoints cost memory in proportion to the events whatever the state holds, and the state at any time is one
full copy, a bounded run of changes and a replay of at most CHECKPOINT_EVERY events away.

Opening a file takes two passes that can run together (`build`) or apart (`build(model=False)`, then
`run_model`): the columns come from what the writer stored, in a fraction of the time the model takes, so the
explorer can draw a big recording's timeline while the model is still replaying it in a worker thread. Until then
`modelled` says how far the model has got, and `covers(t)` whether the state at `t` is known yet.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import count, pairwise
from threading import Lock

import msgpack
import numpy as np

from .collector import collector_paused
from .event_columns import EventColumns
from .events import Event, Kind, Row, make
from .intervals import Intervals
from .live_spill import LiveSpill, TempSpill
from .read_ahead import Pages, ReadAhead, read_pages
from .recording import DeviceInfo, Header, Recording
from .recording.columns import ChunkColumns, columns_of
from .recording.header import SCENARIO_CLOCK
from .recording.reader import ChunkHead
from .schema import U32_END, checked, key_problem, lost_row
from .simulator import (
    DEFAULT_STALE_NS,
    STATEFUL_KINDS,
    Anomaly,
    SimState,
    Simulator,
    lifecycle_unobserved,
    starts_midstream,
)
from .simulator.pages import PageColumns, Settling, batches
from .simulator.state import FullCopy, StateChanges
from .track_table import PASID_SHIFT, TrackTable

ProgressHook = Callable[[int, int], None]
Observer = Callable[[list[Row | None], list[int]], None]  # a chunk's rows (None where not decoded), positions modelled
_CHUNK_CACHE = 16
ALONE_KEPT = 64  # events `event` decoded alone, kept (a panel asks for the same event more than once a frame)
WALK = 8  # events of one chunk `event` decodes alone one after another before it reads the chunk whole
LIVE_WINDOW = 65_536  # live events whose rows stay in memory; older batches are written out and read back
LIVE_CHUNK = 4096  # a live batch is indexed (and later written out) in chunks of at most this many events
KIND_IDS = 256  # kind names the kinds column tells apart (uint8); kinds beyond share the last id
OTHER_KINDS = "(other kinds)"
FIRST_CHUNKS = 512  # chunks at most indexed before a first screen (`build`'s `first`): ~0.1 ms each to index
CHECKPOINT_EVERY = 8192  # events between simulator checkpoints: bounds the replay behind any seek
CHECKPOINT_CHUNKS = 32  # chunks between them at most: a seek replays a small chunk in about 0.2 ms
SETTLE_AFTER = 65_536  # pending events (at least) before the columns take them in: see `_add_chunk`
FULL_COPY_AFTER = 16384  # changes since the last full copy of the state before another (at least): bounds a seek
READ_AHEAD_EVENTS = 500_000  # file events still to model from which a pass reads ahead in a helper process


def _reader_said(recording: Recording, i: int | None) -> str:
    """Why file chunk `i` could not be read: the reader's damage at its offset."""
    assert i is not None
    return recording.said_of(i)


def _fitting(head: ChunkHead | None) -> ChunkHead | None:
    """A chunk's stored columns when they fit its events (`ChunkHead.check_ends`; the model decodes the rows it
    needs later), else None: the chunk is then read whole. The decoding half of indexing a chunk, which touches
    nothing of the index (a worker thread does it behind the first screen)."""
    if head is None:
        return None
    try:
        head.check_ends()
    except (TypeError, ValueError, OverflowError, IndexError, msgpack.UnpackException):
        return None
    return head


@dataclass(slots=True)
class _Checkpoint:
    next_index: int  # events before this index are in the state
    state: FullCopy | None  # a full copy, or None: then `changes` since the checkpoint before
    changes: StateChanges | None = None
    loss_ns: int | None = None  # an unreadable chunk's loss, at this time: the state only holds from then on


class RecordingIndex:
    """Index + simulator over one event stream, from a file (`build`) or fed live (`add_rows`)."""

    def __init__(self, header: Header, *, recording: Recording | None = None,
                 stale_ns: int = DEFAULT_STALE_NS, spill: LiveSpill | None = None, history: bool = True) -> None:
        self.header = header
        # False: no checkpoints (nor the journal they are made of), so no `state_at`: a report that only needs
        # the model's findings and what it holds at the end (`info`, most `check`s) keeps a million live PASIDs
        # once, not also in full copies and changes
        self.history = history
        self.recording = recording
        self.devices: dict[str, DeviceInfo] = {d.name: d for d in header.devices}
        self.stale_ns = stale_ns
        unobserved = lifecycle_unobserved(header)  # imports, and captures blind to the kernel's PASID calls
        unobserved_on = [unobserved, *(lifecycle_unobserved(header, m) for m in header.machines[1:])]  # (merged)
        # a capture starts with the kernel's PASID state already there (each merged machine's by its own source)
        midstream_on = [starts_midstream(header), *(starts_midstream(header, m) for m in header.machines[1:])]
        self.sim = Simulator(self.devices.values(), kernel=header.kernel, stale_ns=stale_ns, unobserved=unobserved,
                             midstream=midstream_on[0], machines=header.machines, unobserved_on=unobserved_on,
                             midstream_on=midstream_on)
        self._replayer = Simulator(self.devices.values(), kernel=header.kernel, stale_ns=stale_ns,
                                   unobserved=unobserved, midstream=midstream_on[0], keep_intervals=False,
                                   machines=header.machines, unobserved_on=unobserved_on, midstream_on=midstream_on)
        self._replayer.report = False
        if history:
            self.sim.root.journal()  # its checkpoints are its changes
        self._kind_ids: defaultdict[str, int] = defaultdict(count().__next__)
        for k in Kind:
            self._kind_ids[str(k)]
        self._stateful = np.zeros(KIND_IDS, dtype=bool)
        for k in STATEFUL_KINDS:
            self._stateful[self._kind_ids[str(k)]] = True
        self._tracks = TrackTable()
        self._columns_store = EventColumns()
        self._settle_early = True  # False while `build` runs: no one reads the columns before it returns
        self.indexed_files = 0  # file chunks indexed: the rest are read behind the first screen (`add_heads`)
        # Per chunk, flat arrays of numbers (8 bytes a chunk each, where lists of ints took 40): a long quiet
        # capture writes hundreds of thousands of five-event chunks
        self._chunk_starts = array("q")  # event index of each chunk's first event
        self._chunk_file_ids = array("q")  # the file chunk behind each chunk (-1: fed live)
        self._first_ts = array("q")  # its first event's time
        self._stateful_at: dict[int, np.ndarray] = {}  # chunks not modelled yet: the positions the model replays
        self._last_ts = 0  # the last event's time (a refused live row's stand-in takes it)
        self._gaps: dict[int, tuple[int, int]] = {}  # chunk -> (time, events) of an unreadable chunk's loss
        self.modelled_chunks = 0  # chunks the model has replayed, in order
        self._live_chunks: dict[int, list[Row]] = {}  # rows of the newest chunks fed live, by chunk number
        self._spill = spill  # older live chunks (a temporary file's unless given): live's memory stays bounded
        self._cache: OrderedDict[int, list[Row]] = OrderedDict()  # whole chunks' rows, the newest read last
        self._replay_cache: OrderedDict[int, list[Row | None]] = OrderedDict()  # the rows a seek replays
        self._alone: OrderedDict[int, Row] = OrderedDict()  # events decoded alone (`event`), by index
        self._walk = (-1, 0)  # the chunk `event` last decoded an event of alone, and how many in a row
        self._checkpoints: list[_Checkpoint] = []
        # the last seek's checkpoint and events replayed, and the state they made before time passed to the time
        # sought: a frame seeks the selected event's time and the cursor's, often with no event between them, and
        # a cursor key moves on from where the last one was
        self._replayed: tuple[int, int, FullCopy] | None = None
        self._checkpoint_starts: list[int] = []
        self._since_full = 0  # changes the checkpoints since the last full copy hold
        self._checkpoint_chunk = 0  # the chunk holding the last checkpoint's next event
        self._checkpoint(0, full=True)
        self.n = 0
        self._notes: list[str] = []  # damage the index found (the recording's own is added by `damage`)
        self._anomalies_sorted: list[Anomaly] = []
        self._anomaly_ts: list[int] = []
        self._last_head: tuple[int, ChunkHead] | None = None  # the chunk last indexed from its columns
        self._lock = Lock()  # the chunk cache is shared with a worker thread running the model
        self._model_lock = Lock()  # and so is the model: whoever feeds live rows models them too
        self._ahead: ReadAhead | None = None  # the helper reading the next chunks during a big pass (`run_model`)

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, recording: Recording, *, progress: ProgressHook | None = None,
              stale_ns: int = DEFAULT_STALE_NS, model: bool = True, first: int | None = None,
              history: bool = True) -> RecordingIndex:
        """Index a whole recording; `progress(done, total)` is called after every chunk. With `model` False only
        the columns are read: `run_model` replays the model later (the explorer runs it in a worker). With
        `first` (and `model` False) only the chunks that hold the first `first` events are indexed: the rest
        are read with `read_heads` and indexed with `add_heads` (the explorer does so behind its first screen).
        With `history` False the model keeps no checkpoints: see `__init__`. (`first` stops at FIRST_CHUNKS chunks
        too: a long quiet capture's chunks hold a few events each.)"""
        assert first is None or not model, "the model replays a whole recording"
        idx = cls(recording.header, recording=recording, stale_ns=stale_ns, history=history)
        idx._columns_store.reserve(recording.event_count)
        for d in recording.devices:
            idx.devices.setdefault(d.name, d)
            idx.sim.add_device(d)
        total = recording.event_count
        idx._settle_early = False  # sorted by track once, at the end: no runs to merge (a million tracks' merge
        with collector_paused():   # of two runs peaked 45 MB above the one run it made)
            while not idx.indexed_all and (first is None or idx.n < first and idx.indexed_files < FIRST_CHUNKS):
                idx._index_file_chunk(idx.indexed_files, _fitting(recording.chunk_head(idx.indexed_files)))
                if model:
                    idx._model_chunk(idx.modelled_chunks)
                if progress is not None:
                    progress(idx.n, total)
        idx._settle_early = True
        if model:
            idx.finish()
        else:
            idx._columns()
        return idx

    def close(self) -> None:
        """Let go of the files it reads: the recording and the live spill (the app's index lives as long as the
        process; tests and scripts that open many close each)."""
        if self.recording is not None:
            self.recording.close()
        if self._spill is not None:
            self._spill.close()

    def __enter__(self) -> RecordingIndex:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def indexed_all(self) -> bool:
        """Whether every chunk of the file has been indexed (always, for an index fed live)."""
        return self.recording is None or self.indexed_files >= len(self.recording.chunks)

    @property
    def file_events(self) -> int:
        """The events the file's chunks hold, as its index or walk found them (`n` once all are indexed)."""
        return self.n if self.recording is None else max(self.recording.event_count, self.n)

    def read_heads(self, start: int, count: int) -> list[tuple[int, ChunkHead | None]]:
        """The columns of file chunks `start`, `start + 1`, ... (at most `count`): the reading and decompressing
        half of indexing, which touches nothing of the index, so a worker thread does it."""
        assert self.recording is not None
        end = min(start + count, len(self.recording.chunks))
        return [(i, _fitting(self.recording.chunk_head(i))) for i in range(start, end)]

    def add_heads(self, heads: list[tuple[int, ChunkHead | None]]) -> None:
        """Index the chunks `read_heads` read, next in file order (the thread that reads the index does this)."""
        with collector_paused():
            for i, head in heads:
                if i == self.indexed_files:
                    self._index_file_chunk(i, head)
        if self.indexed_all:
            self.compact_columns()

    def compact_columns(self) -> None:
        """The file is indexed (or the user stopped it): each track's events become one slice, as an index
        built in one go has them, so a frame reads them without joining pieces."""
        self._columns()
        self._columns_store.compact()

    def _index_file_chunk(self, i: int, head: ChunkHead | None) -> None:
        """Index file chunk `i` from its stored columns, or from its rows when it has none (or columns the
        rows contradict); an unreadable chunk is a gap."""
        assert self.recording is not None
        skipped = self.recording.loss_before(i)
        if skipped is not None:
            self._note_gap(skipped[0], 0, skipped[1])
        if head is None or not self._ingest_head(head, i):
            rows = self.recording.try_chunk_rows(i)
            if rows is None:
                self._note_gap(self.recording.chunks[i].t0, self.recording.chunks[i].n, _reader_said(self.recording, i))
            self._ingest(rows or [], file_chunk=i)
            del rows  # before the next chunk is decoded, so that it reuses this one's memory while hot
        self.indexed_files = i + 1

    def run_model(self, *, observe: Observer | None = None, progress: ProgressHook | None = None,
                  stop: Callable[[], bool] | None = None, through_ns: int | None = None) -> bool:
        """Replay the model over the chunks it has not seen yet, then `finish`; True once it has. `observe` gets
        each chunk's decoded rows, so a caller that needs the same rows (the timeline's bars) does not decode
        them again. It returns early, False, when `stop()` says so or, with `through_ns`, once the state at
        that time is known. One thread models at a time (a lock sees to it); others may read meanwhile: what it
        appends (checkpoints, anomalies, `modelled`) is appended in an order they can read at any moment. A
        whole pass over many file events reads the next chunks in a helper process meanwhile (read_ahead.py),
        which ends with the pass, however it ends."""
        self._ahead = self._read_ahead() if through_ns is None else None
        try:
            with collector_paused():
                while not self.model_done:
                    if (stop is not None and stop()) or (through_ns is not None and self.covers(through_ns)):
                        return False
                    self._model_next(observe)
                    if progress is not None:
                        progress(self.modelled, self.n)
        finally:
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None
        self.finish()
        return True

    def _read_ahead(self) -> ReadAhead | None:
        """A helper for the file chunks indexed but not modelled yet, when they hold READ_AHEAD_EVENTS events
        or more (its start-up pays) and the recording is one machine's (a merged one's rows are read whole)."""
        if self.recording is None or self.sim.machines > 1 or self.n - self.modelled < READ_AHEAD_EVENTS:
            return None
        files, stateful = self._chunk_file_ids, self._stateful_at
        # (asked lazily, as the model goes, from the chunk after the one it models: none it has passed meanwhile)
        upcoming = ((files[c], stateful[c]) for c in range(self.modelled_chunks, len(files))
                    if c > self.modelled_chunks and files[c] >= 0)
        return ReadAhead.start(self.recording, upcoming, self._settling())

    @property
    def intervals(self) -> Intervals:
        """What the model found open between events (lifetimes, attachments, binds, groups), as far as it has
        replayed: the one source of every bar, slice and interval any view shows."""
        assert self.sim.intervals is not None
        return self.sim.intervals

    @property
    def modelled(self) -> int:
        """Events the model has replayed: the state is known up to here."""
        c = self.modelled_chunks
        return self._chunk_starts[c] if c < len(self._chunk_starts) else self.n

    @property
    def model_done(self) -> bool:
        """Whether the model has replayed every chunk indexed so far."""
        return self.modelled_chunks >= len(self._chunk_starts)

    def covers(self, t_ns: int) -> bool:
        """Whether the model has replayed everything up to `t_ns` (events, and the loss an unreadable chunk
        stands for), so the state there is known."""
        c = self.modelled_chunks
        if self.model_done:
            return True
        gap = self._gaps.get(c)
        return self.modelled >= self.index_at(t_ns) and (gap is None or gap[0] > t_ns)

    @property
    def damage(self) -> list[str]:
        """What the input lacks, each place once: the reader's findings (cut, damaged frames, refused rows,
        found as chunks are read), then the index's own."""
        said = [str(d) for d in self.recording.damage] if self.recording is not None else []
        known = set(said)
        return said + [x for x in self._notes if x not in known]

    def add_rows(self, rows: list[Row]) -> None:
        """Feed a batch of live rows (time-ordered); they become in-memory chunks, modelled at once (after any
        chunks the model has still to replay). Rows the schema refuses become one-event losses, named in
        `damage`: this is where live and simulated rows enter."""
        if rows:
            base = self.n
            rows = checked(rows, lambda j, problem: self._notes.append(
                f"live batch, event {base + j}: {problem}; read as one lost event"), self._last_ts)
            for a in range(0, len(rows), LIVE_CHUNK):  # a slow screen's big batch: evicted a piece at a time
                self._ingest(rows[a:a + LIVE_CHUNK] if len(rows) > LIVE_CHUNK else rows, file_chunk=None)
            while self._model_next():
                pass
            self._spill_old()

    def _spill_old(self) -> None:
        """Hand modelled live chunks older than the newest LIVE_WINDOW events to the spill (see live_spill.py),
        and drop their rows: a live session at 50,000 events a second keeps a bounded window of rows in memory,
        and reads older ones back when a seek or a panel needs them. (A chunk the spill does not take yet stays
        in memory.)"""
        keep_from = min(self._chunk_starts[self.modelled_chunks] if not self.model_done else self.n,
                        self.n - LIVE_WINDOW)
        starts = self._chunk_starts
        for c in [c for c in self._live_chunks if c + 1 < len(starts) and starts[c + 1] <= keep_from]:
            if self._spill is None:
                self._spill = TempSpill(self.header)
            if self._spill.put(c, starts[c], self._live_chunks[c]):
                with self._lock:
                    del self._live_chunks[c]

    def _note_gap(self, ts: int, n: int, why: str) -> None:
        """An unreadable chunk, or bytes skipped as damage before one (events of unknown number, `n` 0), is a loss
        like any other: the simulator must stop trusting its state there."""
        self._notes.append(why)
        c = len(self._chunk_starts)  # (the chunk indexed next; bytes skipped before it may be lost too)
        earlier, lost = self._gaps.get(c, (ts, 0))
        self._gaps[c] = (min(earlier, ts), lost + n)

    def _ingest_head(self, head: ChunkHead, file_chunk: int) -> bool:
        """Index a file chunk from its stored columns (`_fitting` has checked its first and last rows). False
        when a key is malformed: the caller then reads the chunk whole."""
        try:
            columns = self._stored_columns(head.cols)
        except (TypeError, ValueError, OverflowError, IndexError):
            return False
        self._add_chunk(len(columns[0]), columns, file_chunk)
        self._last_head = (len(self._chunk_starts) - 1, head)  # modelling it next needs no second parse
        return True

    def _ingest(self, rows: list[Row], file_chunk: int | None) -> None:
        """Index rows the schema has checked (the reader's, or `add_rows`')."""
        if rows:
            columns = self._columns_of(rows)
        else:
            columns = (np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint32))
        c = len(self._chunk_starts)
        self._add_chunk(len(rows), columns, file_chunk)
        if file_chunk is None:
            self._live_chunks[c] = rows
        elif rows:
            self._remember(c, rows)  # modelling it next reads these, not the file again

    def _add_chunk(self, n: int, columns: tuple[np.ndarray, np.ndarray, np.ndarray], file_chunk: int | None) -> None:
        """Record a chunk's columns and which of its rows the model replays. The columns show once a reader
        asks, or once enough are pending: as many as there are tracks, so that sorting them by track costs no
        more than they do (a million tracks), and no fewer than SETTLE_AFTER (`build` waits until its end)."""
        c = len(self._chunk_starts)
        store = self._columns_store
        if n:
            store.add(*columns)
            self._last_ts = int(columns[0][-1])
        self._chunk_starts.append(self.n)
        self._chunk_file_ids.append(-1 if file_chunk is None else file_chunk)
        self._stateful_at[c] = np.flatnonzero(self._stateful[columns[1]]).astype(np.uint32)
        self._first_ts.append(int(columns[0][0]) if n else 0)
        self.n += n
        if self._settle_early and store.pending >= max(SETTLE_AFTER, len(self._tracks)):
            self._columns()

    def _file_chunk(self, c: int) -> int | None:
        """The file chunk behind chunk `c` (None: its rows were fed live)."""
        i = self._chunk_file_ids[c]
        return None if i < 0 else i

    def _model_next(self, observe: Observer | None = None) -> bool:
        """Model the next chunk not modelled yet; False when there was none."""
        with self._model_lock:
            if self.model_done:
                return False
            self._model_chunk(self.modelled_chunks, observe)
            return True

    def _model_chunk(self, c: int, observe: Observer | None = None) -> None:
        """Run the model over chunk `c`'s stateful rows (the next it has not seen), leaving checkpoints."""
        base = self._chunk_starts[c]
        n = (self._chunk_starts[c + 1] if c + 1 < len(self._chunk_starts) else self.n) - base
        gap = self._gaps.get(c)
        stateful = self._stateful_at.pop(c)  # (a seek's replay finds them from the kinds column)
        positions = stateful.tolist()
        head, ready = self._model_head(c)
        read = self._page_columns(c, head, stateful, ready) if head is not None or ready is not None else None
        rows, pages = read if read is not None else (self._model_rows(c, head, positions), None)
        if len(rows) != n:  # readable when indexed, not now: its events are a loss like an unreadable chunk's
            gap = (self._first_ts[c], n)
            assert self.recording is not None  # (rows in memory are always there)
            self._notes.append(_reader_said(self.recording, self._file_chunk(c)))
            rows, stateful, positions, pages = [None] * n, stateful[:0], [], None
        if gap is not None:  # with a checkpoint of its own: a seek past it must not replay from before the loss
            self.sim.apply_row(make(Kind.LOST, gap[0], source="recording", count=gap[1],
                                    why="unreadable in the file").to_row(), -1)
            self._checkpoint(base, loss_ns=gap[0])
        if n and self.sim.state.index < 0:
            self.sim.begin(self._first_ts[c])  # the stream's first event, whatever its kind
        # a big chunk (a busy second of capture) gets several
        for k, (_, b, lo, hi) in enumerate(batches(stateful, n, CHECKPOINT_EVERY)):
            self.sim.apply_rows(rows, positions[lo:hi], base, None if pages is None else pages.batch(k, lo, hi))
            # Every CHECKPOINT_EVERY events, and every CHECKPOINT_CHUNKS chunks: a seek's replay reads each chunk
            # it crosses, and a long quiet capture writes a chunk a second of a few events
            if base + b - self._checkpoint_starts[-1] >= CHECKPOINT_EVERY or \
                    b == n and c + 1 - self._checkpoint_chunk >= CHECKPOINT_CHUNKS:
                self._checkpoint(base + b)
        if observe is not None:
            observe(rows, positions)
        self.modelled_chunks = c + 1

    def _checkpoint(self, next_index: int, *, loss_ns: int | None = None, full: bool = False) -> None:
        """Leave a checkpoint of the model's state before event `next_index`: its changes since the checkpoint
        before, or a full copy once the changes since the last full copy outnumber the state's entries now. A
        seek then applies no more changes than the state it makes holds entries (and FULL_COPY_AFTER), full
        copies cost no more than the changes did (memory stays in proportion to the events, however big the
        state), and a state that only grows (a million live PASIDs or open groups) takes no full copy at all:
        its changes are its entries, held once."""
        self._checkpoint_chunk = bisect.bisect_left(self._chunk_starts, next_index)  # (the next chunk, indexed or not)
        if not self.history:  # only where the next one would be is kept (at most CHECKPOINT_EVERY on)
            self._checkpoint_starts[-1:] = [next_index]
            return
        st = self.sim.root
        self._since_full += st.pending
        # (other machines' states, in a merged recording, are copied whole: their maps keep no journal)
        if full or st.others or self._since_full >= max(FULL_COPY_AFTER, st.size):
            cp = _Checkpoint(next_index, self.sim.snapshot(), loss_ns=loss_ns)
            st.forget_changes()
            self._since_full = 0
        else:
            cp = _Checkpoint(next_index, None, st.changes(), loss_ns)
        self._checkpoints.append(cp)
        self._checkpoint_starts.append(next_index)

    def _model_head(self, c: int) -> tuple[ChunkHead | None, Pages | None]:
        """Chunk `c`'s head, to decode the rows the model needs from, if it is a file chunk whose rows are not at
        hand already; or its inputs to the model, where the helper has read them (`run_model`)."""
        file_chunk = self._file_chunk(c)
        with self._lock:
            cached = self._cache.get(c)
        if file_chunk is None or cached is not None:
            return None, None
        assert self.recording is not None
        pages = self._ahead.take(file_chunk) if self._ahead is not None else None
        if pages is not None:
            return None, pages
        last, self._last_head = self._last_head, None
        return (last[1] if last is not None and last[0] == c else self.recording.chunk_head(file_chunk)), None

    def _page_columns(self, c: int, head: ChunkHead | None, stateful: np.ndarray, pages: Pages | None = None
                      ) -> tuple[list[Row | None], PageColumns] | None:
        """Chunk `c`'s rows the model must decode whatever happens, and what its page rows and iommufd calls say as
        columns, for settling page-request groups and counting calls at once (explorer/simulator/pages.py), from
        `pages` when the helper read them, else from `head`; None where the rows are to be read as before (a merged
        recording, a chunk without stored columns or whose rows do not decode)."""
        if self.sim.machines > 1:
            return None
        # (where a chunk's rows fail to decode, they fail here)
        pages = pages or (read_pages(head, stateful, self._settling()) if head is not None else None)
        if pages is None:
            return None
        rows, at_hand = pages.rows, pages.head

        def decode(positions: list[int]) -> None:
            nonlocal at_hand
            if at_hand is None:  # (read by the helper: this chunk's few other rows are read here)
                at_hand = self._head_again(c)
            if at_hand is None:
                for j, ts in zip(positions, pages.ts[np.searchsorted(stateful, positions)].tolist(), strict=True):
                    rows[j] = lost_row(ts, "its chunk could not be read again")
                return
            got = at_hand.rows(positions)
            for j in positions:
                rows[j] = got[j]
        return rows, PageColumns(pages.ts, stateful, pages.found, decode)

    def _head_again(self, c: int) -> ChunkHead | None:
        """File chunk `c`'s head once more, the helper having read it; None, noted, where it no longer reads."""
        assert self.recording is not None
        file_chunk = self._file_chunk(c)
        head = self.recording.chunk_head(file_chunk) if file_chunk is not None else None
        if head is None:
            self._notes.append(f"{_reader_said(self.recording, file_chunk)}; read again to model it, it no longer "
                               "reads: the rows the model still needed read as lost events")
        return head

    def _settling(self) -> Settling:
        """What finding a chunk's groups depends on besides its columns (see `simulator.pages.Settling`)."""
        return Settling.of(self.sim, CHECKPOINT_EVERY)

    def _model_rows(self, c: int, head: ChunkHead | None, positions: list[int]) -> list[Row | None]:
        """Chunk `c`'s rows with at least those at `positions` decoded: from the file by stored columns when
        it has them (`head`), else whole. Rows that contradict their columns past the ones checked when indexing
        are modelled from the whole chunk, and the damage says so."""
        file_chunk = self._file_chunk(c)
        if head is not None:
            assert self.recording is not None and file_chunk is not None
            try:
                return head.rows(positions)
            except (TypeError, ValueError, OverflowError, IndexError, msgpack.UnpackException) as e:
                rows = self._chunk_rows(c)
                then = "the model reads the chunk's rows, the timeline shows its stored columns" if rows else \
                    "its events, shown from their stored columns, read as losses"
                self._notes.append(f"byte {self.recording.chunks[file_chunk].offset}: chunk {file_chunk}: {e}; {then}")
                return rows
        return self._chunk_rows(c)

    def _columns_of(self, rows: list[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time, kind and track columns of a batch, computed as a writer stores them; TypeError when a row is
        malformed."""
        cols = columns_of(rows)
        if cols is None:
            raise TypeError("a malformed row")
        return self._stored_columns(cols)

    def _stored_columns(self, cols: ChunkColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same columns from what the writer stored: one lookup per distinct key instead of one per row, its
        track numbered as it first appears. TypeError on a key of the wrong types (a malformed row): the caller
        then repairs the batch. Nothing is kept per key but its track (a million PASIDs are a million tracks)."""
        tracks = self._tracks
        device_ids = tracks.device_ids
        kind_ids = self._kind_ids
        kinds, codes = [], []
        for kind, device, pasid in cols.keys:
            # Known kinds and devices were checked when first seen: only a new one is checked here
            kid = kind_ids.get(kind) if kind.__class__ is str else None
            dev = device_ids.get(device) if device is None or device.__class__ is str else None
            if kid is None or dev is None or not (pasid is None or pasid.__class__ is int and 0 <= pasid < U32_END):
                if key_problem(kind, device, pasid) is not None:
                    raise TypeError("malformed kind, device or PASID")
                if kid is None:
                    kid = self._kind_id_for(kind)
                if dev is None:
                    dev = tracks.device_id(device)
            kinds.append(kid)
            codes.append(dev << PASID_SHIFT | (0 if pasid is None else pasid + 1))
        per_key = cols.key_of
        return (cols.ts.astype(np.int64), np.array(kinds, np.uint8)[per_key],
                tracks.number(codes).astype(np.uint32)[per_key])

    def _kind_id_for(self, kind: str) -> int:
        """The kinds column's id of `kind`: its own among the first KIND_IDS - 1 names seen, else the one the
        rest share (a recording of thousands of made-up kinds must not overflow the column)."""
        ids = self._kind_ids
        found = ids.get(kind)
        if found is not None:
            return found
        return ids[kind] if len(ids) < KIND_IDS - 1 else ids[OTHER_KINDS]

    def finish(self) -> None:
        """End of stream: let outstanding groups age to the last event's time."""
        if self.n:
            self.sim.advance(self.end_ns)

    # -- columns ----------------------------------------------------------------------------------------------
    def _columns(self) -> None:
        """Add the chunks indexed since the last call to the columns (see event_columns.py)."""
        self._columns_store.settle(len(self._tracks))

    @property
    def ts(self) -> np.ndarray:
        self._columns()
        return self._columns_store.ts

    @property
    def kinds(self) -> np.ndarray:
        self._columns()
        return self._columns_store.kinds

    @property
    def track_of(self) -> np.ndarray:
        self._columns()
        return self._columns_store.tracks

    @property
    def kind_names(self) -> list[str]:
        return list(self._kind_ids)

    def kind_id(self, kind: str) -> int | None:
        return self._kind_ids.get(kind)

    @property
    def tracks(self) -> TrackTable:
        """Every track's key, by track number (a sequence that grows as the index does)."""
        return self._tracks

    @property
    def start_ns(self) -> int:
        """Where shown times count from: the first event, or a scenario's own 0, which its steps' `at` count from
        (a scenario whose first step is at 10ms shows it at +10ms)."""
        if self.header.clock == SCENARIO_CLOCK:
            return 0
        return int(self.ts[0]) if self.n else 0

    @property
    def end_ns(self) -> int:
        return int(self.ts_max[-1]) if self.n else 0

    @property
    def in_order(self) -> bool:
        """Whether the events' times never go back (`ts` is then sorted, and its own `ts_max`)."""
        self._columns()
        return self._columns_store.in_order

    @property
    def ts_max(self) -> np.ndarray:
        self._columns()
        return self._columns_store.ts_max

    def track_counts(self) -> np.ndarray:
        """Events on each track, by track number (int64)."""
        self._columns()
        return self._columns_store.track_counts(len(self._tracks))

    def track_events(self, track: int) -> np.ndarray:
        """Indices of the events on `track`, in time order."""
        self._columns()
        return self._columns_store.track_events(track)

    def track_search(self, track: int, times: np.ndarray | int, side: str = "left") -> np.ndarray:
        """Where `times` go among `track`'s times (as np.searchsorted over them): through its events' indices when
        the recording is in time order, without gathering its times; else over its times, gathered."""
        self._columns()
        return self._columns_store.track_search(track, times, side)

    def device_names(self) -> list[str]:
        """Devices in the header's table first, then those only seen in events."""
        names = list(self.devices)
        for dev in self._tracks.devices:
            if dev is not None and dev not in self.devices:
                names.append(dev)
        return names

    def tracks_of_device(self, device: str | None) -> list[int]:
        return self._tracks.of_device(device)

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly found so far (all of them once the model has run), in time order."""
        found = self.sim.anomalies  # only ever appended to, by the model (maybe in another thread)
        if len(found) != len(self._anomalies_sorted):
            ordered = sorted(found[:], key=lambda a: (a.ts_ns, a.rule))
            self._anomaly_ts = [a.ts_ns for a in ordered]
            self._anomalies_sorted = ordered
        return self._anomalies_sorted

    @property
    def anomaly_times(self) -> list[int]:
        """The times of the list `anomalies` last returned, in its order (the two are refreshed together)."""
        return self._anomaly_ts

    def counts_by_kind(self) -> dict[str, int]:
        counts = np.bincount(self.kinds, minlength=len(self._kind_ids)) if self.n else []
        return {name: int(counts[i]) for name, i in self._kind_ids.items() if self.n and counts[i]}

    # -- events -----------------------------------------------------------------------------------------------
    def _chunk_rows(self, c: int) -> list[Row]:
        with self._lock:
            rows = self._cache.get(c)
            if rows is not None:
                self._cache.move_to_end(c)
                return rows
        file_chunk = self._file_chunk(c)
        if file_chunk is None:
            with self._lock:
                live = self._live_chunks.get(c)
            if live is not None:
                return live
            assert self._spill is not None and c in self._spill
            rows = self._spill.rows(c)
            self._remember(c, rows)
            return rows
        assert self.recording is not None
        rows = self.recording.try_chunk_rows(file_chunk) or []
        self._remember(c, rows)
        return rows

    def _replayed_rows(self, c: int, start: int, end: int) -> list[Row | None]:
        """Chunk `c`'s rows at the positions the model replays, None elsewhere: all a seek's replay needs, and
        in a file chunk with stored columns a fraction of it, decoded and checked alone (a whole chunk's rows,
        when no smaller set is at hand). Kept in a small cache of their own."""
        with self._lock:
            rows = self._cache.get(c) or self._replay_cache.get(c)
            if rows is not None:
                return rows
        file_chunk = self._file_chunk(c)
        if file_chunk is None:
            return self._chunk_rows(c)
        assert self.recording is not None
        head = self.recording.chunk_head(file_chunk)
        if head is None:
            return self._chunk_rows(c)
        try:
            rows = head.rows(np.flatnonzero(self._stateful[self.kinds[start:end]]).tolist())
        except (TypeError, ValueError, OverflowError, IndexError, msgpack.UnpackException):
            return self._chunk_rows(c)  # (the model said so when it replayed it)
        with self._lock:
            self._replay_cache[c] = rows
            if len(self._replay_cache) > _CHUNK_CACHE:
                self._replay_cache.popitem(last=False)
        return rows

    def _remember(self, c: int, rows: list[Row]) -> None:
        with self._lock:
            self._cache[c] = rows
            if len(self._cache) > _CHUNK_CACHE:
                self._cache.popitem(last=False)

    def _chunk_of(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"event {i} outside 0..{self.n - 1}")
        c = bisect.bisect_right(self._chunk_starts, i) - 1
        while c + 1 < len(self._chunk_starts) and self._chunk_starts[c + 1] == self._chunk_starts[c]:
            c += 1  # skip empty (unreadable) chunks that share a start
        return c

    def row(self, i: int) -> Row:
        """Event `i`'s row, from its chunk's rows, read whole and kept: for walks over many events."""
        return self._row_of(self._chunk_of(i), i)

    def _row_of(self, c: int, i: int) -> Row:
        """Event `i` from its chunk `c`'s rows; a one-event loss at its stored time when the chunk, indexed from
        its columns, no longer decodes (the model counted its events lost, and `damage` says why)."""
        rows = self._chunk_rows(c)
        j = i - self._chunk_starts[c]
        return rows[j] if j < len(rows) else lost_row(int(self.ts[i]), "its chunk's rows do not decode")

    def iter_rows(self) -> Iterator[Row]:
        """Every event's row in order, chunk by chunk, so that the i-th is event i (the exports number events so,
        and findings and intervals point at them): an event of a chunk indexed from its columns whose rows no
        longer decode is the one-event loss `row` gives."""
        starts = self._chunk_starts
        for c, start in enumerate(starts):
            rows = self._chunk_rows(c)
            yield from rows
            end = starts[c + 1] if c + 1 < len(starts) else self.n
            for i in range(start + len(rows), end):
                yield self._row_of(c, i)

    def event(self, i: int) -> Event:
        """Event `i`, as a panel or a finding's evidence shows one: when its chunk's rows are not at hand, decoded
        alone from the chunk's stored columns (a whole 4096-event chunk takes 10-30 ms, one event under one)."""
        c = self._chunk_of(i)
        with self._lock:
            row = self._alone.get(i)
            held = c in self._cache
        if row is None:
            row = self._row_of(c, i) if held else self._decode_alone(c, i)
        return Event.from_row(row)

    def _decode_alone(self, c: int, i: int) -> Row:
        """Event `i` of chunk `c` decoded by itself, unless WALK events of the chunk were so decoded one after
        another (a walk: the chunk is read whole), or the schema refuses it (read with its chunk, the loss it
        becomes takes the time of the row before it when its own is wrong)."""
        file_chunk = self._file_chunk(c)
        with self._lock:
            walked = self._walk[1] + 1 if self._walk[0] == c else 1
            self._walk = (c, walked)
        j = i - self._chunk_starts[c]
        if file_chunk is not None and walked <= WALK:
            assert self.recording is not None
            head = self.recording.chunk_head(file_chunk)
            refused: list[int] = []
            try:
                row = None if head is None else \
                    replace(head, refused=lambda k, _problem: refused.append(k)).rows([j])[j]
            except (TypeError, ValueError, OverflowError, IndexError, msgpack.UnpackException):
                row = None  # (the model said why when it replayed the chunk)
            if row is not None and not refused:
                with self._lock:
                    self._alone[i] = row
                    if len(self._alone) > ALONE_KEPT:
                        self._alone.popitem(last=False)
                return row
        return self._row_of(c, i)

    def events(self, indices: Sequence[int]) -> Iterator[Event]:
        """The events at these indices, as `event` gives each; where more than WALK of them in a row share a
        chunk, its rows are read once for all of them (a search through a million events decodes each chunk
        once, not each event alone)."""
        wanted = np.asarray(indices, dtype=np.int64)
        if not len(wanted):
            return
        i_list = wanted.tolist()
        chunks = np.searchsorted(np.array(self._chunk_starts, dtype=np.int64), wanted, side="right") - 1
        edges = [0, *(np.flatnonzero(np.diff(chunks)) + 1).tolist(), len(i_list)]
        for a, b in pairwise(edges):
            run, c = i_list[a:b], int(chunks[a])  # (the last chunk starting at or before: empty ones skipped)
            rows = self._chunk_rows(c) if b - a > WALK else []
            start = self._chunk_starts[c]
            for i in run:
                j = i - start
                yield Event.from_row(rows[j]) if j < len(rows) else self.event(i)

    # -- time travel ------------------------------------------------------------------------------------------
    def index_at(self, t_ns: int) -> int:
        """Number of events at or before `t_ns`."""
        return int(np.searchsorted(self.ts_max, t_ns, side="right"))

    def state_at(self, t_ns: int) -> SimState:
        """The simulator's full state at time `t_ns`: nearest checkpoint, then replay to that time. Only for a
        time the model has reached (`covers`): a replay past it would not know of the losses ahead.

        The cyclic collector is paused meanwhile: a replay makes thousands of acyclic rows, and a full collection
        over the checkpoints would cost more than the replay itself."""
        if not self.history:
            raise ValueError("this index keeps no history: it was opened for a report of the model's findings")
        if not self.covers(t_ns):
            raise ValueError(f"the model has not reached {t_ns} yet ({self.modelled} of {self.n} events)")
        with collector_paused():
            return self._state_at(t_ns)

    def _state_at(self, t_ns: int) -> SimState:
        upto = self.index_at(t_ns)
        k = bisect.bisect_right(self._checkpoint_starts, upto) - 1
        while k > 0 and (self._checkpoints[k].loss_ns or 0) > t_ns:  # a loss that comes after t_ns
            k -= 1
        sim = self._replayer
        last = self._replayed
        if last is not None and last[0] == k and last[1] <= upto:  # on from the last seek's events
            sim.restore(last[2])
            i = last[1]
        else:
            full = k
            while self._checkpoints[full].state is None:
                full -= 1
            sim.restore(self._checkpoints[full].state,  # type: ignore[arg-type]
                        (c.changes for c in self._checkpoints[full + 1:k + 1]))  # type: ignore[misc]
            i = self._checkpoints[k].next_index
        replayed_from = i
        stateful = self._stateful
        kinds = self.kinds
        while i < upto:
            c = bisect.bisect_right(self._chunk_starts, i) - 1
            start = self._chunk_starts[c]
            end = self._chunk_starts[c + 1] if c + 1 < len(self._chunk_starts) else self.n
            stop = min(upto, end)
            replayed = np.flatnonzero(stateful[kinds[i:stop]])
            if not len(replayed) and sim.state.index >= 0:  # nothing to replay, once begun: the chunk is not read
                i = stop  # (a long quiet capture's tiny chunks of DMA maps)
                continue
            rows = self._replayed_rows(c, start, end)
            if len(rows) == end - start:  # (else it is no longer readable: the model counted it lost)
                if sim.state.index < 0 and end > start:
                    sim.begin(self._first_ts[c])  # as the model did: the replayed rows may not start the chunk
                offset = i - start
                sim.apply_rows(rows, (offset + j for j in replayed.tolist()), start)
            i = stop
        if upto != replayed_from:  # (else the last seek's, or the checkpoint, already is this state)
            self._replayed = (k, upto, sim.snapshot())
        sim.advance(t_ns)
        return sim.state

    @property
    def findings_seen(self) -> tuple[int, int]:
        """How many findings the model has made and revised so far: a view drawn from them is out of date once
        this changes (a revision changes a finding's words and severity in place, not their number)."""
        return len(self.sim.anomalies), self.sim.revisions

    def anomalies_between(self, t0: int, t1: int) -> list[Anomaly]:
        a = self.anomalies
        return a[bisect.bisect_left(self._anomaly_ts, t0):bisect.bisect_right(self._anomaly_ts, t1)]
