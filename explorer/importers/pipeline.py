"""Run an import end to end: sniff the format, stream the input through its importer into a recording.

Memory stays bounded whatever the input's size: the input is read in blocks (the next read and scanned on
another thread while this one is parsed: `read_ahead`; a big dmesg file's ranges are read and parsed by worker
processes instead, split.py), the writer flushes a chunk every few thousand events, and only the current block is
ever decoded. The output is checked before the input is read, and the recording is
written beside its final name and renamed into place when complete (outputs.atomic_output), so a failed import
never leaves half a file or clobbers an older one.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from ..allocator import buffers_reused
from ..collector import collector_paused
from ..errors import InputError
from ..outputs import atomic_output
from ..recording import Header, RecordingWriter
from ..recording.header import LIFECYCLE
from .boots import TooManyBoots, keep_apart
from .core import ImportStats, Sink, TextImporter
from .detect import FORMATS, TRACE_DAT_MAGIC, Sniff, not_text, sniff
from .ftrace import FtraceImporter
from .kernel_log import KernelLogImporter
from .prefix import YearGuess
from .scan import BLOCK, BlockScanner, FoundLines, Runs
from .split import can_split, import_split

SNIFF_BYTES = 1 << 16
SNIFF_MAX = 1 << 24  # the most read to find the input's first complete lines
MAX_LINE = 64 << 20  # a "line" longer than this is not text we can use
SWITCH_S = 0.0002  # the GIL's switch interval while a read runs beside the parsers (read_ahead)

ProgressFn = Callable[[int, int], None]


@contextmanager
def _open_input(path: str, fmt: str | None) -> Iterator[tuple[BinaryIO, int, str, bool]]:
    """The input as a binary stream, its size (0 if unknown), its name, and whether it is a trace.dat (then the
    stream is `trace-cmd report`'s output)."""
    if path == "-":
        yield sys.stdin.buffer, 0, "<stdin>", False
        return
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise InputError(path, "", e.strerror or str(e)) from None
    with f:
        is_dat = f.read(len(TRACE_DAT_MAGIC)) == TRACE_DAT_MAGIC
        f.seek(0)
        if is_dat or fmt == "trace-dat":  # a trace.dat is binary whatever --format says: only trace-cmd reads it
            with _trace_cmd_report(path) as out:
                yield out, 0, p.name, True
            return
        yield f, os.fstat(f.fileno()).st_size, p.name, False


@contextmanager
def _trace_cmd_report(path: str) -> Iterator[BinaryIO]:
    exe = shutil.which("trace-cmd")
    if exe is None:
        raise InputError(path, "", "a trace.dat file is read through trace-cmd, which is not installed "
                                   "(apt install trace-cmd), or convert it first: trace-cmd report -i FILE > trace.txt")
    # Its warnings go to a file, not a pipe: read only at the end, a pipe's 64 KiB would fill and stall it.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([exe, "report", "-i", path], stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None

        def failed() -> InputError:
            return InputError(path, "", f"trace-cmd report failed: {_last_line(err) or proc.returncode}")

        try:
            yield proc.stdout  # type: ignore[misc]
        except BaseException:
            proc.stdout.close()
            if proc.wait() > 0:  # its own failure explains what reading its report then found (nothing, say)
                raise failed() from None
            raise
        proc.stdout.close()
        if proc.wait() != 0:
            raise failed()


def _last_line(f: IO[bytes]) -> str:
    f.seek(0)
    lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


def _blocks(f: BinaryIO, head: bytes, path: str, cut: bytes = b"", done: int = 0, to_end: bool = True
            ) -> Iterator[tuple[Runs, int]]:
    """The whole lines of each read, as runs `block[start:end]` of about BLOCK bytes, and how many input bytes
    have been consumed after them. Each read is scanned where it lies, never copied: only a line that straddles
    two reads is joined, and handed over on its own before the rest of the read. A range of the input (split.py)
    starts `done` bytes in, after `cut`, the beginning of the line its start cuts; the line its end cuts is left
    to the next range, unless the range reaches the input's end (`to_end`)."""
    partial: list[bytes] = [cut] if cut else []  # the beginning of a line, from earlier reads
    held = len(cut)
    chunk = head or f.read(BLOCK)
    while chunk:
        done += len(chunk)
        first = chunk.find(b"\n") + 1
        if not first:
            partial.append(chunk)
            held += len(chunk)
            if held > MAX_LINE:
                raise InputError(path, f"byte {done - held}", f"no line break in {MAX_LINE >> 20} MiB: "
                                                              "this is not a text log")
            chunk = f.read(BLOCK)
            continue
        runs: Runs = []
        start = 0
        if partial:
            runs.append((b"".join([*partial, chunk[:first]]), 0, first + held))
            partial, held, start = [], 0, first
        last = chunk.rfind(b"\n") + 1
        if start < last:
            runs.append((chunk, start, last))
        yield runs, done - len(chunk) + last
        if last < len(chunk):
            partial, held = [chunk[last:]], len(chunk) - last
        chunk = f.read(BLOCK)
    if partial and to_end:
        line = b"".join(partial)
        yield [(line, 0, held)], done


def read_ahead(blocks: Iterator[tuple[Runs, int]], find: Callable[[bytes, int, int], FoundLines | None]
               ) -> Iterator[tuple[list[FoundLines], int]]:
    """Each read's lines (`BlockScanner.find` of its runs) and the input consumed after it. The next read is made
    and its lines found on another thread while the caller parses this one's: reading and scanning release the
    GIL, so a second core takes them off the parsers' time. At most two reads are held. Meanwhile the interpreter
    hands the GIL over after SWITCH_S instead of its default 5 ms: the reader takes it back several times a read,
    and at 5 ms a time it fell behind the parsers. The reader is a daemon thread: when the import stops early, a
    read still blocked on a terminal or a pipe holds nothing up."""
    asks: queue.SimpleQueue[bool] = queue.SimpleQueue()
    answers: queue.SimpleQueue[tuple[tuple[list[FoundLines], int] | None, BaseException | None]] = \
        queue.SimpleQueue()

    def reader() -> None:
        while asks.get():
            try:
                item = next(blocks, None)
                answers.put((None if item is None else
                             ([found for run in item[0] if (found := find(*run)) is not None], item[1]), None))
            except BaseException as e:  # handed to the parsing thread, which raises it
                answers.put((None, e))
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_S))
    threading.Thread(target=reader, name="import-read", daemon=True).start()
    try:
        asks.put(True)
        while True:
            item, error = answers.get()
            if error is not None:
                raise error
            if item is None:
                return
            asks.put(True)
            yield item
    finally:
        asks.put(False)
        sys.setswitchinterval(interval)


def _description(fmt: str, clock: str, name: str) -> str:
    when = {"kernel": "times are the kernel's (seconds since boot, as printed)",
            "wall": "times are the wall clock as printed, converted to UTC nanoseconds (the zone is assumed UTC "
                    "where the log names none; syslog lines carry no year, so it is taken from the log or the "
                    "file's date); the original text of each fault is kept in its raw field",
            "line": "the log has no timestamps: each line is one millisecond after the previous, so only the "
                    "order is real"}[clock]
    return (f"Imported from {name} ({fmt}); {when}. Lines without a timestamp of their own take the previous "
            f"line's time. PCI devices printed without a segment are named in segment 0000.")


def import_log(path: str, out: str | os.PathLike[str], *, fmt: str | None = None,
               progress: ProgressFn | None = None, title: str | None = None, keep: bool = False) -> ImportStats:
    """Import `path` ('-' for stdin) into the recording `out`; returns the statistics kept in its footer. `keep`:
    a file made under that name during the import is kept (`outputs.atomic_output`), as --force does not ask."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(path, "", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    with atomic_output(out, "wb", reads=(path,), keep=keep) as dest, _open_input(path, fmt) as (f, size, name, is_dat):
        head = f.read(SNIFF_BYTES)
        while head.count(b"\n") < 2 and len(head) < SNIFF_MAX and (more := f.read(len(head))):
            head += more  # a first line longer than the sample: read on (bounded) to the lines that tell the format
        if not is_dat:
            _refuse_non_text(path, head, out)
        elif not head:  # (trace-cmd exits 0 on a trace.dat whose header it cannot read, and prints nothing)
            raise InputError(path, "", "trace-cmd report printed nothing for it: the trace.dat is empty or damaged "
                                       "('trace-cmd report -i FILE' shows what trace-cmd makes of it)")
        s = sniff(head)
        if s.format == "trace-dat" and not is_dat:
            raise InputError(path, "", "a trace.dat is read through trace-cmd, which needs a file: name it "
                                       "instead of '-'")
        chosen = "ftrace" if is_dat else (fmt or s.format)
        if chosen is None:
            raise _not_recognised(path, s, "no line looks like a kernel log or a trace", len(head))
        stats = ImportStats(format="trace-dat" if is_dat else chosen, input=name)
        try:
            return _run(path, f, size, head, s, chosen, stats, dest, progress, title or f"{name} (imported)")
        except TooManyBoots as e:
            raise InputError(path, "", str(e)) from None


def _refuse_non_text(path: str, head: bytes, out: str | os.PathLike[str]) -> None:
    """Compressed or binary input, said in one line (rather than a screenful of what its bytes decode to)."""
    why = not_text(head)
    if why is None:
        return
    what, tool = why
    if tool is not None:
        source = f"{tool} {path} |" if path != "-" else f"... | {tool} |"
        what += f": try `{source} pasid-explorer import - -o {out}`"
    raise InputError(path, "", what)


def _run(path: str, f: BinaryIO, size: int, head: bytes, s: Sniff, chosen: str, stats: ImportStats,
         dest: BinaryIO, progress: ProgressFn | None, title: str) -> ImportStats:
    clock = "kernel" if chosen == "ftrace" else s.clock
    header = Header(source=f"import:{stats.format}", host=dict(s.host), clock=clock, title=title,
                    description=_description(stats.format, clock, stats.input), probes=_coverage(chosen))
    writer = RecordingWriter(dest, header)
    years = YearGuess(s.year or _file_year(path))
    mixed = bool(s.evidence.get("kernel-log") and s.evidence.get("ftrace"))
    with collector_paused(), buffers_reused():  # rows are short-lived or written out; blocks come and go
        importer = _importer(chosen, Sink(writer, header.source, stats), stats, clock, years, mixed)
        if isinstance(importer, KernelLogImporter) and can_split(size, f.seekable(), chosen, clock, mixed):
            def make(sink: Sink, stats: ImportStats) -> TextImporter:
                return _importer(chosen, sink, stats, clock, YearGuess(years.year), mixed)

            import_split(importer, f, path, size, head, _blocks, BLOCK, make, writer, progress)
        else:
            _read_all(importer.scanner, f, head, path, size, progress)
        importer.finish()
        if stats.parsed == 0 and not s.evidence.get(chosen):
            if s.format in (None, chosen):
                raise _not_recognised(path, s, f"nothing in it reads as {chosen}", len(head))
            raise _not_recognised(path, s, f"nothing in it reads as {chosen} (--format), and its first lines read "
                                           f"as {s.format}: leave --format out", len(head), tried=False)
        log = importer if isinstance(importer, KernelLogImporter) else importer.guest
        stats.boots = log.boots if isinstance(log, KernelLogImporter) else []
        writer.close("complete", **{"import": stats.footer()})
        if stats.boots:
            keep_apart(dest, path, stats.boots, stats.host.get("kernel"))
    return stats


def _read_all(scanner: BlockScanner, f: BinaryIO, head: bytes, path: str, size: int,
              progress: ProgressFn | None) -> None:
    """Feed the scanner the whole input in this process, each read's lines found on the reader thread."""
    with closing(read_ahead(_blocks(f, head, path), scanner.find)) as blocks:
        for found, done in blocks:
            for lines in found:
                scanner.take(lines)
            if progress is not None:
                progress(done, size)


def _importer(chosen: str, sink: Sink, stats: ImportStats, clock: str, years: YearGuess,
              mixed: bool) -> TextImporter:
    """The chosen format's importer, taking the other format's along for the lines of it a paste mixes in (`mixed`:
    the first lines showed both formats, see TextImporter)."""
    log = KernelLogImporter(sink, stats, clock, years)
    trace = FtraceImporter(sink, stats)
    host, guest = (trace, log) if chosen == "ftrace" else (log, trace)
    host.take_along(guest, scan_for_guest=mixed)
    return host


def _coverage(chosen: str) -> dict[str, object]:
    """What an imported text can and cannot show, in the header's probes terms (info prints the gaps)."""
    if chosen == "ftrace":
        return {"attached": ["iommu and intel_iommu tracepoints, as printed"],
                "unavailable": {LIFECYCLE: "the iommu tracepoints do not show PASID allocation, binds or attaches "
                                           "(only PASID Explorer's own events printed into the trace do)"}}
    return {"attached": ["kernel log: IOMMU fault lines"],
            "unavailable": {LIFECYCLE: "a kernel log does not print PASID allocation, binds or attaches: faults "
                                       "name PASIDs handed out before or outside the log",
                            "page requests": "page requests and responses are not printed; only faults are"}}


def _file_year(path: str) -> int:
    try:
        when = os.stat(path).st_mtime if path != "-" else None
    except OSError:
        when = None
    return dt.datetime.fromtimestamp(when or dt.datetime.now().timestamp(), dt.UTC).year


def _not_recognised(path: str, s: Sniff, why: str, read: int, *, tried: bool = True) -> InputError:
    shown = "; ".join(repr(x)[:200] for x in s.first_lines[:3]) or \
        (f"a line longer than the {read:,} bytes read" if read else "(empty input)")
    formats = f" (tried: {', '.join(FORMATS)})" if tried else ""
    return InputError(path, "line 1", f"{why}{formats}; it begins: {shown}")
