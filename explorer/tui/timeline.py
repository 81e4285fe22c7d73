"""The timeline widget: an axis, one line per row, a status line. Rendered line by line from the index.

Each frame asks `CellModel` for the visible rows only, so its cost follows the screen, not the recording; strips
are cached until the view changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from .cells import CellModel, RowCells
from .glyphs import MARKS, density_glyph, mark_of_priority
from .spans import GROUP_STALE
from .timescale import Window, fmt_offset
from .tracks import Row

HEADER_LINES = 2  # the axis labels and the tick line
_ANOMALY = MARKS["anomaly"]
ANOMALY_COLOURS = {1: ("#ffffff", "#707070"), 2: ("#000000", "#d89a00"), 3: ("#ffffff", "#c01010")}  # by rank
# Bar tints per span style (see spans.SPAN_NAMES), for dark and for light themes.
BAR_TINTS = {
    True: ("#1f3d26", "#1c2f4d", "#173d40", "#3a2150", "#333333", "#4a3a10", "#6a1c1c"),
    False: ("#d4efd4", "#d6e2fa", "#cdecee", "#ead9f7", "#e2e2e2", "#f6e4b0", "#f6c8c8"),
}


@dataclass(slots=True)
class View:
    """What the timeline shows: pushed down by the app whenever the cursor, window, rows or filter change."""

    window: Window
    cursor: int
    rows: list[Row]
    expanded: set[tuple[object, ...]]
    selected: int
    top: int = 0
    status: str = ""


class Timeline(Widget, can_focus=True):
    """Per-device / per-PASID tracks against time; clicks and wheel turns go up to the app as messages."""

    DEFAULT_CSS = """
    Timeline { height: 1fr; min-height: 6; }
    """

    class Clicked(Message):
        def __init__(self, row: int | None, time_ns: int) -> None:
            super().__init__()
            self.row, self.time_ns = row, time_ns

    class Zoom(Message):
        def __init__(self, factor: float, around_ns: int) -> None:
            super().__init__()
            self.factor, self.around_ns = factor, around_ns

    def __init__(self, cells: CellModel, label_width: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.cells = cells
        self.label_width = label_width
        self.view: View | None = None
        self.dark = True
        self._cache: dict[int, Strip] = {}
        self._styles: dict[tuple[object, ...], Style] = {}

    # -- geometry ---------------------------------------------------------------------------------------------
    @property
    def track_lines(self) -> int:
        return max(self.size.height - HEADER_LINES - 1, 1)

    @property
    def cell_count(self) -> int:
        return max(self.size.width - self.label_width - 1, 1)

    def show(self, view: View) -> None:
        view.top = min(max(view.top, view.selected - self.track_lines + 1), max(view.selected, 0))
        view.top = max(min(view.top, max(len(view.rows) - self.track_lines, 0)), 0)
        self.view = view
        self._cache.clear()
        self.refresh()

    def invalidate(self) -> None:
        self._cache.clear()
        self.refresh()

    def on_resize(self) -> None:
        if self.view is not None:
            self.show(self.view)

    # -- input ------------------------------------------------------------------------------------------------
    def _time_at(self, x: int) -> int | None:
        if self.view is None or x <= self.label_width:
            return None
        return self.view.window.time_of(x - self.label_width - 1, self.cell_count)

    def on_click(self, event: events.Click) -> None:
        at = event.get_content_offset(self)  # inside the border, where lines are drawn
        if self.view is None or at is None:
            return
        line = at.y - HEADER_LINES
        row = self.view.top + line if 0 <= line < self.track_lines else None
        if row is not None and row >= len(self.view.rows):
            row = None
        t = self._time_at(at.x)
        self.post_message(self.Clicked(row, self.view.cursor if t is None else t))

    def _wheel(self, event: events.MouseEvent, factor: float) -> None:
        at = event.get_content_offset(self)
        if self.view is not None:
            event.stop()
            t = None if at is None else self._time_at(at.x)
            self.post_message(self.Zoom(factor, self.view.cursor if t is None else t))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._wheel(event, 0.8)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._wheel(event, 1.25)

    # -- drawing ----------------------------------------------------------------------------------------------
    def _style(self, fg: str | None = None, bg: str | None = None, bold: bool = False, reverse: bool = False,
               dim: bool = False) -> Style:
        key = (fg, bg, bold, reverse, dim)
        s = self._styles.get(key)
        if s is None:
            s = self._styles[key] = Style(color=fg, bgcolor=bg, bold=bold, reverse=reverse, dim=dim)
        return s

    def render_line(self, y: int) -> Strip:
        strip = self._cache.get(y)
        if strip is None:
            strip = self._cache[y] = self._line(y)
        return strip

    def _line(self, y: int) -> Strip:
        v = self.view
        width = self.size.width
        if v is None or width <= self.label_width + 2:
            return Strip.blank(width)
        if y == 0:
            return self._axis_labels(v)
        if y == 1:
            return self._axis_ticks(v)
        if y == self.size.height - 1:
            return Strip([Segment(v.status[:width].ljust(width), self._style(dim=True))])
        r = v.top + y - HEADER_LINES
        if r >= len(v.rows):
            return Strip.blank(width)
        return self._row_line(v, r)

    def _axis_labels(self, v: View) -> Strip:
        n = self.cell_count
        chars = [" "] * n
        for cell, label in v.window.ticks(n):
            if cell + len(label) <= n and all(c == " " for c in chars[max(cell - 1, 0):cell + len(label) + 1]):
                chars[cell:cell + len(label)] = label
        head = f" +{fmt_offset(v.cursor - v.window.lo, max(v.window.span // n, 1))}"[:self.label_width]
        return Strip([Segment(head.ljust(self.label_width + 1), self._style(bold=True)),
                      Segment("".join(chars), self._style(dim=True))])

    def _axis_ticks(self, v: View) -> Strip:
        n = self.cell_count
        chars = ["─"] * n
        for cell, _ in v.window.ticks(n):
            chars[cell] = "┬"
        cur = v.window.cell_of(v.cursor, n)
        segs = [Segment("time".ljust(self.label_width) + "┼", self._style(dim=True))]
        if cur is None:
            segs.append(Segment("".join(chars), self._style(dim=True)))
        else:
            segs += [Segment("".join(chars[:cur]), self._style(dim=True)),
                     Segment("▼", self._style(fg="#d03c3c", bold=True)),
                     Segment("".join(chars[cur + 1:]), self._style(dim=True))]
        return Strip(segs)

    def _label(self, v: View, r: int) -> Segment:
        row = v.rows[r]
        arrow = ("▾ " if row.key in v.expanded else "▸ ") if row.children else "  "
        text = ("  " * row.depth + arrow + row.label)[:self.label_width].ljust(self.label_width)
        selected = r == v.selected
        return Segment(text, self._style(bold=row.is_group, reverse=selected))

    def _row_line(self, v: View, r: int) -> Strip:
        n = self.cell_count
        cells = self.cells.row_cells(v.rows[r], v.window.edges(n))
        cur = v.window.cell_of(v.cursor, n)
        segs = [self._label(v, r), Segment("│", self._style(dim=True))]
        segs += self._cell_segments(cells, cur)
        return Strip(segs)

    def _cell_segments(self, c: RowCells, cursor_cell: int | None) -> list[Segment]:
        """One segment per run of cells drawn alike (styles are cached, so a run is a run of the same object)."""
        tints = BAR_TINTS[self.dark]
        counts, top, bars, anomalies = c.counts.tolist(), c.top.tolist(), c.bars.tolist(), c.anomalies.tolist()
        out: list[Segment] = []
        run: list[str] = []
        run_style: Style | None = None
        for i, count in enumerate(counts):
            bar = bars[i]
            bg = tints[bar] if bar >= 0 else None
            reverse = i == cursor_cell
            if anomalies[i]:
                fg, bg = ANOMALY_COLOURS[anomalies[i]]
                glyph, style = _ANOMALY.glyph, self._style(fg=fg, bg=bg, bold=True, reverse=reverse)
            elif count:
                mark = mark_of_priority(top[i])
                low = mark.glyph == "·"
                glyph = density_glyph(count) if low else mark.glyph
                style = self._style(fg=mark.color, bg=bg, bold=not low, reverse=reverse)
            elif bar == GROUP_STALE:
                glyph, style = "╌", self._style(fg="#d03c3c", bg=bg, reverse=reverse)
            else:
                glyph, style = " ", self._style(bg=bg, reverse=reverse)
            if style is not run_style and run:
                out.append(Segment("".join(run), run_style))
                run = []
            run.append(glyph)
            run_style = style
        if run:
            out.append(Segment("".join(run), run_style))
        return out
