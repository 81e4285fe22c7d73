"""The project's own small error hierarchy: each one becomes a single clear line in the CLI."""

from __future__ import annotations

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug of ours; never 0 (ok), 1 (findings) or 2 (a clear error about the input)


class ExplorerError(Exception):
    """Base of every error the CLI turns into one line (exit status 2)."""

    exit_status = 2


class InputError(ExplorerError):
    """Input we cannot use, named by file and place (byte offset, line, key)."""

    def __init__(self, path: str, where: str, what: str) -> None:
        self.path, self.where, self.what = str(path), where, what
        place = f"{self.path}:{where}" if where else self.path
        super().__init__(f"{place}: {what}")


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
