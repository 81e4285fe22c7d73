"""Parse a big kernel log on every core: worker processes each read and parse ranges of the file, and this process
writes their findings in file order.

No line moves between processes: each worker opens the file itself and reads its own range, cut at the same byte
offsets, in the same blocks, as the single-process import reads it (pipeline._blocks), and sends back only what it
found: the rows and device notes in order, the range's counts, and the parsers' state at both ends of the range.

A parser remembers earlier lines (a record open across lines, the last stamp, a status line, the last device each
IOMMU reported), so a worker starts OVERLAP bytes early and parses those lines only to rebuild that state, then
keeps what it finds from its range's first line on. Its state there must equal this process's, which is the state
the previous range ended in: then its rows are exactly the single-process import's, and its end state is installed
here. Two pieces of state are kept as long as the log runs, so a worker rarely rebuilds them: the last device per
IOMMU (only a "callbacks suppressed" line reads it) and the host facts (only a boot's first lines read them); the
worker notes which of them its range read before setting, and those must agree too. When anything disagrees, or a
worker fails or is killed, this process parses that range itself, from its own state: the result is the same,
only slower. A log of several boots (boots.py) keeps each later boot's rows apart: only this process numbers the
boots, so a range in which one starts is parsed here, and the rows of the others are moved to the boot they fall in
as they are written.

Only a seekable file whose format is the kernel log with dmesg stamps (the stamps are its times) is split: syslog
and line-numbered clocks carry a year or a line count through the whole file.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, BinaryIO

from ..events import Row
from ..recording.encoded import PackedRows
from .core import ImportStats, Sink, TextImporter
from .kernel_log import KernelLogImporter
from .scan import Runs

SPLIT_MIN = 32 << 20  # smaller inputs stay in this process: starting the workers costs more than they save
RANGE_READS = 4  # a worker's range: a few of the import's reads
OVERLAP = 256 << 10  # parsed before a range, to bring the parsers' state up to its first line
AHEAD = 2  # ranges handed out per worker beyond the one being written: bounds what waits in memory
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies (linux/prctl.h)

Blocks = Callable[..., Iterator[tuple[Runs, int]]]  # pipeline._blocks
Factory = Callable[[Sink, ImportStats], TextImporter]  # builds the import's importer around a sink


def workers() -> int:
    """Worker processes an import starts: one per core this process may run on (1, so no split, where the system
    cannot say which: that is Linux's call)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else 1


def can_split(size: int, seekable: bool, chosen: str, clock: str, mixed: bool) -> bool:
    """Whether this import is split across processes (see the module's note): on a machine with a core to spare,
    from a process of one thread (a fork copies only the calling thread, and a lock another thread held would stay
    held in the worker)."""
    return (seekable and size >= SPLIT_MIN and chosen == "kernel-log" and clock == "kernel" and not mixed
            and workers() > 1 and threading.active_count() == 1)


@dataclass(slots=True)
class State:
    """What a kernel log importer remembers between lines (all of it: see `state_of`)."""

    importer: tuple[Any, ...]  # the open record's parser (its index), the last stamp, whether the scanner follows
    parsers: list[dict[str, Any]]  # each parser's own attributes
    last_device: dict[str, str | None]
    host: list[tuple[str, Any]]


def state_of(log: KernelLogImporter) -> State:
    """The importer's state: every attribute of every parser (their records, pending rows and notes), the
    importer's open record and last stamp, the scanner's following, the guest's last stamp."""
    guest_ts = getattr(log.guest, "last_ts", None)
    opened = None if log.open is None else log.parsers.index(log.open)
    return State((opened, log.last_ts, log.scanner._follow, guest_ts),
                 [_attributes(p) for p in log.parsers], dict(log.sink.last_device), list(log.stats.host.items()))


def _attributes(parser: object) -> dict[str, Any]:
    names = (set(vars(parser)) - {"sink"}) | {"open", "greedy", "pending"}
    return {k: getattr(parser, k) for k in sorted(names) if hasattr(parser, k)}


def _install(log: KernelLogImporter, s: State, host: bool) -> None:
    """Take up a worker's end state; its host facts only when its range read them (else it never learnt those
    known here, and found none)."""
    opened, log.last_ts, log.scanner._follow, guest_ts = s.importer
    log.open = None if opened is None else log.parsers[opened]
    if log.guest is not None:
        log.guest.last_ts = guest_ts  # type: ignore[attr-defined]
    for parser, attrs in zip(log.parsers, s.parsers, strict=True):
        for k, v in attrs.items():
            setattr(parser, k, v)
    log.sink.last_device.update(s.last_device)
    if host:
        log.stats.host.clear()
        log.stats.host.update(s.host)


@dataclass(slots=True)
class Parsed:
    """A worker's range: its state before the range's first line and after its last, what it found (rows, and
    device notes after the number of rows they follow), and its counts. The rows come already encoded, as the
    writer stores them (PackedRows: a few arrays, where a list of rows took longer to pickle, to unpickle and to
    encode here than the worker takes to encode them), or as a list when the columns cannot hold one of them."""

    start: State
    end: State
    rows: PackedRows | list[Row]
    notes: list[tuple[int, str, str | None]]
    lines: int
    stats: ImportStats  # the range's own counts; unknown_samples numbered from the range's first line
    recalled: set[str]  # vendors whose last device the range read before any line of it set one
    host_read: bool  # the range asked whether the host facts were known


class _Found:
    """A writer stand-in: the rows a worker finds, kept in order."""

    def __init__(self, rows: list[Row]) -> None:
        self.append_row = rows.append


class _Recalled(dict[str, str | None]):
    """The last device per vendor, noting vendors read while unknown here (this process may know them)."""

    def __init__(self) -> None:
        super().__init__()
        self.missed: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self.missed.add(key)
        return super().get(key, default)


class _Host(dict[str, Any]):
    """Host facts, noting that a line asked which are known."""

    asked = False

    def keys(self) -> Any:  # type: ignore[override]
        self.asked = True
        return super().keys()


class _WorkerSink(Sink):
    """Rows, and device notes with the number of rows before each, for this process to write. Only this process
    knows which devices the earlier ranges named, so each note is sent the first time the range makes it: Sink.device
    ignores a note it has taken before, whatever came between."""

    def __init__(self, rows: list[Row], notes: list[tuple[int, str, str | None]], source: str,
                 stats: ImportStats) -> None:
        super().__init__(_Found(rows), source, stats)  # type: ignore[arg-type]
        self.last_device = _Recalled()
        self._rows, self._notes = rows, notes
        self._noted: set[tuple[str, str | None]] = set()

    def device(self, name: str | None, driver: str | None = None) -> None:
        if name is not None and (name, driver) not in self._noted:
            self._noted.add((name, driver))
            self._notes.append((len(self._rows), name, driver))


class _Limited:
    """A file read no further than `end` (None: to its end)."""

    def __init__(self, f: BinaryIO, start: int, end: int | None) -> None:
        f.seek(start)
        self.f, self.left = f, None if end is None else end - start

    def read(self, n: int) -> bytes:
        if self.left is None:
            return self.f.read(n)
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        return data


def _cut_line(f: BinaryIO, start: int) -> tuple[bytes, int]:
    """The part before `start` of the line that `start` cuts (b"" at a line's start), and where that line
    begins."""
    at = start
    while at > 0:
        step = min(at, OVERLAP)
        f.seek(at - step)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            at = at - step + nl + 1
            break
        at -= step
    f.seek(at)
    return f.read(start - at), at


def parse_range(log: KernelLogImporter, f: BinaryIO, path: str, blocks: Blocks, start: int, end: int | None,
                head: bytes, before: Callable[[], None] | None = None) -> None:
    """Feed `log` the lines of `f` from byte `start` (a boundary of the import's reads) to `end` (None: the end),
    read in the same blocks as the whole import reads them (`head`, its first read, when `start` is 0). With
    `before`, the whole lines in the OVERLAP bytes before the range are fed first, and `before` is called between."""
    cut, begins = _cut_line(f, start)
    if before is not None:
        if begins > 0:
            f.seek(max(0, begins - OVERLAP))
            window = f.read(begins - max(0, begins - OVERLAP))
            first = window.find(b"\n") + 1 if begins > OVERLAP else 0
            if (found := log.scanner.find(window, first, len(window))) is not None:
                log.scanner.take(found)
        before()
    scanner = log.scanner
    first = head if start == 0 else b""
    for runs, _ in blocks(_Limited(f, start + len(first), end), first, path, cut, start, end is None):
        for run in runs:
            if (found := scanner.find(*run)) is not None:
                scanner.take(found)


# -- in a worker process -------------------------------------------------------------------------------------
_job: dict[str, Any] = {}


def _start_worker(parent: int, path: str, head: bytes, make: Factory, blocks: Blocks, source: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # (held off while it was forked: see _submit)
    _die_with(parent)
    gc.freeze()  # what the fork brought is never garbage (see _parse)
    _job.update(path=path, head=head, make=make, blocks=blocks, source=source)


def _die_with(parent: int) -> None:
    """Have Linux kill this worker when the importing process dies, however it dies (kill -9, a timeout's SIGTERM,
    the OOM killer): its cleanup runs only on an exception, and a worker left behind would wait for ever."""
    with contextlib.suppress(OSError, AttributeError):  # (no C library to ask: the cleanup is all there is)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # (it died before the request was made)
        os._exit(1)


def _parse(start: int, end: int | None) -> Parsed | None:
    """Parse one range (see the module's note); None when it could not (this process then parses it)."""
    gc.collect()  # the last range's importer: its scanner and parsers refer to each other, and the collector is
    # paused for the import (rows are short-lived), so it would hold its last block for the whole import
    try:
        rows: list[Row] = []
        notes: list[tuple[int, str, str | None]] = []
        stats = ImportStats(format="kernel-log", input="")
        stats.host = _Host()
        sink = _WorkerSink(rows, notes, _job["source"], stats)
        log = _job["make"](sink, stats)
        assert isinstance(log, KernelLogImporter)
        marks: dict[str, Any] = {}

        def before() -> None:
            marks.update(state=copy.deepcopy(state_of(log)), lines=log.scanner.lines)  # not the live lists
            rows.clear()
            notes.clear()
            sink._noted.clear()
            sink.last_device.missed.clear()
            stats.host.asked = False
            stats.parsed = stats.unknown = stats.suppressed = stats.events = 0
            stats.unknown_samples, stats.by_vendor, stats.pasid_spaces = [], {}, {}

        with open(_job["path"], "rb") as f:
            parse_range(log, f, _job["path"], _job["blocks"], start, end, _job["head"], before=before)
        if log.boots:  # a boot starts here: this process parses the range, and numbers and places the boot
            return None
        lines = log.scanner.lines - marks["lines"]
        for sample in stats.unknown_samples:
            sample[0] -= marks["lines"]
        return Parsed(marks["state"], state_of(log), _encoded(rows), notes, lines, stats,
                      set(sink.last_device.missed), stats.host.asked)
    except Exception:  # noqa: BLE001 - whatever it was, the importing process parses the range itself
        return None


def _encoded(rows: list[Row]) -> PackedRows | list[Row]:
    try:
        return PackedRows.of_rows(rows)
    except ValueError:  # a row the columns cannot hold: the writer stores it as rows, here as there
        return rows


# -- in the importing process --------------------------------------------------------------------------------
def _agrees(log: KernelLogImporter, p: Parsed) -> bool:
    """Whether the worker's range began in this importer's state (see the module's note)."""
    here = state_of(log)
    if here.importer != p.start.importer or here.parsers != p.start.parsers:
        return False
    known = log.sink.last_device
    if any(known.get(v) != d for v, d in p.start.last_device.items()):
        return False
    if any(known.get(v) is not None for v in p.recalled):
        return False
    return not p.host_read or here.host == p.start.host


def _adopt(log: KernelLogImporter, writer: Any, p: Parsed) -> None:
    """Write a range the worker parsed and take up its end state. A worker knows nothing of the boots before its
    range (it gives up a range in which one starts): its rows are moved to the boot being read here."""
    sink, rows = log.sink, p.rows
    if sink.boot is not None:
        if isinstance(rows, PackedRows):
            rows = rows.rows()
        for row in rows:
            sink.move(row)
        prefix = sink.boot[2]
        p.stats.pasid_spaces = {space: {(d if d is None else prefix + d, n) for d, n in pairs}
                                for space, pairs in p.stats.pasid_spaces.items()}
    done = 0
    for at, name, driver in p.notes:
        _write(writer, rows, done, at)
        sink.device(name, driver)
        done = at
    _write(writer, rows, done, len(rows))
    log.stats.add(p.stats, log.scanner.lines)
    log.scanner.lines += p.lines
    _install(log, p.end, p.host_read)


def _submit(pool: ProcessPoolExecutor, start: int, end: int | None) -> Future[Parsed | None]:
    """Hand a worker a range, with Ctrl-C held off meanwhile: the first hand-out forks the workers, and a Ctrl-C
    landing amid a fork's bookkeeping was lost (the import went on), left a pool half started (an internal error),
    or printed a worker's traceback before the worker came to ignore it. Held off, it is raised here once the pool
    stands, and the workers, which start with it held off too, drop it."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(_parse, start, end)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _write(writer: Any, rows: PackedRows | list[Row], start: int, end: int) -> None:
    """Hand the writer rows start..end-1 of a range."""
    if end > start:
        if isinstance(rows, PackedRows):
            writer.append_packed(rows.slice(start, end))
        else:
            writer.extend_rows(rows[start:end])


def import_split(log: KernelLogImporter, f: BinaryIO, path: str, size: int, head: bytes, blocks: Blocks, block: int,
                 make: Factory, writer: Any, progress: Callable[[int, int], None] | None) -> None:
    """Feed `log` the whole of `f` (whose first read was `head`, and the next ones `block` bytes each), its ranges
    parsed by worker processes."""
    bounds = [0, *range(len(head) + RANGE_READS * block, size, RANGE_READS * block)]
    ranges = [(a, b) for a, b in zip(bounds, [*bounds[1:], None], strict=True)]
    n = workers()
    pool = ProcessPoolExecutor(n, get_context("fork"), initializer=_start_worker,
                               initargs=(os.getpid(), path, head, make, blocks, log.sink.source))
    waiting: deque[Future[Parsed | None]] = deque()  # the ranges handed out, in order from the next to write
    handed = 0
    try:
        for a, b in ranges:
            parsed = None
            try:
                while handed < len(ranges) and len(waiting) < n * AHEAD:
                    waiting.append(_submit(pool, *ranges[handed]))
                    handed += 1
                if waiting:
                    parsed = waiting.popleft().result()
            except BrokenProcessPool:  # a worker was killed: this process parses the rest
                waiting.clear()
                handed = len(ranges)
            if parsed is not None and _agrees(log, parsed):
                _adopt(log, writer, parsed)
            else:
                parse_range(log, f, path, blocks, a, b, head)
            if progress is not None:
                progress(size if b is None else b, size)
    except BaseException:  # Ctrl-C, or the output failed: stop the workers now rather than after their ranges
        processes = getattr(pool, "_processes", None) or {}  # (private: without it, they are waited for)
        for process in list(processes.values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

