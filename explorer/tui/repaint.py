"""Repainting only the lines of a widget that changed: Textual composites every line of a widget refreshed whole
again, which for the timeline and the panels cost more than drawing their new lines did."""

from __future__ import annotations

from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget


def repaint_changed(widget: Widget, before: dict[int, Strip] | list[Strip], after: list[Strip]) -> None:
    """Refresh the runs of `widget`'s lines whose strip in `after` differs from the one in `before` (by line);
    the whole widget when `before` holds none (nothing drawn yet to compare with)."""
    width = widget.size.width
    if not before or not width:
        widget.refresh()
        return
    old = dict(enumerate(before)) if isinstance(before, list) else before
    changed = [y for y, strip in enumerate(after) if strip != old.get(y)]
    runs = [[y, y + 1] for y in changed[:1]]
    for y in changed[1:]:
        if y == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([y, y + 1])
    if runs:  # (no region at all would repaint the whole widget)
        widget.refresh(*(Region(0, a, width, b - a) for a, b in runs))
