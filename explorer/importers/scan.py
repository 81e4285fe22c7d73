"""Block scanning shared by the text importers: find the few interesting lines of a huge log at C speed.

A 1 GB log is read in blocks of whole lines. Within a block, each anchor word (or a rarer piece of it, then checked
whole) is located with `bytes.find` (a fast substring search, quicker than one regular expression with many
alternatives); lines holding none are only counted, never decoded. When a parser holds a record open (a dump spread
over several lines) the scanner hands it the very next line, anchor or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

BLOCK = 8 << 20


def keyword_pattern(anchors: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The same anchors as one pattern, for a grep-style test of single lines."""
    return re.compile(b"|".join(re.escape(a) for a in anchors))


def candidate_ends(block: bytes, anchors: tuple[bytes, ...], start: int, end: int,
                   needles: dict[bytes, bytes]) -> set[int]:
    """Where the lines of `block[start:end]` that hold an anchor end (at their line break, or `end`). An anchor with
    a needle is looked for by that piece of it, and the whole word checked where the piece is found; anchors that
    share a needle ("smmu" and "iommu" hold "mmu") are found in one pass."""
    ends: set[int] = set()
    find, add, whole = block.find, ends.add, block.startswith
    for needle, words in _by_needle(anchors, needles).items():
        exact = words == [(needle, 0)]
        i = find(needle, start, end)
        while i >= 0:
            if not exact:
                for a, back in words:  # where the needle lies in the anchor
                    if i - back >= start and whole(a, i - back, end):
                        break
                else:
                    i = find(needle, i + 1, end)
                    continue
            stop = find(b"\n", i, end)
            if stop < 0:
                add(end)
                break
            add(stop)
            i = find(needle, stop, end)
    return ends


def _by_needle(anchors: tuple[bytes, ...], needles: dict[bytes, bytes]) -> dict[bytes, list[tuple[bytes, int]]]:
    """Each needle to look for, with the anchors it finds and where it lies in each."""
    out: dict[bytes, list[tuple[bytes, int]]] = {}
    for a in anchors:
        needle = needles.get(a, a)
        out.setdefault(needle, []).append((a, a.find(needle)))
    return out


class BlockScanner:
    """Calls `handle(block, start, end, is_candidate)` for each line worth a look, `block[start:end]` (without
    its line break); is_candidate says whether it holds an anchor, since a line is also handed over when the
    previous call returned true (a record open across lines wants the very next line, whatever it holds). Line
    numbers are counted only when asked for (`line_no`), since most lines are never asked about."""

    def __init__(self, anchors: tuple[bytes, ...], handle: Callable[[bytes, int, int, bool], bool | None],
                 needles: dict[bytes, bytes] | None = None) -> None:
        self.anchors = anchors
        self.handle = handle
        self.needles = needles or {}
        self.lines = 0  # lines fed so far
        self._follow = False  # the last line handed over asked for the next one
        self._block = b""
        self._start = 0  # where the current block's lines begin in _block
        self._at = 0  # line_no's bookmark: the number of the line starting at _at
        self._no = 1

    def line_no(self, start: int) -> int:
        """The number (from 1) of the line starting at `start` in the current block."""
        if start < self._at:
            self._at, self._no = self._start, self.lines + 1
        self._no += self._block.count(b"\n", self._at, start)
        self._at = start
        return self._no

    def previous_line(self, start: int) -> bytes | None:
        """The line before the one starting at `start`, when it lies in the same block."""
        if start <= self._start:
            return None
        return self._block[self._block.rfind(b"\n", self._start, start - 1) + 1 or self._start:start - 1]

    def feed(self, block: bytes, start: int, end: int) -> None:
        """`block[start:end]` holds whole lines (the last may lack its newline only at the end of the input)."""
        ends = candidate_ends(block, self.anchors, start, end, self.needles)
        self._block, self._start, self._at, self._no = block, start, start, self.lines + 1
        rfind, handle = block.rfind, self.handle
        pos = self._follow_from(block, start, end, ends) if self._follow else start
        for stop in sorted(ends):
            if stop >= pos:
                line, pos = rfind(b"\n", pos, stop) + 1 or pos, stop + 1
                if handle(block, line, stop, True):
                    pos = self._follow_from(block, pos, end, ends)
        if end > start:  # numpy counts bytes several times faster than bytes.count
            self.lines += int(np.count_nonzero(np.frombuffer(block, np.uint8, end - start, start) == 10)) + \
                (block[end - 1] != 10)

    def _follow_from(self, block: bytes, pos: int, end: int, ends: set[int]) -> int:
        """Hand over the lines from `pos` on for as long as the handler asks for the next; returns where it stopped."""
        self._follow = True
        while pos < end:
            stop = block.find(b"\n", pos, end)
            if stop < 0:
                stop = end
            line, pos = pos, stop + 1
            if not self.handle(block, line, stop, stop in ends):
                self._follow = False
                break
        return pos
