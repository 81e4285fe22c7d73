"""The lesson panel: a teaching scenario's title and text, and its markers with the step at the cursor lit and
scrolled into view."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..explain import prose
from ..index import RecordingIndex
from ..units import fmt_ns
from .palette import ink
from .panel import Panel, PanelText

if TYPE_CHECKING:
    from .session import Session


class LessonPanel(Panel):
    NAME = TITLE = "lesson"
    DOC = "a teaching scenario's text: the step at the cursor"

    def depends_on(self, s: Session) -> tuple[object, ...]:
        return (s.step_at,)

    def fill(self, s: Session) -> None:
        self.show_lesson(s.index, s.markers, s.cursor)

    def show_lesson(self, index: RecordingIndex, markers: list[int], cursor: int) -> None:
        h = index.header
        text = PanelText()
        if h.title:
            text.append(prose(h.title) + "\n", style="bold")
        if h.description:
            text.append(prose(h.description) + "\n\n", style="dim")
        if not markers:
            text.append("This recording has no teaching markers. Press n to jump to the next anomaly, ? for help.",
                        style="dim")
            self.set_body(text)
            return
        times = [index.ts[i] for i in markers]
        current = int(np.searchsorted(times, cursor, side="right")) - 1
        reveal = None  # where the current step's text starts and ends
        for n, i in enumerate(markers):
            ev = index.event(i)
            title = prose(str(ev.get("title") or ""))
            body = prose(str(ev.get("text", "")))
            stamp = f"+{fmt_ns(ev.ts_ns - index.start_ns)} "
            if n == current:
                start = len(text)
                text.append(f"▶ {stamp}{title + ': ' if title else ''}", style=f"bold {ink('purple', self.dark)}")
                text.append(body + "\n", style="bold")
                reveal = (start, len(text))
            elif n < current:
                text.append(f"  {stamp}{title + ': ' if title else ''}{body}\n", style="dim")
            else:
                text.append(f"  {stamp}{title or body[:60] + ('…' if len(body) > 60 else '')}\n", style="dim italic")
        text.append("\nm / M: next / previous step", style="dim")
        self.set_body(text, reveal=reveal)
