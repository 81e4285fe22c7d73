"""Block scanning shared by the text importers: find the few interesting lines of a huge log at C speed.

A 1 GB log is read in blocks of whole lines. Within a block, each anchor word is located with `bytes.find`
(a fast substring search, quicker than one regular expression with many alternatives); lines holding none
are only counted, never decoded. When a parser holds a record open (a dump spread over several lines) the
scanner hands it the very next line, anchor or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

BLOCK = 8 << 20


def keyword_pattern(anchors: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The same anchors as one pattern, for a grep-style test of single lines."""
    return re.compile(b"|".join(re.escape(a) for a in anchors))


def candidate_starts(block: bytes, anchors: tuple[bytes, ...]) -> list[int]:
    """Offsets of the lines of `block` that hold an anchor, in order, each once."""
    starts: set[int] = set()
    find, rfind, add = block.find, block.rfind, starts.add
    for a in anchors:
        i = find(a)
        while i >= 0:
            line = rfind(b"\n", 0, i) + 1
            add(line)
            nxt = find(b"\n", i)
            if nxt < 0:
                break
            i = find(a, nxt)
    return sorted(starts)


class BlockScanner:
    """Calls `handle(raw_line, is_candidate, block, start)` for each line worth a look; is_candidate is None for
    a line handed over only because a record is open (`is_candidate(raw)` answers then, if needed). Line
    numbers are counted only when asked for (`line_no`), since most lines are never asked about."""

    def __init__(self, anchors: tuple[bytes, ...],
                 handle: Callable[[bytes, bool | None, bytes, int], None],
                 wants_next_line: Callable[[], bool]) -> None:
        self.anchors = anchors
        self.handle = handle
        self.wants_next_line = wants_next_line
        self.lines = 0  # lines fed so far
        self._block = b""
        self._at = 0  # line_no's bookmark: the number of the line starting at _at
        self._no = 1

    def line_no(self, start: int) -> int:
        """The number (from 1) of the line starting at `start` in the current block."""
        if start < self._at:
            self._at, self._no = 0, self.lines + 1
        self._no += self._block.count(b"\n", self._at, start)
        self._at = start
        return self._no

    def is_candidate(self, raw: bytes) -> bool:
        return any(a in raw for a in self.anchors)

    def feed(self, block: bytes) -> None:
        """`block` holds whole lines (the last may lack its newline only at the end of the input)."""
        n = len(block)
        starts = candidate_starts(block, self.anchors)
        self._block, self._at, self._no = block, 0, self.lines + 1
        k = 0
        pos = 0
        find, handle, wants_next_line = block.find, self.handle, self.wants_next_line
        while pos < n:
            if wants_next_line():
                start = pos
                candidate = None
            else:
                while k < len(starts) and starts[k] < pos:
                    k += 1
                if k == len(starts):
                    break
                start = starts[k]
                candidate = True
            end = find(b"\n", start)
            if end < 0:
                end = n
            handle(block[start:end], candidate, block, start)
            pos = end + 1
        self.lines += block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)


def previous_line(block: bytes, start: int) -> bytes | None:
    """The line before the one starting at `start`, when it lies in the same block."""
    if start <= 0:
        return None
    prev = block.rfind(b"\n", 0, start - 1) + 1
    return block[prev:start - 1]
