"""Drains a BPF ring buffer map straight from its memory mapping, a batch at a time, as a numpy view of it.

libbpf's consumer calls back once per record; at hundreds of thousands of records a second a Python callback
per record costs more than the capture itself. The kernel's ring buffer layout is simple enough to read
directly (kernel/bpf/ringbuf.c): a consumer-position page we write, a producer-position page, and the data
pages mapped twice in a row so that a span that wraps around is still contiguous. All our records have the same
size, so a batch is one strided numpy view. Needs no bcc: it works on any ring buffer map fd.
"""

from __future__ import annotations

import mmap
import select
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .record import SLOT

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30


class RingReader:
    """Consumer of one ring buffer map whose records are all `SLOT`-sized."""

    def __init__(self, map_fd: int, size: int, slot: np.dtype = SLOT) -> None:
        if size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
        self.size = size
        self.mask = size - 1
        self.slot = slot
        page = mmap.PAGESIZE
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data_map = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._cons = np.frombuffer(self._cons_map, dtype=np.uint64, count=1)
        self._prod = np.frombuffer(self._data_map, dtype=np.uint64, count=1)
        self._data = np.frombuffer(self._data_map, dtype=np.uint8, offset=page)
        self._poll = select.epoll()
        # Edge-triggered: a wait ends on the kernel's next wakeup (the probes force one every WAKEUP_EVERY records
        # a CPU), not at once whenever a record is in.
        self._poll.register(map_fd, select.EPOLLIN | select.EPOLLET)
        self.batch_bytes = size // 16  # this much waiting is drained at once, without waiting for a wakeup
        # the most records one batch holds on to while it is decoded: the rest of the ring stays free for the probes
        self.most = max(1, size // 8 // slot.itemsize)

    def pending_bytes(self) -> int:
        return int(self._prod[0]) - int(self._cons[0])

    def wait(self, timeout_s: float) -> None:
        """Sleep until the kernel wakes us (a batch is waiting) or `timeout_s` passes, unless a batch is waiting
        already. A drain costs much the same fixed work whatever it holds: the few records that came in while the
        last batch was being written wait for the next wakeup instead of making a drain of their own."""
        if self.pending_bytes() < self.batch_bytes:
            self._poll.poll(max(timeout_s, 0.0))

    @contextmanager
    def records(self) -> Iterator[np.ndarray]:
        """The committed records (at most `most`) as an array of `slot['rec']` that is the ring's own memory (a
        copy would cost a tenth of the capture), released to the kernel when the block ends: nothing may keep
        the array, or a view of it, past that. Stops at the first record still being written."""
        cons = int(self._cons[0])
        n = min((int(self._prod[0]) - cons) // self.slot.itemsize, self.most)
        if n <= 0:
            yield np.empty(0, self.slot["rec"])
            return
        start = cons & self.mask
        view = self._data[start:start + n * self.slot.itemsize].view(self.slot)
        lens = view["hdr"]["len"]
        busy = np.flatnonzero(lens & BUSY_BIT)
        if busy.size:
            n = int(busy[0])
            view = view[:n]
            lens = lens[:n]
        expected = self.slot["rec"].itemsize
        if n and np.any((lens & ~np.uint32(DISCARD_BIT)) != expected):
            bad = int(np.flatnonzero((lens & ~np.uint32(DISCARD_BIT)) != expected)[0])
            raise RuntimeError(f"ring buffer record {bad} has length {int(lens[bad])}, expected {expected}: "
                               f"a probe wrote a record of another size")
        kept = (lens & DISCARD_BIT) == 0
        try:
            yield view["rec"] if bool(kept.all()) else view["rec"][kept]
        finally:
            self._cons[0] = cons + n * self.slot.itemsize  # release: the kernel may now reuse the space

    def close(self) -> None:
        self._poll.close()
        del self._cons, self._prod, self._data
        self._cons_map.close()
        self._data_map.close()
