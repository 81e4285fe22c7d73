"""The explorer driven by Pilot on the bundled scenarios: what each action does to the cursor, the rows and the
panels, checked against what the index and the simulator say."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from explorer.events import Kind
from explorer.tui.app import SPEEDS, ExplorerApp
from explorer.tui.timeline import HEADER_LINES, Timeline

from .conftest import RECORDINGS, ROOT, drive, index_of, panel_text

SCENARIOS = [p.name[:2] for p in RECORDINGS]


def row_text(app: ExplorerApp, r: int) -> str:
    timeline = app.query_one(Timeline)
    assert timeline.view is not None
    return timeline.render_line(HEADER_LINES + r - timeline.view.top).text


@pytest.mark.parametrize("name", SCENARIOS)
def test_n_visits_every_anomaly_and_the_panels_agree_with_the_simulator(name: str) -> None:
    index = index_of(name)
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        for n, a in enumerate(index.anomalies):
            await pilot.press("n")
            assert app.current_anomaly == n
            assert app.cursor == a.ts_ns
            assert (app.row.device, app.row.pasid) == (a.device, a.pasid)
            marked = [line for line in panel_text(app, "anomalies").splitlines() if line.startswith("▶")]
            assert len(marked) == 1 and a.title in marked[0]
            if app.selected_event in a.evidence:
                assert a.title in panel_text(app, "event")
            # the anomaly is visible on its row: the cursor's cell carries the anomaly glyph
            line = row_text(app, app.selected)
            cell = app.window.cell_of(app.cursor, app.query_one(Timeline).cell_count)
            assert line[app.layout.label_width + 1 + cell] == "!"
            state = index.state_at(app.cursor)
            allocator = panel_text(app, "allocator")
            listed = {int(m) for m in re.findall(r"^(\d+)\s", allocator, re.M)}
            assert set(state.pasids) <= listed | {0}
            assert ("UNCERTAIN" in allocator) == state.uncertain
        await pilot.press("n")
        assert app.current_anomaly == (len(index.anomalies) - 1 if index.anomalies else None)
        for n in reversed(range(len(index.anomalies) - 1)):
            await pilot.press("N")
            assert app.current_anomaly == n

    drive(app, body)


def test_step_walks_every_event_in_order_and_back() -> None:
    index = index_of("03")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("home")
        seen = [app.selected_event]
        for _ in range(index.n + 2):
            await pilot.press("full_stop")
            if app.selected_event != seen[-1]:
                seen.append(app.selected_event)
        assert seen == list(range(index.n))
        assert app.cursor == int(index.ts[index.n - 1])
        back = [app.selected_event]
        for _ in range(index.n):
            await pilot.press("comma")
            if app.selected_event != back[-1]:
                back.append(app.selected_event)
        assert back == list(reversed(range(index.n)))

    drive(app, body)


def test_row_events_markers_and_the_event_panel() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="teaching")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        while app.row.label != "0000:b1:00.0 acme-accel":
            await pilot.press("down")
        await pilot.press("down")  # its PASID 1 row
        row_events = sorted((int(index.ts[i]), i) for t in app.row.tracks for i in index.track_events(t))
        await pilot.press("home")
        visited = []
        for _ in row_events:
            await pilot.press("right_square_bracket")
            visited.append((app.cursor, app.selected_event))
            assert f"#{app.selected_event} " in panel_text(app, "event")
        assert visited == row_events
        markers = [i for i in range(index.n) if index.row(i)[1] == Kind.MARKER]
        await pilot.press("home")  # the first step is at the start: the lesson shows it already
        assert markers[0] == 0 and "▶ +0 ns" in panel_text(app, "lesson")
        steps = []
        for _ in markers[1:]:
            await pilot.press("m")
            steps.append(app.selected_event)
        assert steps == markers[1:]
        await pilot.press("M")
        assert app.selected_event == markers[-2]

    drive(app, body)


def test_zoom_pan_fit_and_jumps_move_the_window_and_cursor() -> None:
    index = index_of("04")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("end")
        assert app.cursor == index.end_ns
        await pilot.press("home")
        assert app.cursor == index.start_ns
        whole = app.window.span
        await pilot.press("plus", "plus")
        assert app.window.span == pytest.approx(whole / 4, rel=0.01)
        assert app.window.t0 <= app.cursor < app.window.t1
        t0 = app.window.t0
        await pilot.press("shift+right")
        assert app.window.t0 > t0
        await pilot.press("shift+left")
        assert app.window.t0 == pytest.approx(t0, abs=app.window.span // 100)
        await pilot.press("minus", "minus")
        assert app.window.span == pytest.approx(whole, rel=0.01)
        before = app.cursor
        await pilot.press("right")
        step = app.window.span // app.query_one(Timeline).cell_count
        assert app.cursor == before + step
        await pilot.press("plus", "plus", "plus", "0")
        assert app.window.span == whole
        axis = app.query_one(Timeline).render_line(0).text
        assert "ms" in axis  # units follow the zoom: a 170 ms scenario is labelled in ms

    drive(app, body)


def test_rows_open_close_and_filters_hide_rows() -> None:
    index = index_of("05")
    app = ExplorerApp(index, layout="compact")  # compact starts with devices open, the allocator closed

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        labels = [r.label for r in app.rows]
        assert labels[0] == "allocator" and "PASID 1 worker-1" in labels
        await pilot.press("home")
        n = len(app.rows)
        await pilot.press("enter")  # open the allocator
        assert len(app.rows) > n and app.rows[1].depth == 1
        await pilot.press("c")
        assert all(r.depth == 0 for r in app.rows)
        await pilot.press("e")
        assert len(app.rows) > n
        await pilot.press("slash", *"dev:3b:00 pasid:7", "enter")
        assert {(r.device, r.pasid) for r in app.rows if r.depth} == {("0000:3b:00.0", 7)}
        await pilot.press("escape")
        await pilot.press("slash", *"comm:worker-3", "enter")
        assert {r.pasid for r in app.rows if r.depth} == {3}
        await pilot.press("escape", "slash", *"kind:pasid_free", "enter")
        assert {r.label for r in app.rows if r.depth} == {"PASID 2 (2 holders)"}
        await pilot.press("escape", "slash", *"kind:nonsense", "enter")
        assert any("unknown kind" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        assert not app.filter.active and len(app.rows) > n

    drive(app, body, size=(80, 24))


def test_play_pause_speeds_and_search() -> None:
    index = index_of("03")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        start = app.speed
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert app.speed == start + 2
        for _ in SPEEDS:
            await pilot.press("less_than_sign")
        assert SPEEDS[app.speed] == min(SPEEDS)
        for _ in SPEEDS:
            await pilot.press("greater_than_sign")
        assert SPEEDS[app.speed] == float("inf")
        await pilot.press("home", "space")  # as fast as possible: the 22 ms scenario is over at once
        await pilot.pause(0.2)
        assert not app.playing and app.cursor == index.end_ns
        for _ in SPEEDS:
            await pilot.press("less_than_sign")
        began = time.monotonic()
        await pilot.press("space")  # from the end it starts over, at 0.0001x: 100 µs of recording a second
        assert app.playing and app.cursor < index.start_ns + 100_000 * (time.monotonic() - began + 0.05)
        await pilot.pause(0.3)
        await pilot.press("space")
        played_ns = 100_000 * (time.monotonic() - began + 0.05)
        assert not app.playing and index.start_ns < app.cursor < index.start_ns + played_ns
        await pilot.press("home", "s", *"hwpt_alloc", "enter")
        await pilot.pause(0.2)
        assert index.event(app.selected_event).get("name") == "IOMMU_HWPT_ALLOC"

    drive(app, body)


def test_mouse_help_theme_and_palette() -> None:
    index = index_of("01")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        x = app.layout.label_width + 1 + timeline.cell_count // 2
        await pilot.click(Timeline, offset=(x + 1, HEADER_LINES + 3))  # +1: the widget's border
        assert app.selected == timeline.view.top + 2
        assert app.cursor == app.window.time_of(timeline.cell_count // 2, timeline.cell_count)
        span = app.window.span
        timeline.post_message(Timeline.Zoom(0.8, app.cursor))  # what a wheel turn up sends
        await pilot.pause()
        assert app.window.span == pytest.approx(span * 0.8, rel=0.01)
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "Screen"
        theme = app.theme
        await pilot.press("t")
        assert app.theme != theme and app.query_one(Timeline).dark == app.current_theme.dark
        titles = {c.title for c in app.get_system_commands(app.screen)}
        described = {b.description.capitalize() for b in app.BINDINGS if b.description}
        assert described <= titles

    drive(app, body)


def test_a_bad_layout_is_one_line_naming_file_line_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrows:\n  - height: 2fr\n    panels:\n      - {panel: timelin}\n")
    out = subprocess.run([sys.executable, "-m", "explorer.cli.main", "replay", str(RECORDINGS[0]), "--layout",
                          str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert f"{bad}:line 5: key 'rows[0].panels[0].panel': unknown panel 'timelin'" in out.stderr
