"""Files the tool writes: checked before any work is done, and only in place once complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from .errors import InputError


def check_output(out: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before reading a big input for nothing."""
    target = Path(out)
    if target.is_dir():
        raise InputError(str(out), "", "is a directory: name the file to write")
    parent = target.parent
    if not parent.is_dir():
        raise InputError(str(out), "", f"no such folder {str(parent)!r} to write into")
    if not os.access(parent, os.W_OK):
        raise InputError(str(out), "", f"folder {str(parent)!r} is not writable")
    return target


@contextmanager
def atomic_output(out: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """A file beside `out` that replaces it only when the block completes: an interrupted export or import
    never leaves a half-written file under the name the user asked for."""
    target = check_output(out)
    special = target.exists() and not target.is_file()  # /dev/null, a FIFO: written to, never replaced
    tmp = target if special else target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        f = open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))  # noqa: SIM115
    except OSError as e:
        raise InputError(str(out), "", f"cannot be written ({e.strerror})") from None
    try:
        with f:
            yield f
        if not special:
            os.replace(tmp, target)
    except BaseException:
        if not special:
            with suppress(OSError):
                tmp.unlink()
        raise
