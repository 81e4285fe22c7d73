"""The filter and search boxes: a text input that never holds a control character.

Text pasted into a box may come from the traced host (a process name copied from a log, with an escape sequence
in it), and Textual's Input draws its value as it is: an ESC in it would reach the terminal raw. Here a control
character is kept as its escaped form (`\\x1b`, as `explorer.text.line` writes it): what the panels show, and
what the filter and search match, so a pasted name still finds its row.
"""

from __future__ import annotations

from textual.widgets import Input

from ..text import line


class PlainInput(Input):
    """An Input whose typed, pasted or assigned text has its control characters escaped."""

    def replace(self, text: str, start: int, end: int) -> None:
        # every insertion (typing, pasting) comes through here: escaped first, so the cursor lands after it
        super().replace(line(text), start, end)

    def validate_value(self, value: str) -> str:
        return line(value)
