"""Run an import end to end: sniff the format, stream the input through its importer into a recording.

Memory stays bounded whatever the input's size: the input is read in blocks, the writer flushes a chunk every
few thousand events, and only the current block is ever decoded. The recording is written beside its final name
and renamed into place when complete, so a failed import never leaves half a file or clobbers an older one.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError
from ..recording import Header, RecordingWriter
from .core import ImportStats, Sink
from .detect import FORMATS, TRACE_DAT_MAGIC, Sniff, sniff
from .ftrace import FtraceImporter
from .kernel_log import KernelLogImporter
from .prefix import YearGuess
from .scan import BLOCK

SNIFF_BYTES = 1 << 16
MAX_LINE = 64 << 20  # a "line" longer than this is not text we can use

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
        if fmt == "trace-dat" or (fmt is None and is_dat):
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
    proc = subprocess.Popen([exe, "report", "-i", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        yield proc.stdout  # type: ignore[misc]
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
        if proc.wait() != 0:
            raise InputError(path, "", f"trace-cmd report failed: {err.splitlines()[-1] if err else proc.returncode}")


def _blocks(f: BinaryIO, head: bytes, path: str) -> Iterator[tuple[bytes, int, int, int]]:
    """Runs of whole lines, `block[start:end]`, of about BLOCK bytes, and how many input bytes have been consumed
    after each. Each read is scanned where it lies, never copied: only a line that straddles two reads is joined,
    and handed over on its own."""
    partial: list[bytes] = []  # the beginning of a line, from earlier reads
    held = done = 0
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
        start = 0
        if partial:
            line = b"".join([*partial, chunk[:first]])
            yield line, 0, first + held, done - len(chunk) + first
            partial, held, start = [], 0, first
        last = chunk.rfind(b"\n") + 1
        if start < last:
            yield chunk, start, last, done - len(chunk) + last
        if last < len(chunk):
            partial, held = [chunk[last:]], len(chunk) - last
        chunk = f.read(BLOCK)
    if partial:
        line = b"".join(partial)
        yield line, 0, held, done


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
               progress: ProgressFn | None = None, title: str | None = None) -> ImportStats:
    """Import `path` ('-' for stdin) into the recording `out`; returns the statistics kept in its footer."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(path, "", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    with _open_input(path, fmt) as (f, size, name, is_dat):
        head = f.read(SNIFF_BYTES)
        s = sniff(head)
        chosen = "ftrace" if is_dat else (fmt or s.format)
        if chosen is None:
            raise _not_recognised(path, s, "no line looks like a kernel log or a trace")
        stats = ImportStats(format="trace-dat" if is_dat else chosen, input=name)
        return _run(path, f, size, head, s, chosen, stats, Path(out), progress, title or f"{name} (imported)")


def _run(path: str, f: BinaryIO, size: int, head: bytes, s: Sniff, chosen: str, stats: ImportStats, out: Path,
         progress: ProgressFn | None, title: str) -> ImportStats:
    clock = "kernel" if chosen == "ftrace" else s.clock
    host = dict(s.host)
    header = Header(source=f"import:{stats.format}", host=host, clock=clock, title=title,
                    description=_description(stats.format, clock, stats.input), probes=_coverage(chosen))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    writer = RecordingWriter(tmp, header)
    collecting = gc.isenabled()
    gc.disable()  # rows are short-lived or written out; the cyclic collector would only rescan them
    try:
        sink = Sink(writer, header.source, stats)
        if chosen == "ftrace":
            importer: KernelLogImporter | FtraceImporter = FtraceImporter(sink, stats)
        else:
            year = s.year or _file_year(path)
            importer = KernelLogImporter(sink, stats, clock, YearGuess(year))
        for block, start, end, done in _blocks(f, head, path):
            importer.feed(block, start, end)
            if progress is not None:
                progress(done, size)
        importer.finish()
        if stats.parsed == 0 and not s.evidence.get(chosen):
            raise _not_recognised(path, s, f"nothing in it reads as {chosen}")
        writer.close("complete", **{"import": stats.footer()})
        os.replace(tmp, out)
    except BaseException:
        if not writer.closed:
            writer.close("aborted")
        with suppress(OSError):
            tmp.unlink()
        raise
    finally:
        if collecting:
            gc.enable()
    return stats


def _coverage(chosen: str) -> dict[str, object]:
    """What an imported text can and cannot show, in the header's probes terms (info prints the gaps)."""
    if chosen == "ftrace":
        return {"attached": ["iommu and intel_iommu tracepoints, as printed"],
                "unavailable": {"PASID lifecycle": "the iommu tracepoints do not show PASID allocation, binds or "
                                                   "attaches (only PASID Explorer's own events printed into the "
                                                   "trace do)"}}
    return {"attached": ["kernel log: IOMMU fault lines"],
            "unavailable": {"PASID lifecycle": "a kernel log does not print PASID allocation, binds or attaches: "
                                               "faults name PASIDs handed out before or outside the log",
                            "page requests": "page requests and responses are not printed; only faults are"}}


def _file_year(path: str) -> int:
    try:
        when = os.stat(path).st_mtime if path != "-" else None
    except OSError:
        when = None
    return dt.datetime.fromtimestamp(when or dt.datetime.now().timestamp(), dt.UTC).year


def _not_recognised(path: str, s: Sniff, why: str) -> InputError:
    shown = "; ".join(repr(x) for x in s.first_lines[:3]) or "(empty input)"
    return InputError(path, "line 1", f"{why} (tried: {', '.join(FORMATS)}); it begins: {shown}")
