"""Pausing Python's cyclic garbage collector around work that makes millions of short-lived acyclic objects
(decoded rows, parsed lines): a collection would only rescan them, and costs more than the work itself."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off for the block, and back on after it if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
