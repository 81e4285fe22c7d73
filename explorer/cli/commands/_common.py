"""Helpers the subcommands share: numbers as options take them, --force, opening an input with progress, and JSON
output."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ExplorerError, placed
from ...text import write_json
from ..progress import Progress

if TYPE_CHECKING:  # (`import` and `generate` share add_force and count, and never open an index)
    from ...index import RecordingIndex


def count(least: int) -> Callable[[str], int]:
    """An option's whole number of at least `least` (1,000,000 and 1_000_000 read as they are meant): a count or
    a period that is below it would be taken silently and mean nothing."""
    def read(text: str) -> int:
        digits = text.replace("_", "").replace(",", "")
        if not digits.isdigit() or int(digits) < least:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {least}, got {text!r}")
        return int(digits)
    return read


def add_force(p: argparse.ArgumentParser) -> None:
    """--force, for every command that writes a recording (outputs.open_recording, keep_recording)."""
    p.add_argument("--force", action="store_true",
                   help="replace the output file if it is there already (by default a file that is not empty is "
                        "kept: it may be a capture, which cannot be made again)")


def milliseconds(text: str) -> float:
    """An option's time in milliseconds, above zero (a negative age would report every answer as late) and not
    below the clocks' 1 ns (it would be taken as 0 ns)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    if value < 1e-6:
        raise argparse.ArgumentTypeError(f"expected at least 0.000001 (1 ns, the clocks' unit), got {text!r}")
    if value * 1e6 >= 2 ** 63:  # (beyond the clocks' 64-bit nanoseconds: 292 years)
        raise argparse.ArgumentTypeError(f"expected at most 9.2e12 (292 years), got {text!r}")
    return value


def need_terminal(command: str) -> None:
    """The explorer draws a screen (on standard error, as Textual does) and reads keys: without a terminal on
    every end it would write its escape sequences into a file and wait for keys that never come."""
    if not (sys.stdin.isatty() and sys.stdout.isatty() and sys.stderr.isatty()):
        raise ExplorerError(f"{command} shows its screen on a terminal, and standard input, output or error is not "
                            "one: run it in a terminal, or read a recording with check, info or export")


def open_with_progress(path: str, stale_ms: float | None = None, *, model: bool = True,
                       first: int | None = None, history: bool | None = True) -> RecordingIndex:
    """`model` False: the explorer runs the model itself, behind its first screen (and with `first`, indexes
    all but the first events there too). `history`: see `loading.open_index` (a report that never seeks the
    model keeps no checkpoints)."""
    from ...loading import open_index

    progress = Progress(f"indexing {path}")
    stale_ns = None if stale_ms is None else int(stale_ms * 1e6)
    idx = open_index(path, progress=progress, stale_ns=stale_ns, model=model, first=first, history=history)
    progress.done()
    return idx


def warn_damage(path: str, damage: list[str]) -> None:
    """What the input lacks, one line each on stderr, so that a pipe of the output stays clean; its place is
    written as an error's is (`file:byte 8: ...`)."""
    for d in damage:
        print(f"pasid-explorer: {placed(path, d)}", file=sys.stderr)


def print_json(data: Any) -> None:
    write_json(data, sys.stdout)
    sys.stdout.write("\n")
