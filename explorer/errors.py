"""The project's own small error hierarchy: each one becomes a single clear line in the CLI."""

from __future__ import annotations

import re

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug of ours; never 0 (ok), 1 (findings) or 2 (a clear error about the input)


class ExplorerError(Exception):
    """Base of every error the CLI turns into one line (exit status 2)."""

    exit_status = 2


class InputError(ExplorerError):
    """Input we cannot use, named by file and place (`where`, in words: "line 12", "line 12, column 5",
    "byte 4096", or "" for the whole file)."""

    def __init__(self, path: str, where: str, what: str) -> None:
        self.path, self.where, self.what = str(path), where, what
        super().__init__(f"{_place(self.path, where)}: {what}")


_LINE = re.compile(r"line (\d+)(?:, column (\d+))?")


def _place(path: str, where: str) -> str:
    """`file:12` or `file:12:5` for a line (and column), as compilers write it and editors and terminals jump to
    it; another place as it is said (`file:byte 4096`), none as the file alone."""
    line = _LINE.fullmatch(where)
    if line is not None:
        where = ":".join(n for n in line.groups() if n is not None)
    return f"{path}:{where}" if where else path


_AT_BYTE = re.compile(r"(byte \d+): (.*)", re.S)  # how a recording's damage names its place (recording.Damage)


def placed(path: str, said: str) -> str:
    """A recording's damage as the reader words it (`byte 8: ...`), with its file, the place written as an
    InputError's (`file:byte 8: ...`), so that a warning and an error read alike."""
    at = _AT_BYTE.fullmatch(said)
    return str(InputError(path, *at.groups())) if at else f"{path}: {said}"


class RecordingError(InputError):
    """A recording that is corrupt, foreign or cut short beyond use."""


class ScenarioError(InputError):
    """A teaching scenario whose YAML is malformed or whose script is impossible."""


class LayoutError(InputError):
    """A screen layout file with a bad key or value."""


class CaptureError(ExplorerError):
    """Live capture cannot start or continue (privileges, tracefs, bcc, headers)."""


class ExplorerCrashed(Exception):
    """The explorer UI stopped on an error of ours (Textual has shown its traceback): the CLI exits
    INTERNAL_ERROR, never 0, whatever the UI's own exit said."""
