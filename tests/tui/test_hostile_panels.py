"""The explorer's view state and panels, without Textual, over recordings a stranger crafted (hypothesis): every
row opened, every event stepped through and explained, the state and each anomaly drawn, and what a panel shows
holds no raw control character (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hostile_files import DEV, ESCAPES, GOOD, RAW_CONTROLS, hostile_rows, write_crafted, write_injecting
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.text import Text

from explorer.loading import open_index
from explorer.range_stats import range_stats
from explorer.tui.allocator_panel import render_state
from explorer.tui.cells import CellModel
from explorer.tui.event_panel import render_anomaly, render_event
from explorer.tui.navigation import find_text
from explorer.tui.range_panel import render_range
from explorer.tui.session import Session
from explorer.tui.spans import Spans


def shown(text: Text, seen: list[str] | None = None) -> str:
    plain = text.plain
    assert not any(c in plain for c in RAW_CONTROLS), plain
    if seen is not None:
        seen.append(plain)
    return plain


def walk(path: Path) -> str:
    """Every move and panel a user can reach, on the recording at `path`; what the panels and status lines
    showed."""
    seen: list[str] = []
    index = open_index(path)
    spans = Spans(index)
    spans.update()
    s = Session(index, spans, CellModel(index, spans))
    s.expand_all(True)
    r = 0
    while r < len(s.rows):  # open or close each row (the rows change as they do)
        s.selected = r
        s.toggle_row()
        s.row_event(1)
        seen.append(s.status(80))
        r += 1
    s.expand_all(True)
    s.jump(False)
    while s.step(1) is None:
        assert s.selected_event is not None
        shown(render_event(index, s.selected_event, True), seen)
        shown(render_state(index, index.state_at(s.cursor), s.cursor, "red"), seen)
        for row in s.rows:
            s.cells.row_cells(row, s.window.edges(60))
    for n in range(len(index.anomalies)):
        shown(render_anomaly(index, n, False), seen)
    whole = range_stats(index, int(index.ts.min()), index.end_ns + 1)  # (times may go back: the first is no minimum)
    assert whole.events == index.n and sum(n for _, n in whole.kinds) == index.n
    shown(render_range(index, whole, True, True), seen)
    while s.anomaly(1) is None:
        pass
    s.cursor_by(5, 60)
    s.fit()
    return "\n".join(seen + [r.label for r in s.rows])


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(hostile_rows(), min_size=1, max_size=4))
def test_the_panels_draw_any_crafted_recording(tmp_path: Path, rows: list[Any]) -> None:
    walk(write_crafted(tmp_path / "h.pasidrec", [GOOD[:3] + rows + GOOD[3:]]))


def test_a_fault_with_a_nil_address_and_access_is_drawn(tmp_path: Path) -> None:
    """The schema lets a fault's `addr` be nil (a log that does not give it); the event's line, as an anomaly's
    evidence and in a search, stopped the explorer with a TypeError (hypothesis found it)."""
    fault = [GOOD[-1][0] + 1, "fault", DEV, 1, 0, 1, "x", "probe", {"addr": None, "reason": "r"}]
    path = write_crafted(tmp_path / "h.pasidrec", [GOOD + [fault]])
    walk(path)
    index = open_index(path)
    assert next(iter(index.events([index.n - 1]))).brief() == f"fault {DEV} PASID 1 r"
    assert find_text(index, 0, True, "PASID 1 r", np.ones(int(index.track_of.max()) + 1, bool)) == index.n - 1


def test_the_panels_show_escapes_as_text(tmp_path: Path) -> None:
    """Every control character is shown escaped, none dropped (Rich would drop BEL and CR unseen), and markup
    shows as written."""
    seen = walk(write_injecting(tmp_path / "inject.pasidrec"))
    for text in ESCAPES.values():
        assert text.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\r", "\\x0d").replace(
            "\u2028", "\\u2028") in seen, text
