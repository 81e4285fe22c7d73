"""The range panel: what lies between the A and B markers (else in the visible window), counted as a timeline
tool measures: events per kind, faults per device and PASID, and each device's page-request latency as a
histogram with p50, p99 and max (explorer/range_stats.py counts; this draws).

A big recording's first range is counted in a worker thread (it makes the tables every later count reads, about
a second at 10M events), so that no key waits for that: the panel says it is counting and shows the result when it
comes, unless the range moved again. Once they are made, a range is counted at once, in milliseconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.worker import get_current_worker

from ..range_stats import LATENCY_EDGES, Columns, DeviceLatency, RangeStats, counted_at_once, range_stats
from ..text import line
from ..units import fmt_ns
from .palette import ink
from .panel import Panel, PanelText, columns

if TYPE_CHECKING:
    from ..index import RecordingIndex
    from .session import Session

SYNC_EVENTS = 200_000  # a recording up to this size is counted at once, a bigger one in a worker
FAULT_PAIRS_SHOWN = 12
BAR_CELLS = 20


class RangePanel(Panel):
    NAME = TITLE = "range"
    DOC = ("what the A–B range (else the visible window) holds: events per kind, faults per device and PASID, "
           "page-request latency per device")

    def depends_on(self, s: Session) -> tuple[object, ...]:
        return (*s.measured_range(), s.index.n, s.index.model_done)

    def fill(self, s: Session) -> None:
        t0, t1, between_marks = s.measured_range()
        index = s.index
        cols = Columns.of(index)
        if index.n <= SYNC_EVENTS or counted_at_once(index, cols):
            self.show_stats(index, range_stats(index, t0, t1, cols), between_marks)
            return
        self.border_title = f"{self.TITLE} (counting…)"
        self._count(self.shown, index, cols, t0, t1, between_marks)

    @work(thread=True, exclusive=True, group="range")
    def _count(self, asked: tuple[object, ...] | None, index: RecordingIndex, cols: Columns, t0: int, t1: int,
               between_marks: bool) -> None:
        stats = range_stats(index, t0, t1, cols)
        if not get_current_worker().is_cancelled and self.app.is_running:
            self.app.call_from_thread(self._counted, asked, index, stats, between_marks)

    def _counted(self, asked: tuple[object, ...] | None, index: RecordingIndex, stats: RangeStats,
                 between_marks: bool) -> None:
        if asked == self.shown:  # else the range moved meanwhile, and its own count is on its way
            self.show_stats(index, stats, between_marks)

    def show_stats(self, index: RecordingIndex, stats: RangeStats, between_marks: bool) -> None:
        if self.border_title != self.TITLE:  # (setting it repaints the whole panel)
            self.border_title = self.TITLE
        self.set_body(render_range(index, stats, between_marks, self.dark))


def render_range(index: RecordingIndex, r: RangeStats, between_marks: bool, dark: bool) -> Text:
    """The panel's text for one count."""
    head = ink("cyan", dark)
    text = PanelText()
    span = f"+{fmt_ns(r.t0 - index.start_ns)} … +{fmt_ns(r.t1 - 1 - index.start_ns)}"
    if between_marks:
        text.append(f"A–B {span} (Δ {fmt_ns(r.t1 - 1 - r.t0)})\n", style="bold")
    else:
        text.append(f"visible window {span}\n", style="bold")
        text.append("A and B set markers at the cursor to count between them\n", style="dim")
    text.append(f"{r.events:,} event(s)\n", style="bold")
    if r.kinds:
        text.append_text(columns([(f"{n:,}", kind) for kind, n in r.kinds], indent="  "))
    text.append("\nfaults per device · PASID\n", style=f"bold {head}")
    if not r.faults:
        text.append("  none\n", style="dim")
    for key, n in r.faults[:FAULT_PAIRS_SHOWN]:
        pasid = "" if key.pasid is None else f" · PASID {key.pasid}"
        text.append(f"  {n:>7,}  {line(key.device or 'allocator')}{pasid}\n")
    if len(r.faults) > FAULT_PAIRS_SHOWN:
        rest = sum(n for _, n in r.faults[FAULT_PAIRS_SHOWN:])
        text.append(f"  … {rest:,} more in {len(r.faults) - FAULT_PAIRS_SHOWN:,} more pairs\n", style="dim")
    text.append("\npage-request latency, first request → response\n", style=f"bold {head}")
    text.append("(groups whose first request lies in the range)\n", style="dim")
    if r.latency is None:
        text.append("  counted once the model has replayed the recording\n", style="dim")
    elif not r.latency:
        text.append("  no page-request groups\n", style="dim")
    for d in r.latency or []:
        text.append_text(_device_latency(d))
    text.rstrip()
    return text


def _device_latency(d: DeviceLatency) -> Text:
    text = PanelText()
    text.append(f"{line(d.device)}  ", style="bold")
    if d.answered:
        text.append(f"{d.answered:,} answered · p50 {fmt_ns(d.p50_ns)} · p99 {fmt_ns(d.p99_ns)} · "
                    f"max {fmt_ns(d.max_ns)}\n")
        used = [i for i, n in enumerate(d.buckets) if n]
        top = max(d.buckets)
        for i in range(used[0], used[-1] + 1):
            n = d.buckets[i]
            bar = "█" * (-(-n * BAR_CELLS // top)) if n else ""
            text.append(f"  {_bucket_label(i):>11} {bar:<{BAR_CELLS}} {n:,}\n")
    else:
        text.append("no group answered by a response\n")
    others = [f"{d.drained:,} drained at a detach (answered by the kernel, no response seen)" if d.drained else "",
              f"{d.unanswered:,} unanswered" if d.unanswered else ""]
    if any(others):
        text.append("  " + " · ".join(x for x in others if x) + "\n", style="dim")
    return text


def _bucket_label(i: int) -> str:
    """Bucket `i` of DeviceLatency.buckets, as a range of times."""
    if i == 0:
        return f"< {_short(LATENCY_EDGES[0])}"
    if i == len(LATENCY_EDGES):
        return f"≥ {_short(LATENCY_EDGES[-1])}"
    return f"{_short(LATENCY_EDGES[i - 1])}–{_short(LATENCY_EDGES[i])}"


def _short(ns: int) -> str:
    """An edge of the 1-2-5 series in its own unit: 500ns, 2µs, 50ms, 1s."""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("µs", 1_000)):
        if ns >= scale:
            return f"{ns // scale}{unit}"
    return f"{ns}ns"
