"""Block scanning shared by the text importers: find the few interesting lines of a huge log at C speed.

A 1 GB log is read in blocks of whole lines. Within a block, numpy finds every line break, the lines become one
Arrow binary array over the block's own bytes (no copy), and one RE2 pass (Arrow's match_substring_regex: a DFA
over all the anchors at once, several times quicker than a pass of bytes.find per anchor or Python's regex
alternation) marks the lines that hold an anchor; lines holding none are only counted, never decoded. When a
parser holds a record open (a dump spread over several lines) the scanner hands it the very next line, anchor or
not. Finding a block's lines (`find`) holds no Python state and runs in numpy and Arrow with the GIL released, so
the import does it on a worker thread for the next block while the parsers read this one (pipeline.read_ahead).
pyarrow loads with the first scanner, not with the package: every command imports the importers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 2 << 20  # larger blocks are no quicker, and each costs its size again in a transient mask
Runs = list[tuple[bytes, int, int]]  # runs of whole lines, `block[start:end]`, as the import reads them


def keyword_pattern(anchors: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The same anchors as one pattern, for a grep-style test of single lines."""
    return re.compile(b"|".join(re.escape(a) for a in anchors))


def _re2_literal(anchor: bytes) -> str:
    """An anchor as an RE2 literal: letters and digits as they are, every other byte escaped as \\xHH."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 else f"\\x{b:02x}" for b in anchor)


def _line_spans(block: bytes, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each line of `block[start:end]` begins, and where it ends (at its line break, or `end`); as int64."""
    breaks = np.flatnonzero(np.frombuffer(block, np.uint8, end - start, start) == 10)
    breaks += start
    partial = block[end - 1] != 10  # the input's last line, without its line break
    n = len(breaks) + partial
    starts = np.empty(n, np.int64)
    starts[0] = start
    starts[1:] = breaks[:n - 1] + 1
    return starts, np.append(breaks, end) if partial else breaks


def candidate_lines(block: bytes, start: int, end: int, matcher: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lines of `block[start:end]` (which must hold at least one byte): where each begins and ends, and the
    indices of those that `matcher` (`anchor_matcher`) finds an anchor in."""
    starts, ends = _line_spans(block, start, end)
    offsets = np.empty(len(starts) + 1, np.int64)  # each line with its break, for Arrow
    offsets[:-1] = starts
    offsets[-1] = end
    return starts, ends, matcher(block, offsets)


def anchor_matcher(anchors: tuple[bytes, ...]) -> Callable[[bytes, np.ndarray], np.ndarray]:
    """A function of (block, line offsets) giving the indices of the lines that hold one of `anchors`."""
    import pyarrow as pa

    try:  # where pyarrow defines them: importing pyarrow.compute also builds a Python wrapper of each of its
        # hundreds of functions, 20 ms of every import. That module is private: a pyarrow that moves them is read
        # through pyarrow.compute, which exports both.
        from pyarrow._compute import MatchSubstringOptions, call_function
    except ImportError:
        from pyarrow.compute import MatchSubstringOptions, call_function

    options = MatchSubstringOptions("|".join(map(_re2_literal, anchors)))
    binary = pa.large_binary()

    def match(block: bytes, offsets: np.ndarray) -> np.ndarray:
        lines = pa.Array.from_buffers(binary, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(block)])
        return call_function("indices_nonzero", [call_function("match_substring_regex", [lines], options)]).to_numpy()

    return match


@dataclass(slots=True)
class FoundLines:
    """A block's lines: where each begins and ends (without its line break), and the indices of those holding an
    anchor."""

    block: bytes
    starts: np.ndarray
    ends: np.ndarray
    found: np.ndarray


class BlockScanner:
    """Calls `handle(block, start, end, is_candidate)` for each line worth a look, `block[start:end]` (without
    its line break); is_candidate says whether it holds an anchor, since a line is also handed over when the
    previous call returned true (a record open across lines wants the very next line, whatever it holds)."""

    def __init__(self, anchors: tuple[bytes, ...], handle: Callable[[bytes, int, int, bool], bool | None]) -> None:
        self.anchors = anchors
        self.handle = handle
        self.match = anchor_matcher(anchors)
        self.lines = 0  # lines fed so far, before the current block's
        self._follow = False  # the last line handed over asked for the next one
        self._block = b""
        self._starts = np.empty(0, np.int64)  # the current block's lines
        self._ends = np.empty(0, np.int64)
        self._marked = np.empty(0, bool)  # whether each holds an anchor

    def line_no(self, start: int) -> int:
        """The number (from 1) of the line starting at `start` in the current block."""
        return self.lines + int(np.searchsorted(self._starts, start)) + 1

    def previous_line(self, start: int) -> bytes | None:
        """The line before the one starting at `start`, when it lies in the same block."""
        i = int(np.searchsorted(self._starts, start))
        return self._block[self._starts[i - 1]:self._ends[i - 1]] if i else None

    def find(self, block: bytes, start: int, end: int) -> FoundLines | None:
        """The lines of `block[start:end]` (whole lines; the last may lack its newline only at the end of the input)
        and which hold an anchor; None for no bytes. Touches no state: another thread may run it."""
        if end <= start:
            return None
        return FoundLines(block, *candidate_lines(block, start, end, self.match))

    def take(self, lines: FoundLines) -> None:
        """Hand over a block's lines that hold an anchor, and those an open record asks for."""
        block, starts, ends, found = lines.block, lines.starts, lines.ends, lines.found
        marked = np.zeros(len(starts), bool)
        marked[found] = True
        self._block, self._starts, self._ends, self._marked = block, starts, ends, marked
        handle = self.handle
        pos = self._follow_from(0) if self._follow else 0  # the first line not yet handed over
        for i, line, stop in zip(found.tolist(), starts[found].tolist(), ends[found].tolist(), strict=True):
            if i >= pos:
                pos = i + 1
                if handle(block, line, stop, True):
                    pos = self._follow_from(pos)
        self.lines += len(starts)

    def _follow_from(self, i: int) -> int:
        """Hand over the lines from the `i`th on for as long as the handler asks for the next; returns the index of
        the first line not handed over."""
        self._follow = True
        block, starts, ends, marked, handle = self._block, self._starts, self._ends, self._marked, self.handle
        while i < len(starts):
            i += 1
            if not handle(block, int(starts[i - 1]), int(ends[i - 1]), bool(marked[i - 1])):
                self._follow = False
                break
        return i
