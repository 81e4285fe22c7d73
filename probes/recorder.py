"""A live source whose rows also go to a recording: `record` drives it headless, `live -o` under the UI.

Rows are appended as they are polled and a chunk is written at least every second (and fsynced at most every
second: one per chunk would stall the drain), so a capture killed with SIGKILL loses at most its last second;
`close` writes the footer with the kernel's exact counts and why the capture ended. The kernel's own PASID state
(explorer.snapshot) is read at the start and at the end. A write that fails (a full disk) stops the recording, not
the capture's close: `close` then says in one line what was kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from explorer.errors import InputError
from explorer.events import Row
from explorer.machines import snapshot
from explorer.recording import RecordingWriter
from explorer.recording.encoded import PackedRows
from explorer.snapshot import stored, take

from .capture import Capture

FLUSH_EVERY_S = 1.0


class RecordingTee:
    """Wraps a `Capture`: same `LiveSource` face, and a durable recording of everything it hands out."""

    def __init__(self, capture: Capture, path: str | os.PathLike[str], *, replace: bool = False) -> None:
        """`replace`: write over a file at `path` that is not empty (by default it is kept, and this refuses)."""
        self.capture = capture
        self.header = capture.header
        self.path = str(path)
        # The kernel's own PASID state at the start, in the header so that a killed capture keeps it.
        capture.header.extra[stored.KEY] = [take()]
        try:
            self.writer = RecordingWriter(path, capture.header, sync_every_s=FLUSH_EVERY_S, replace=replace)
        except OSError as e:
            capture.close()
            raise InputError(self.path, "", f"cannot write the recording: {e.strerror or e}") from None
        except InputError:
            capture.close()
            raise
        self._last_flush = time.monotonic()
        self.end_reason = "complete"
        self.failed: OSError | None = None  # the write that failed: nothing more is written
        self.on_failure: Callable[[], None] = lambda: None  # told once, from the thread that wrote (`live`'s app)

    def poll(self, timeout_s: float) -> list[Row]:
        return self.pump(timeout_s).rows()

    def pump(self, timeout_s: float) -> PackedRows:
        """Capture and record what arrives within `timeout_s`, without decoding it (what `record` runs)."""
        rows = self.capture.poll_packed(timeout_s)
        self._write(rows)
        return rows

    def _write(self, rows: PackedRows) -> None:
        if self.failed is not None:
            return
        try:
            self.writer.append_packed(rows)
            now = time.monotonic()
            if now - self._last_flush >= FLUSH_EVERY_S:
                self.writer.flush()
                self._last_flush = now
        except OSError as e:  # (the writer's alone: the capture's own errors stay what they are)
            self.failed = e
            self.on_failure()

    def status(self) -> str:
        return f"{self.capture.status()} · recording {self.path}"

    @property
    def events_written(self) -> int:
        return self.writer.events_written + self.writer.pending

    def close(self, end_reason: str | None = None) -> dict[str, Any]:
        """Stop the capture, write what is still in flight and the footer; returns the footer's extras. After a
        failed write the capture is closed all the same, and an InputError says what was kept."""
        if self.writer.closed:
            return {}
        extra: dict[str, Any] = {}
        try:
            self._write(self.capture.finish())
            costs = self.capture.costs()
            extra = {"lost": self.capture.lost, "kernel_counts": self.capture.kernel_counts(),
                     "bpf_costs": {h: {"runs": c.runs, "run_ns": c.run_ns} for h, c in costs.items()}
                     if self.capture.stats.on else {"problem": self.capture.stats.problem},
                     "kernel_counts_missed": self.capture.kernel_counts_missed(),
                     "unmatched_responses": self.capture.decoder.unmatched_responses, stored.KEY: [take()],
                     "clock_end": snapshot().to_dict()}
        finally:
            try:
                self._close_writer(end_reason or self.end_reason, extra)
            finally:
                self.capture.close()
        if self.failed is not None:
            raise InputError(self.path, "", f"cannot write the recording: {self.failed.strerror or self.failed}; "
                                            f"its {self.writer.chunks_written:,} complete chunks are kept, what came "
                                            "after is not")
        return extra

    def _close_writer(self, end_reason: str, extra: dict[str, Any]) -> None:
        """The footer written, unless a write failed before (what is in flight cannot be written either) or
        this one does: then the file is left as it broke."""
        if self.failed is None:
            try:
                self.writer.close(end_reason, **extra)
                return
            except OSError as e:
                self.failed = e
        self.writer.abandon()
