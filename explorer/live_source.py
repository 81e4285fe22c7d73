"""The seam between a live event source (the bcc capture) and its consumers (the explorer UI, `record`).

A source hands over rows (see `Event.to_row`) in time-ordered batches; consumers feed them to a
`RecordingIndex` with `add_rows` and, when recording, to a `RecordingWriter`.
"""

from __future__ import annotations

from typing import Protocol

from .events import Row
from .recording import Header


class LiveSource(Protocol):
    """Anything that yields live events: `poll` waits up to `timeout_s` and returns the rows that arrived."""

    header: Header

    def poll(self, timeout_s: float) -> list[Row]: ...

    def status(self) -> str:
        """One line for a status bar: what is attached, events so far, losses."""
        ...

    def close(self) -> None: ...
