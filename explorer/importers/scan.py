"""Block scanning shared by the text importers: find the few interesting lines of a huge log at C speed.

A 1 GB log is read in blocks of whole lines. Within a block, a compiled keyword pattern jumps straight to the
next candidate line; lines between candidates are only counted, never decoded. When a parser holds a record
open (a dump spread over several lines) the scanner hands it the very next line, keyword or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

BLOCK = 8 << 20


class BlockScanner:
    """Calls `handle(raw_line, line_no, is_candidate, block, start)` for each line worth a look."""

    def __init__(self, keywords: re.Pattern[bytes],
                 handle: Callable[[bytes, int, bool, bytes, int], None],
                 wants_next_line: Callable[[], bool]) -> None:
        self.keywords = keywords
        self.handle = handle
        self.wants_next_line = wants_next_line
        self.lines = 0  # lines fed so far

    def feed(self, block: bytes) -> None:
        """`block` holds whole lines (the last may lack its newline only at the end of the input)."""
        n = len(block)
        pos = 0
        line_no = self.lines + 1  # number of the line starting at pos
        search = self.keywords.search
        while pos < n:
            if self.wants_next_line():
                start, candidate = pos, None
            else:
                m = search(block, pos)
                if m is None:
                    break
                start = block.rfind(b"\n", pos, m.start()) + 1 or pos
                candidate = True
            end = block.find(b"\n", start)
            if end < 0:
                end = n
            if start > pos:
                line_no += block.count(b"\n", pos, start)
            raw = block[start:end]
            if candidate is None:
                candidate = search(raw) is not None
            self.handle(raw, line_no, candidate, block, start)
            pos = end + 1
            line_no += 1
        self.lines += block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)


def previous_line(block: bytes, start: int) -> bytes | None:
    """The line before the one starting at `start`, when it lies in the same block."""
    if start <= 0:
        return None
    prev = block.rfind(b"\n", 0, start - 1) + 1
    return block[prev:start - 1]
