"""The frame every side panel shares: a bordered box whose body the app replaces as the cursor moves.

A panel draws its own lines (Textual's line API) and scrolls by its own offset: its size never depends on its
text, so a new body is a repaint of this panel alone. A scrolling container would re-lay out the whole screen
whenever the text's height changed (and with it the scroll bar), which cost more than the timeline's frame.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import TYPE_CHECKING, ClassVar

from rich._wrap import divide_line
from rich.cells import cell_len
from rich.style import Style
from rich.text import Span, Text
from textual import events
from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.geometry import Region
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.visual import Visual
from textual.widget import Widget

from ..text import line, lines
from .repaint import repaint_changed

if TYPE_CHECKING:
    from .session import Session

WHEEL_LINES = 3
KNOWN_LINES = 2000  # lines of text laid out lately that a panel keeps to reuse (see _lay_out)


class Panel(Widget, can_focus=True):
    """A titled panel. Each kind declares its layout name (NAME), what it shows (DOC), what it depends on
    (`depends_on`) and how it fills itself from the session (`fill`); the app refills a panel only when what it
    depends on changed, since re-laying out unchanged text would cost more than the whole timeline frame.
    Panels never reach into other panels. The kinds a layout may name are listed in tui/panels.py."""

    DEFAULT_CSS = """
    Panel { border: round $primary 50%; padding: 0 1; height: 1fr; }
    Panel:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_by(-1)", "scroll up", show=False),
        Binding("down", "scroll_by(1)", "scroll down", show=False),
        Binding("pageup", "scroll_by(-0.9)", "page up", show=False),
        Binding("pagedown", "scroll_by(0.9)", "page down", show=False),
    ]
    NAME = ""
    DOC = ""
    TITLE = ""
    shown: tuple[object, ...] | None = None  # what the body was last filled from (the app skips equal refills)

    def depends_on(self, s: Session) -> tuple[object, ...]:
        """What the body shows is a function of this: an equal value needs no refill."""
        raise NotImplementedError

    def fill(self, s: Session) -> None:
        raise NotImplementedError

    def refresh_from(self, s: Session) -> None:
        """Refill from the session if what this panel depends on changed."""
        key = self.depends_on(s)
        if key != self.shown:
            self.shown = key
            self.fill(s)

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's own name)
        super().__init__(id=id)
        self._body = Text()
        self._reveal: tuple[int, int] | None = None
        self._lines: list[str] = []  # the body's lines of text
        self._starts: list[int] = []  # where each line of text begins in the body
        self._spans: list[tuple[tuple[int, int, str | Style], ...]] = []  # each line's styles, from its start
        self._laid = 0  # lines of text laid out so far (into `_strips`)
        # lines of text laid out lately (by text and styles), at `_known_at`'s width, style and text selection
        self._known: dict[tuple[str, tuple[tuple[int, int, str | Style], ...], str | Style], list[Strip]] = {}
        self._known_at: tuple[object, ...] | None = None
        self._subtitle = ""
        self._ends: list[int] = []  # per line of text, how many wrapped lines it and those before it take
        self._strips: list[Strip] = []  # the wrapped lines laid out so far, from the first
        self._width = -1  # the width the lines were wrapped at
        self._style = VisualStyle()
        self.top = 0  # the first body line shown

    def on_mount(self) -> None:
        self.border_title = self.TITLE

    def set_body(self, text: Text, reveal: tuple[int, int] | None = None) -> None:
        """Show `text` (as Textual's own Content: laid out natively, far cheaper than a Rich renderable). With
        `reveal`, a (start, end) range of its characters is scrolled into view; else it stays scrolled where it
        was (as far as the new text reaches). Build `text` of `PanelText`, so that what it shows of the input
        comes escaped."""
        height = self.size.height
        before = [self.render_line(y) for y in range(height)] if self._strips else []
        if self.text_selection is not None and text.plain != self._body.plain:  # what was selected is gone
            self.screen.selections = {w: s for w, s in self.screen.selections.items() if w is not self}
        self._body, self._reveal = text, reveal
        self._width = -1
        self._wrap()
        repaint_changed(self, before, [self.render_line(y) for y in range(height)] if before else [])

    def on_resize(self, _: events.Resize) -> None:
        self._wrap()
        self.refresh()  # (Textual may have drawn the new size before this: with what was laid out for the old)

    def _wrap(self) -> None:
        """Wrap the body at the panel's width (again only when that changed) and scroll: to the range to
        reveal when asked, else as far as it was, within what the new size leaves."""
        width = self.size.width
        if width <= 0:
            return
        if width != self._width:
            self._width = width
            self._lines = self._body.plain.split("\n")
            self._starts = [0, *accumulate(len(line) + 1 for line in self._lines[:-1])]
            self._ends = list(accumulate(map(self._height_of, self._lines)))
            self._spans = self._styles_by_line()
            self._strips, self._laid = [], 0
            self._style = self.visual_style  # what the lines laid out later are drawn in too
        if self._reveal is not None:
            start, end = self._reveal
            first = self._lines_before(start)
            last = max(self._lines_before(end), first + 1)
            height = self.size.height
            if not (self.top <= first and last <= self.top + height):
                self.top = max(min(first, last - height), 0)
        self._scroll_to(self.top)

    def _height_of(self, line: str) -> int:
        """How many lines a line of text wraps to at the panel's width: Content's own wrapping, which breaks a
        line where Rich's `divide_line` says (counted from the plain text: laying out its styles costs as much as
        drawing it). A tab is expanded first, as Content does."""
        if "\t" in line:
            return len(Content(line).wrap(self._width))
        return 1 if cell_len(line) <= self._width else len(divide_line(line, self._width, fold=True)) + 1

    @property
    def wrapped_lines(self) -> int:
        """How many lines the body takes at the panel's width."""
        return self._ends[-1] if self._ends else 0

    def _styles_by_line(self) -> list[tuple[tuple[int, int, str | Style], ...]]:
        """The body's styled spans cut at its lines, each from its own line's start (in the body's order)."""
        starts, lines = self._starts, self._lines
        out: list[list[tuple[int, int, str | Style]]] = [[] for _ in lines]
        for start, end, style in self._body.spans:
            for n in range(bisect_right(starts, start) - 1, bisect_right(starts, max(end - 1, start))):
                a, b = max(start - starts[n], 0), min(end - starts[n], len(lines[n]))
                if a < b:
                    out[n].append((a, b, style))
        return [tuple(spans) for spans in out]

    def _lay_out(self, upto: int) -> None:
        """Lay out the wrapped lines before `upto`, at least: a body is laid out only as far down as it is seen
        (a cursor move refills panels two to five times their height, and laying out text costs more than the
        timeline's frame), the rest when it is scrolled to. A line of text laid out lately, with the same styles,
        is not laid out again: a cursor move changes a few of a panel's lines."""
        if upto <= len(self._strips):
            return
        count = min(bisect_left(self._ends, upto) + 1, len(self._lines))
        under = self._body.style  # (Textual reads a body's own style apart from its spans)
        if self.text_selection is not None:  # every line from the first, where the selection's numbers place it
            self._strips = self._strips_of(self._lines[:count], self._spans[:count], under)
            self._laid = count
            return
        at_now = (self._width, self._style)
        if self._known_at != at_now or len(self._known) > KNOWN_LINES:
            self._known, self._known_at = {}, at_now
        keys = [(text, spans, under) for text, spans in zip(self._lines[self._laid:count],
                                                             self._spans[self._laid:count], strict=True)]
        new = [key for key in dict.fromkeys(keys) if key not in self._known]
        if new:  # laid out together, in one pass of Textual's, then cut into each line's own wrapped lines
            strips = self._strips_of([key[0] for key in new], [key[1] for key in new], under)
            at = 0
            for key in new:
                height = self._height_of(key[0])
                self._known[key], at = strips[at:at + height], at + height
        for key in keys:
            self._strips += self._known[key]
        self._laid = count

    def _strips_of(self, texts: list[str], styles: list[tuple[tuple[int, int, str | Style], ...]],
                   under: str | Style) -> list[Strip]:
        """Lines of text with their styles, wrapped and drawn in one pass of Textual's (the selection, if any,
        drawn where it covers them when they are the body's first lines)."""
        spans, at = [], 0
        for text, line_styles in zip(texts, styles, strict=True):
            spans += [Span(at + a, at + b, style) for a, b, style in line_styles]
            at += len(text) + 1
        body = Text("\n".join(texts), under, spans=spans)
        return Visual.to_strips(self, Content.from_rich_text(body), self._width, None, self._style, pad=True)

    def _lines_before(self, offset: int) -> int:
        """How many wrapped lines the body's first `offset` characters take, up to the line `offset` begins: the
        lines of text before its own, and those its own line's first characters wrap to."""
        n = bisect_right(self._starts, offset) - 1
        if n < 0:
            return 0
        within = offset - self._starts[n]
        before = self._ends[n - 1] if n else 0
        return before + self._height_of(self._lines[n][:within]) - 1 if within else before

    def _scroll_to(self, top: int) -> None:
        """Scroll, and say in the bottom border which lines show when they do not all fit."""
        height, total = self.size.height, self.wrapped_lines
        self.top = max(min(top, total - height), 0)
        self._lay_out(self.top + height)
        more = total > height > 0
        subtitle = f"{self.top + 1}–{min(self.top + height, total)} of {total} ↕" if more else ""
        if subtitle != self._subtitle:  # (setting it repaints the whole panel)
            self.border_subtitle = self._subtitle = subtitle

    def action_scroll_by(self, amount: float) -> None:
        if self.wrapped_lines <= self.size.height:
            raise SkipAction  # nothing to scroll: the key goes to the app (↑/↓ move between rows)
        lines = int(amount * self.size.height) if abs(amount) < 1 else int(amount)
        self._scroll_to(self.top + lines)
        self.refresh()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.action_scroll_by(WHEEL_LINES)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.action_scroll_by(-WHEEL_LINES)

    def render_lines(self, crop: Region) -> list[Strip]:
        style = self.visual_style
        if style != self._style and self._width > 0:  # the theme changed since the text was laid out: again, in its ink
            self._style, self._strips, self._laid = style, [], 0
            self._lay_out(self.top + self.size.height)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        i = self.top + y
        if 0 <= i < len(self._strips):
            return self._placed(self._strips[i], i)
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def _placed(self, strip: Strip, i: int) -> Strip:
        """Wrapped line `i` as drawn, its characters numbered for text selection by their line of text and place
        in it: a line laid out lately is reused wherever it now stands, and Textual numbered it where it was
        laid out. (The strip keeps what it made: drawing it again at the same place costs a lookup.)"""
        for segment in strip:
            at = segment.style.meta.get("offset") if segment.style is not None else None
            if at is not None:
                return strip.apply_offsets(at[0], bisect_right(self._ends, i))
        return strip

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The text a mouse selection covers (Textual's copy takes it), from the body's own plain text as it is
        shown (tabs expanded: Textual numbers the characters on screen): the lines of text it spans, not their
        wrapped lines."""
        return selection.extract(self._body.plain.expandtabs(8)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        """The selection is drawn over the lines laid out: they are laid out again, with or without it."""
        if self._width > 0:
            self._strips, self._laid = [], 0
            self._lay_out(self.top + self.size.height)
        self.refresh()

    @property
    def dark(self) -> bool:
        """Whether the app's theme is dark: panels pick their ink for it (palette.INK)."""
        return self.app.current_theme.dark

    @property
    def text(self) -> str:
        """What the panel holds, as plain text (for tests and for copying)."""
        return self._body.plain

    def visible_text(self) -> list[str]:
        """The body lines on screen now, as plain text."""
        return [s.text for s in self._strips[self.top:self.top + self.size.height]]


class PanelText(Text):
    """The Text a panel's body is built of: every string it is given, at once or appended, has its control
    characters shown escaped (`\\x1b`, `\\x07`; newlines and tabs kept) as it enters. A panel shows process names,
    devices, log lines, titles and scenario text: Rich would drop BEL, backspace, VT, FF and CR without a trace and
    pass ESC on to the terminal. Markup in them stays as written (a Text never parses it)."""

    def __init__(self, text: str = "", style: str | Style = "") -> None:
        super().__init__(lines(text), style)

    def append(self, text: str | Text, style: str | Style | None = None) -> Text:
        return super().append(lines(text) if isinstance(text, str) else text, style)


def columns(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None, indent: str = "") -> Text:
    """Rows aligned in columns as plain Text: a Rich Table measures itself again on every layout pass, which costs
    more than the whole timeline frame; the last column is left free to wrap (and to hold a text's own lines). A
    cell before it is one line (a newline or control character in a name is shown escaped), measured as shown."""
    every = [(*map(line, r[:-1]), r[-1]) for r in ([header] if header else []) + rows]
    widths = [max(len(r[c]) for r in every) for c in range(len(every[0]) - 1)] if every else []
    out = PanelText()
    for n, r in enumerate(every):
        row = indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
        out.append(row.rstrip() + "\n", style="bold" if header and n == 0 else "")
    return out
