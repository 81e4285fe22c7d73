"""Big buffers go back to the system as soon as they are freed, so that a command's peak is what it uses.

glibc's malloc gives a request of 128 KiB or more a mapping of its own, unmapped when freed; but each time it
unmaps one it raises that threshold to the freed size (up to 32 MiB). After the first big array is freed, arrays
of a few MiB then come from the heap, where, once freed, they stay resident behind the small blocks allocated after
them. Opening a million-track recording frees dozens of such arrays (runs merged, tables grown, columns decoded):
30 MiB of `info`'s peak was memory no longer in use. A fixed threshold keeps them out of the heap.
"""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own default, kept fixed


def return_big_buffers() -> None:
    """Fix the threshold (no-op where the C library has no `mallopt`, as on macOS, or cannot be opened by name
    at all, as on Windows)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
