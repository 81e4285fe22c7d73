"""Big buffers go back to the system as soon as they are freed, so that a command's peak is what it uses.

glibc's malloc gives a request of 128 KiB or more a mapping of its own, unmapped when freed; but each time it
unmaps one it raises that threshold to the freed size (up to 32 MiB). After the first big array is freed, arrays
of a few MiB then come from the heap, where, once freed, they stay resident behind the small blocks allocated after
them. Opening a million-track recording frees dozens of such arrays (runs merged, tables grown, columns decoded):
30 MiB of `info`'s peak was memory no longer in use. A fixed threshold keeps them out of the heap.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's own defaults, kept fixed
TRIM_THRESHOLD = 128 * 1024
KEPT_MMAP_THRESHOLD = 32 << 20  # the most glibc's own dynamic threshold rises to (on 64 bits)
KEPT_TRIM_THRESHOLD = 64 << 20


def return_big_buffers() -> None:
    """Fix the thresholds (no-op where the C library has no `mallopt`, as on macOS, or cannot be opened by name
    at all, as on Windows)."""
    _set(MMAP_THRESHOLD, TRIM_THRESHOLD)


@contextmanager
def buffers_reused() -> Iterator[None]:
    """For the block, freed buffers of a few MiB stay in the heap and are reused, rather than each new one being
    mapped afresh and faulted in a page at a time. An import allocates and frees its input blocks (2 MiB each, and
    their masks) thousands of times: mapped afresh, the kernel's page faults cost it 0.25 s of CPU per million lines
    (15% of its CPU). The heap keeps at most KEPT_TRIM_THRESHOLD free; after the block, big buffers go back to the
    system again (`return_big_buffers`) and what the heap kept is released."""
    _set(KEPT_MMAP_THRESHOLD, KEPT_TRIM_THRESHOLD)
    try:
        yield
    finally:
        _set(MMAP_THRESHOLD, TRIM_THRESHOLD)


def _set(mmap_threshold: int, trim_threshold: int) -> None:
    """Fix glibc's thresholds (see `return_big_buffers`); releases the free memory at the heap's top."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    trim(0)
