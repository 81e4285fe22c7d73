"""The visible time window: zoom, pan and an axis whose units follow the zoom. Pure arithmetic, no Textual."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_STEPS = (1, 2, 5)
MIN_SPAN_NS = 100  # zooming further shows nothing new: kernel timestamps are not finer than this in practice
# Times on screen stay int64 whatever the recording spans (0 to 2^63-1 is valid): the window and its cell edges
# are held inside these bounds (the top one a float64 can hold exactly)
T_MIN, T_MAX = -(1 << 63), (1 << 63) - 1024


def nice_step(span_ns: float, max_ticks: int) -> int:
    """The smallest 1/2/5 x 10^k step that puts at most `max_ticks` ticks across `span_ns`."""
    raw = max(span_ns / max(max_ticks, 1), 1.0)
    exp = 10 ** int(np.floor(np.log10(raw)))
    for s in (*_STEPS, 10):
        if s * exp >= raw:
            return int(s * exp)
    return int(10 * exp)


def fmt_offset(ns: int, step_ns: int = 1) -> str:
    """An offset from the recording's start, in the largest unit it reaches, with as many decimals as the axis
    step needs to tell ticks apart: 1.2s, 499.6ms, 250µs."""
    a = abs(ns)
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
        if a >= scale or scale == 1:
            digits = min(6, max(0, int(np.ceil(np.log10(scale / max(step_ns, 1))))))
            return f"{ns / scale:.{digits}f}{unit}"
    raise AssertionError("unreachable: the ns unit always matches")


@dataclass(slots=True)
class Window:
    """The span of time on screen, [t0, t1), inside the recording's [lo, hi]."""

    t0: int
    t1: int
    lo: int
    hi: int

    @classmethod
    def whole(cls, lo: int, hi: int) -> Window:
        pad = max((hi - lo) // 50, MIN_SPAN_NS)
        return cls(lo, min(hi + pad, T_MAX), lo, hi)

    @property
    def span(self) -> int:
        return self.t1 - self.t0

    def edges(self, cells: int) -> np.ndarray:
        """Cell boundaries: cell c covers [edges[c], edges[c+1])."""
        return np.clip(np.linspace(self.t0, self.t1, cells + 1), T_MIN, T_MAX).astype(np.int64)

    def cell_of(self, t: int, cells: int) -> int | None:
        if not self.t0 <= t < self.t1 or cells <= 0:
            return None
        return min(int((t - self.t0) * cells // max(self.span, 1)), cells - 1)

    def time_of(self, cell: int, cells: int) -> int:
        """The start time of `cell`."""
        return self.t0 + self.span * cell // max(cells, 1)

    def zoom(self, factor: float, around: int) -> None:
        """Scale the span by `factor` (<1 zooms in) keeping `around` at the same place on screen."""
        span = max(int(self.span * factor), MIN_SPAN_NS)
        full = (self.hi - self.lo) * 2 + MIN_SPAN_NS
        span = min(span, full)
        frac = (around - self.t0) / max(self.span, 1)
        t0 = around - int(span * frac)
        self.t0, self.t1 = t0, t0 + span
        self._clamp()

    def pan(self, fraction: float) -> None:
        """Move by a fraction of the span (negative: earlier)."""
        shift = int(self.span * fraction) or (1 if fraction > 0 else -1)
        self.t0 += shift
        self.t1 += shift
        self._clamp()

    def show(self, t: int, margin: float = 0.1) -> None:
        """Pan just enough that `t` is on screen, `margin` of the span from the edge."""
        m = int(self.span * margin)
        if t < self.t0 + m:
            shift = max(t - m, min(t, self.lo)) - self.t0  # never open empty time before the start to make room
            self.t0 += shift
            self.t1 += shift
        elif t >= self.t1 - m:
            self.pan((t - self.t1 + m + 1) / max(self.span, 1))

    def extend(self, hi: int) -> None:
        """The recording grew (live): keep the window, allow panning to the new end."""
        self.hi = max(self.hi, hi)

    def _clamp(self) -> None:
        span = self.span
        slack = span // 2
        if self.t0 < self.lo - slack:
            self.t0, self.t1 = self.lo - slack, self.lo - slack + span
        if self.t1 > self.hi + slack + span // 2:
            self.t1 = self.hi + slack + span // 2
            self.t0 = self.t1 - span
        self.t0, self.t1 = max(self.t0, T_MIN), min(self.t1, T_MAX)
        if self.t1 - self.t0 < MIN_SPAN_NS:
            self.t0 = self.t1 - MIN_SPAN_NS

    def ticks(self, cells: int) -> list[tuple[int, str]]:
        """(cell, label) pairs for the axis, labels relative to the recording's start: about one per 12 cells (8
        on a narrow axis), tighter where that would leave fewer than two."""
        for gap in (12 if cells >= 60 else 8, 6):
            out = self._ticks(cells, nice_step(self.span, max(cells // gap, 1)))
            if len(out) >= 2:
                break
        return out

    def _ticks(self, cells: int, step: int) -> list[tuple[int, str]]:
        out = []
        t = ((self.t0 - self.lo) // step + 1) * step + self.lo
        while t < self.t1:
            c = self.cell_of(t, cells)
            if c is not None:
                out.append((c, fmt_offset(t - self.lo, step)))
            t += step
        return out
