"""Progress for long work: a self-rewriting line on a terminal, silence when output is not one."""

from __future__ import annotations

import sys
import time

from ..text import line, raw


class Progress:
    """Call with (done, total); redraws at most ten times a second and only on a terminal."""

    def __init__(self, label: str, unit: str = "events") -> None:
        self.label, self.unit = line(label), unit
        self.stream = raw(sys.stderr)  # its own \r and erase-line, which the CLI's stderr would escape
        self.enabled = self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        rate = done / max(now - self.start, 1e-9)
        if total:
            text = f"{self.label}: {100 * done / total:5.1f}%  {done:,}/{total:,} {self.unit}  {rate:,.0f}/s"
        else:
            text = f"{self.label}: {done:,} {self.unit}  {rate:,.0f}/s"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._shown = True

    def done(self, message: str | None = None) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
        if message and self.enabled:
            self.stream.write(message + "\n")
        self.stream.flush()
