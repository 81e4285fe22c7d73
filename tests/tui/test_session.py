"""The explorer's moves on its plain view state, without a screen: what each key does to the cursor, the rows,
the selection, the filter and replay."""

from __future__ import annotations

import numpy as np

from explorer.tui.cells import CellModel
from explorer.tui.filters import parse_filter
from explorer.tui.session import SPEEDS, Session
from explorer.tui.spans import Spans

from .conftest import index_of


def session_of(name: str, **kw: object) -> Session:
    index = index_of(name)
    spans = Spans(index)
    spans.update()
    return Session(index, spans, CellModel(index, spans), **kw)  # type: ignore[arg-type]


def test_anomaly_moves_visit_each_finding_in_time_order_with_its_row_and_evidence() -> None:
    s = session_of("06")
    found = s.index.anomalies
    seen = []
    while s.anomaly(1) is None:
        a = found[s.current_anomaly]  # type: ignore[index]
        assert s.cursor == a.ts_ns and s.row is not None and (s.row.device, s.row.pasid) == (a.device, a.pasid)
        assert s.selected_event in a.evidence
        seen.append(a)
    assert seen == sorted(found, key=lambda a: a.ts_ns) and len(seen) == 4
    assert s.anomaly(1) == "no more anomalies"
    assert s.anomaly(-1) is None and s.shown_anomaly is found[-2]
    s.move_to(s.index.start_ns)  # a cursor move forgets the anomaly shown: n counts from the cursor again
    assert s.shown_anomaly is None and s.anomaly(1) is None and s.shown_anomaly is found[0]


def test_stepping_visits_every_event_on_screen_once_in_time_order_and_a_filter_narrows_it() -> None:
    s = session_of("06")
    s.expand_all(True)
    visited = []
    while s.step(1) is None:
        visited.append(s.selected_event)
        assert s.cursor == int(s.index.ts[s.selected_event])  # type: ignore[index]
    assert visited == sorted(visited, key=lambda i: (int(s.index.ts[i]), i)) and len(set(visited)) == len(visited)
    assert len(visited) == s.index.n - s.index.index_at(s.index.start_ns)  # all but those at the cursor
    assert s.step(1) == "no more events"
    assert s.apply_filter(parse_filter("kind:page_request")) is None
    s.jump(False)
    s.selected_event = None
    kinds = []
    while s.step(1) is None:
        kinds.append(s.index.event(s.selected_event).kind)  # type: ignore[arg-type]
    assert kinds and set(kinds) == {"page_request"}


def test_a_filter_that_matches_nothing_says_so_and_clearing_it_brings_the_rows_back() -> None:
    s = session_of("06")
    before = [r.key for r in s.rows]
    assert s.apply_filter(parse_filter("dev:ff:1f")) == "nothing matches 'dev:ff:1f'"
    assert s.rows == [] and s.row is None and s.row_event(1) is None
    s.apply_filter(parse_filter(""))
    assert set(before) <= {r.key for r in s.rows}  # (a filter opened every row: they stay open)


def test_opening_and_closing_a_device_row_keeps_the_selection_on_it() -> None:
    s = session_of("06")
    device = next(i for i, r in enumerate(s.rows) if r.children and r.key in s.expanded)  # an open device
    s.selected = device
    n_open = len(s.rows)
    key = s.row.key  # type: ignore[union-attr]
    s.toggle_row()
    assert len(s.rows) == n_open - len(s.rows_all[[r.key for r in s.rows_all].index(key)].children)
    assert s.row.key == key  # type: ignore[union-attr]
    s.toggle_row()
    assert len(s.rows) == n_open and s.row.key == key  # type: ignore[union-attr]
    s.row_move(1)  # a child row: closing it closes its device and selects the device
    s.toggle_row()
    assert s.row.key == key  # type: ignore[union-attr]
    s.row_move(-100)
    assert s.selected == 0


def test_replay_as_fast_as_possible_lands_on_each_next_event_and_stops_at_the_end() -> None:
    s = session_of("06")
    s.expand_all(True)
    assert not s.advance(1.0)  # paused: nothing moves
    s.speed = len(SPEEDS) - 1
    s.play()
    landed = []
    while s.playing and len(landed) < 100:
        s.advance(0.0)
        landed.append(s.cursor)
    assert not s.playing and s.cursor == s.index.end_ns
    later = {t for t in np.unique(s.index.ts).tolist() if t > s.index.start_ns}
    assert landed == sorted(landed) and later <= set(landed)
    s.play()  # from the end, play starts over
    assert s.playing and s.cursor == s.index.start_ns
    assert s.change_speed(-100) == f"speed {SPEEDS[0]:g}x" and s.speed == 0


def test_a_cursor_move_is_one_cell_of_the_timeline_and_the_window_follows() -> None:
    s = session_of("06")
    cell = s.window.span // 80
    s.cursor_by(3, 80)
    assert s.cursor == s.index.start_ns + 3 * cell
    s.window.zoom(0.01, s.cursor)
    s.jump(True)
    assert s.cursor == s.index.end_ns and s.window.t0 <= s.cursor <= s.window.t1
    s.fit()
    assert s.window.t0 <= s.index.start_ns and s.window.t1 >= s.index.end_ns


def test_teaching_steps_move_through_the_markers() -> None:
    s = session_of("06")
    steps = []
    while s.marker(1) is None:
        steps.append(s.selected_event)
    assert steps == s.markers[1:] and s.marker(1) == "no more steps"  # the first is at the cursor already
    assert s.step_at == len(s.markers)
    assert s.marker(-1) is None and s.selected_event == s.markers[-2] and s.step_at == len(s.markers) - 1


def test_every_panel_a_layout_may_name_says_what_it_shows_and_fills_itself_from_the_session() -> None:
    from explorer.tui.panel import Panel
    from explorer.tui.panels import PANELS
    from explorer.tui.screen_layout import available_layouts, load_layout

    s = session_of("06")
    s.anomaly(1)
    for name, cls in PANELS.items():
        assert name == cls.NAME and cls.DOC
        if issubclass(cls, Panel):
            panel = cls()
            assert panel.depends_on(s) == panel.depends_on(s)  # a pure function of the session
    used = {spec.panel for name in available_layouts() for row in load_layout(name).rows for spec in row.panels}
    assert used == set(PANELS)  # the bundled layouts show every panel there is
