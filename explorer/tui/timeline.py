"""The timeline widget: an axis, one line per row, a status line. Rendered line by line from the index.

Each frame asks `CellModel` for the visible rows only, so its cost follows the screen, not the recording; strips
are cached until the view changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from .cells import CellModel, RowCells
from .glyphs import MARKS, density_glyph, mark_of_priority
from .palette import ANOMALY_CHIPS, BAR_TINTS, ink
from .repaint import repaint_changed
from .spans import GROUP_STALE
from .timescale import Window, fmt_offset
from .tracks import TrackRow

HEADER_LINES = 2  # the axis labels and the tick line
MIN_LABEL, MIN_CELLS = 12, 30  # a narrow timeline shrinks its labels, down to MIN_LABEL, to keep MIN_CELLS of time
_ANOMALY = MARKS["anomaly"]
MARK_NAMES = ("A", "B")
MARK_INKS = ("green", "purple")  # KernelShark draws A green and B red; red is the cursor's here


@dataclass(slots=True)
class View:
    """What the timeline shows: pushed down by the app whenever the cursor, window, rows or filter change."""

    window: Window
    cursor: int
    rows: list[TrackRow]
    expanded: set[tuple[object, ...]]
    selected: int
    top: int = 0
    status: str = ""
    marks: tuple[int | None, int | None] = (None, None)  # the A and B markers' times


class Timeline(Widget, can_focus=True):
    """Per-device / per-PASID tracks against time; clicks and wheel turns go up to the app as messages."""

    NAME = "timeline"
    DOC = "per-device / per-PASID timelines with the time axis"

    DEFAULT_CSS = """
    Timeline { height: 1fr; min-height: 6; }
    """
    ALLOW_SELECT = False  # a drawing, not text: a drag selects nothing here (Textual would copy the widget's name)

    class Clicked(Message):
        """A click on a row (None: on the axis or below the rows) and a cell (None: on the labels)."""

        def __init__(self, row: int | None, cell: int | None) -> None:
            super().__init__()
            self.row, self.cell = row, cell

    class Zoom(Message):
        def __init__(self, factor: float, around_ns: int) -> None:
            super().__init__()
            self.factor, self.around_ns = factor, around_ns

    def __init__(self, cells: CellModel, label_width: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.cells = cells
        self.max_label = label_width
        self.label_width = label_width  # narrower on a narrow timeline: see on_resize
        self.view: View | None = None
        self.dark = True
        self._cache: dict[int, Strip] = {}
        self._ground: Style | None = None  # the theme's colours under every line (see _under)
        self._grid: tuple[np.ndarray, list[tuple[int, str]]] | None = None  # this frame's cell edges and ticks
        self._styles: dict[tuple[object, ...], Style] = {}
        # each row's cells at the last window: a cursor or row move redraws the lines but counts nothing again
        self._row_cells: dict[tuple[object, ...], RowCells] = {}
        self._row_cells_of: tuple[object, ...] = ()
        self._runs: dict[tuple[object, ...], list[Segment]] = {}  # a row's runs without the cursor, by its cells
        self._reversed: dict[Style, Style] = {}  # a style as the cursor's cell draws it

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
        old = self._cache
        self._forget()
        # Draw every line now and repaint only those that changed: a row or step key changes a few
        repaint_changed(self, old, [self.render_line(y) for y in range(self.size.height)] if old else [])

    def invalidate(self) -> None:
        """Draw every line again, over the theme's colours and in its ink (the theme changed)."""
        self._forget()
        self._ground = None
        self._styles, self._reversed, self._runs = {}, {}, {}
        self.refresh()

    def _forget(self) -> None:
        self._cache = {}
        self._grid = None

    def _edges_and_ticks(self, v: View) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """The cell edges and axis ticks of this frame, worked out once for all its lines."""
        if self._grid is None:
            n = self.cell_count
            self._grid = (v.window.edges(n), v.window.ticks(n))
        return self._grid

    def on_resize(self) -> None:
        """Keep the layout's label width unless that leaves fewer than MIN_CELLS cells of time."""
        self.label_width = min(self.max_label, max(MIN_LABEL, self.size.width - 1 - MIN_CELLS))
        if self.view is not None:
            self.show(self.view)

    # -- input ------------------------------------------------------------------------------------------------
    def _cell_at(self, x: int) -> int | None:
        cell = x - self.label_width - 1
        return cell if 0 <= cell < self.cell_count else None

    def on_click(self, event: events.Click) -> None:
        at = event.get_content_offset(self)  # inside the border, where lines are drawn
        if self.view is None or at is None:
            return
        line = at.y - HEADER_LINES
        row = self.view.top + line if 0 <= line < self.track_lines else None
        if row is not None and row >= len(self.view.rows):
            row = None
        self.post_message(self.Clicked(row, self._cell_at(at.x)))

    def _wheel(self, event: events.MouseEvent, factor: float) -> None:
        at = event.get_content_offset(self)
        if self.view is not None:
            event.stop()
            cell = None if at is None else self._cell_at(at.x)
            around = self.view.cursor if cell is None else self.view.window.time_of(cell, self.cell_count)
            self.post_message(self.Zoom(factor, around))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._wheel(event, 0.8)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._wheel(event, 1.25)

    # -- drawing ----------------------------------------------------------------------------------------------
    def _style(self, fg: str | None = None, bg: str | None = None, bold: bool = False, reverse: bool = False,
               dim: bool = False) -> Style:
        """A style over the theme's colours: every segment is drawn in one (a line drawn without them would show
        the terminal's own), so no line needs them applied after it is made."""
        key = (fg, bg, bold, reverse, dim)
        s = self._styles.get(key)
        if s is None:
            s = self._styles[key] = self._under() + Style(color=fg, bgcolor=bg, bold=bold, reverse=reverse, dim=dim)
        return s

    def _under(self) -> Style:
        """The theme's colours under every line, worked out from the widget's ancestors' once a theme."""
        if self._ground is None:
            self._ground = self.visual_style.rich_style
        return self._ground

    def render_line(self, y: int) -> Strip:
        strip = self._cache.get(y)
        if strip is None:
            strip = self._cache[y] = self._line(y)
        return strip

    def _line(self, y: int) -> Strip:
        v = self.view
        width = self.size.width
        if v is None or width <= self.label_width + 2:
            return Strip.blank(width, self._under())
        if y == 0:
            return self._axis_labels(v)
        if y == 1:
            return self._axis_ticks(v)
        if y == self.size.height - 1:
            return Strip([Segment(v.status[:width].ljust(width), self._style(dim=True))])
        r = v.top + y - HEADER_LINES
        if r >= len(v.rows):
            return Strip.blank(width, self._under())
        return self._row_line(v, r)

    def _axis_labels(self, v: View) -> Strip:
        n = self.cell_count
        chars = [" "] * n
        for cell, label in self._edges_and_ticks(v)[1]:
            if cell + len(label) <= n and all(c == " " for c in chars[max(cell - 1, 0):cell + len(label) + 1]):
                chars[cell:cell + len(label)] = label
        head = f" +{fmt_offset(v.cursor - v.window.lo, max(v.window.span // n, 1))}"[:self.label_width]
        return Strip([Segment(head.ljust(self.label_width + 1), self._style(bold=True)),
                      Segment("".join(chars), self._style(dim=True))])

    def _axis_ticks(self, v: View) -> Strip:
        """Ticks, an `!` wherever any anomaly lies (so the axis tells of those on rows off screen) and the
        cursor's ▼."""
        n = self.cell_count
        chars = ["─"] * n
        edges, ticks = self._edges_and_ticks(v)
        for cell, _ in ticks:
            chars[cell] = "┬"
        ranks = self.cells.axis_anomalies(edges).tolist()
        cur = v.window.cell_of(v.cursor, n)
        marks = self._mark_cells(v)
        rule = self._style(dim=True)
        segs = [Segment("time".ljust(self.label_width) + "┼", rule)]
        start = 0
        for cell in range(n):
            if cell == cur or cell in marks or ranks[cell]:
                segs.append(Segment("".join(chars[start:cell]), rule))
                if cell == cur:
                    segs.append(self._cursor_mark())
                elif cell in marks:
                    m = marks[cell]
                    segs.append(Segment(MARK_NAMES[m], self._style(fg=ink(MARK_INKS[m], self.dark), bold=True)))
                else:
                    segs.append(self._anomaly_chip(ranks[cell]))
                start = cell + 1
        segs.append(Segment("".join(chars[start:]), rule))
        return Strip(segs)

    def _mark_cells(self, v: View) -> dict[int, int]:
        """The cells of the A and B markers in view: cell -> 0 (A) or 1 (B); B wins a cell they share."""
        n = self.cell_count
        cells = (None if t is None else v.window.cell_of(t, n) for t in v.marks)
        return {cell: m for m, cell in enumerate(cells) if cell is not None}

    def _cursor_mark(self) -> Segment:
        return Segment("▼", self._style(fg=ink("red", self.dark), bold=True))

    def _anomaly_chip(self, rank: int) -> Segment:
        fg, bg = ANOMALY_CHIPS[rank]
        return Segment(_ANOMALY.glyph, self._style(fg=fg, bg=bg, bold=True))

    def _label(self, v: View, r: int) -> Segment:
        row = v.rows[r]
        arrow = ("▾ " if row.key in v.expanded else "▸ ") if row.children else "  "
        text = ("  " * row.depth + arrow + row.label)[:self.label_width].ljust(self.label_width)
        selected = r == v.selected
        return Segment(text, self._style(bold=row.is_group, reverse=selected))

    def _row_line(self, v: View, r: int) -> Strip:
        n = self.cell_count
        cells = self._cells_of(v.rows[r], self._edges_and_ticks(v)[0])
        marks = self._mark_cells(v)
        key = (id(cells), self.dark, *marks.items())
        runs = self._runs.get(key)
        if runs is None:
            runs = self._runs[key] = self._cell_segments(cells, marks)
        segs = [self._label(v, r), Segment("│", self._style(dim=True))]
        segs += self._with_cursor(runs, v.window.cell_of(v.cursor, n))
        return Strip(segs)

    def _with_cursor(self, runs: list[Segment], cell: int | None) -> list[Segment]:
        """A row's runs of cells with the cursor's cell cut out of its run and drawn reversed."""
        if cell is None:
            return runs
        at = 0
        for k, seg in enumerate(runs):
            if at + len(seg.text) > cell:
                i = cell - at
                style = seg.style
                assert style is not None
                cursor = self._reversed.get(style)
                if cursor is None:
                    cursor = self._reversed[style] = style + Style(reverse=True)
                cut = [Segment(seg.text[i], cursor)]
                if i:
                    cut.insert(0, Segment(seg.text[:i], style))
                if i + 1 < len(seg.text):
                    cut.append(Segment(seg.text[i + 1:], style))
                return runs[:k] + cut + runs[k + 1:]
            at += len(seg.text)
        return runs

    def _cells_of(self, row: TrackRow, edges: np.ndarray) -> RowCells:
        """The row's cells, counted again only when the window, the index, its findings or the filter changed."""
        model = self.cells
        at = (int(edges[0]), int(edges[-1]), len(edges), model.index.n, model.index.findings_seen, model.version,
              id(model.spans))
        if at != self._row_cells_of:
            self._row_cells, self._row_cells_of, self._runs = {}, at, {}
        key = (row.key, row.only, row.span_key, *row.tracks)
        got = self._row_cells.get(key)
        if got is None:
            got = self._row_cells[key] = model.row_cells(row, edges)
        return got

    def _cell_segments(self, c: RowCells, marks: dict[int, int]) -> list[Segment]:
        """One segment per run of cells drawn alike (styles are cached, so a run is a run of the same object), one
        character a cell. A marker is a line down an empty cell (a mark drawn there says more)."""
        tints = BAR_TINTS[self.dark]
        counts, top, bars, anomalies = c.counts.tolist(), c.top.tolist(), c.bars.tolist(), c.anomalies.tolist()
        out: list[Segment] = []
        run: list[str] = []
        run_style: Style | None = None
        for i, count in enumerate(counts):
            bar = bars[i]
            bg = tints[bar] if bar >= 0 else None
            if anomalies[i]:
                chip = self._anomaly_chip(anomalies[i])
                glyph, style = chip.text, chip.style
            elif count:
                mark = mark_of_priority(top[i])
                low = mark.glyph == "·"
                glyph = density_glyph(count) if low else mark.glyph
                style = self._style(fg=mark.colour(self.dark), bg=bg, bold=not low)
            elif i in marks:
                glyph, style = "│", self._style(fg=ink(MARK_INKS[marks[i]], self.dark), bg=bg)
            elif bar == GROUP_STALE:
                glyph, style = "╌", self._style(fg=ink("red", self.dark), bg=bg)
            else:
                glyph, style = " ", self._style(bg=bg)
            if style is not run_style and run:
                out.append(Segment("".join(run), run_style))
                run = []
            run.append(glyph)
            run_style = style
        if run:
            out.append(Segment("".join(run), run_style))
        return out
