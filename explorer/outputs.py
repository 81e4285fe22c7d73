"""Files the tool writes: checked before any work is done, and only in place once complete (a recording, which is
written chunk by chunk so that a killed capture keeps its past, never over one that is there unless asked)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO

from .errors import InputError


def check_output(out: str | os.PathLike[str], reads: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse an output path that cannot be written, or that names a file the command reads (`reads`: writing it
    would replace the input), before reading a big input for nothing."""
    target = Path(out)
    for source in reads:
        if _same_file(target, Path(source)):
            raise InputError(str(out), "", f"is also the input {str(source)!r}: writing it would replace what is "
                                           "read; name another file with -o")
    if target.is_dir():
        raise InputError(str(out), "", "is a directory: name the file to write")
    parent = target.parent
    if not parent.is_dir():
        raise InputError(str(out), "", f"no such folder {str(parent)!r} to write into")
    if not os.access(parent, os.W_OK):
        raise InputError(str(out), "", f"folder {str(parent)!r} is not writable")
    return target


KEPT = ("the file is there already and is kept (it may be a capture, which cannot be made again): "
        "give another -o, or --force to replace it")


def keep_recording(out: str | os.PathLike[str]) -> None:
    """Refuse, before any work, to write over a file that is there and not empty: `record`, `import`, `simulate`,
    `generate`, `merge` and `lab run` all write recordings, and a capture replaced cannot be made again. An empty
    file (a name made ready, a killed start) may be replaced; so may a device or a FIFO (/dev/null)."""
    with suppress(FileNotFoundError):
        _keep(out, os.stat(out))


def _keep(out: str | os.PathLike[str], st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode) and st.st_size:
        raise InputError(str(out), "", KEPT)


def open_recording(out: str | os.PathLike[str], *, replace: bool) -> BinaryIO:
    """`out` opened to write a recording into: unless `replace`, created if absent (O_EXCL), else taken only when
    what is there is empty, decided on the file opened rather than on a name checked before (which another writer
    could create in between)."""
    try:
        return open(out, "wb", opener=None if replace else _exclusive)  # noqa: SIM115 - the caller's to close
    except OSError as e:
        raise InputError(str(out), "", f"cannot write the recording{_through_link(out)}: {e.strerror or e}") \
            from None


def _through_link(out: str | os.PathLike[str]) -> str:
    """Where a link given as -o leads, for a failure to write there (its folder missing, say)."""
    return f" at {os.path.realpath(out)!r}, where the link leads" if os.path.islink(out) else ""


def _exclusive(path: str, flags: int) -> int:
    """An `open()` opener: a new file, or one that is there if it is empty; never one truncated. A name O_EXCL
    refuses is opened without truncating it (creating the file a dangling link leads to), then judged by what was
    opened: a file another writer made meanwhile is kept once it holds anything."""
    try:
        return os.open(path, flags | os.O_EXCL, 0o666)
    except FileExistsError:
        fd = os.open(path, flags & ~os.O_TRUNC, 0o666)
    try:
        _keep(path, os.fstat(fd))
    except InputError:
        os.close(fd)
        raise
    return fd


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links too); standard input ('-') is no file."""
    if str(b) == "-":
        return False
    try:
        return a.samefile(b)
    except OSError:  # (either does not exist yet)
        return a.absolute() == b.absolute()


@contextmanager
def atomic_output(out: str | os.PathLike[str], mode: str = "w", reads: Iterable[str | os.PathLike[str]] = (),
                  *, keep: bool = False) -> Iterator[IO[Any]]:
    """A file beside `out` that replaces it only when the block completes: an interrupted export or import
    never leaves a half-written file under the name the user asked for (nor replaces one it reads: `reads`).
    A link given as `out` is written through, as `open()` would. With `keep` (a recording without --force), the
    finished file is put in place with a link that fails where the name is taken, so a file another writer made
    meanwhile (a capture started under that name) is kept unless it is empty (see `_place`)."""
    target = check_output(out, reads)
    special = target.exists() and not target.is_file()  # /dev/null, a FIFO: written to, never replaced
    final = Path(os.path.realpath(target)) if target.is_symlink() else target
    tmp = target if special else final.with_name(f".{final.name}.{os.getpid()}.part")
    try:
        f = open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))  # noqa: SIM115
    except OSError as e:
        raise InputError(str(out), "", f"cannot be written{_through_link(out)} ({e.strerror})") from None
    try:
        with f:
            yield f
        if not special:
            _place(tmp, final, out, keep)
    except BaseException:
        if not special:
            with suppress(OSError):
                tmp.unlink()
        raise


def _place(tmp: Path, final: Path, out: str | os.PathLike[str], keep: bool) -> None:
    """Move the finished `tmp` to `final`. Kept: `os.link` fails on a name that is there, so nothing written
    meanwhile is replaced; a name that is there is then judged by what it is (an empty file is replaced), and
    where the filesystem has no links (FAT, some network mounts) by a check just before `os.replace`, which
    leaves the moment between the two open."""
    if keep:
        try:
            os.link(tmp, final)
        except FileExistsError:
            _keep(out, os.stat(final))
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise InputError(str(out), "", f"cannot be written{_through_link(out)} ({e.strerror})") from None
            keep_recording(out)
        else:
            tmp.unlink()
            return
    os.replace(tmp, final)
