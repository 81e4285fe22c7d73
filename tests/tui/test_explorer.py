"""The explorer driven by Pilot on the bundled scenarios: what each action does to the cursor, the rows and the
panels, checked against what the index and the simulator say."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core.snapshot_host import recording, snapshots
from textual.binding import Binding
from textual.events import MouseScrollUp

from explorer.events import Kind
from explorer.loading import open_index
from explorer.tui.allocator_panel import KernelState
from explorer.tui.app import ExplorerApp, default_layout
from explorer.tui.glyphs import MARKS
from explorer.tui.palette import ANOMALY_CHIPS, SEVERITY_RANK
from explorer.tui.panel import WHEEL_LINES, Panel, PanelText
from explorer.tui.session import SPEEDS
from explorer.tui.timeline import HEADER_LINES, Timeline

from .conftest import RECORDINGS, ROOT, drive, index_of, panel_text, region_lines, screen_lines, settle

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
            assert app.session.current_anomaly == n
            assert app.session.cursor == a.ts_ns
            assert (app.session.row.device, app.session.row.pasid) == (a.device, a.pasid)
            marked = [line for line in panel_text(app, "anomalies").splitlines() if line.startswith("▶")]
            assert len(marked) == 1 and a.title in marked[0]
            # the event panel explains this anomaly, with its latest evidence at or before it
            event = panel_text(app, "event")
            assert event.startswith(f"anomaly {n + 1} of {len(index.anomalies)} ") and a.title in event
            before = [i for i in a.evidence if index.ts[i] <= a.ts_ns]
            assert app.session.selected_event == (max(before) if before else a.evidence[0])
            # the anomaly is visible on its row: the cursor's cell carries the anomaly glyph
            line = row_text(app, app.session.selected)
            timeline = app.query_one(Timeline)
            cell = app.session.window.cell_of(app.session.cursor, timeline.cell_count)
            assert line[timeline.label_width + 1 + cell] == "!"
            state = index.state_at(app.session.cursor)
            allocator = panel_text(app, "allocator")
            listed = {int(m) for m in re.findall(r"^(\d+)\s", allocator, re.M)}
            assert set(state.pasids) <= listed | {0}
            assert ("UNCERTAIN" in allocator) == state.uncertain
        await pilot.press("n")
        assert app.session.current_anomaly == (len(index.anomalies) - 1 if index.anomalies else None)
        for n in reversed(range(len(index.anomalies) - 1)):
            await pilot.press("N")
            assert app.session.current_anomaly == n

    drive(app, body)


def test_step_walks_every_event_in_order_and_back() -> None:
    index = index_of("03")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("home")
        seen = [app.session.selected_event]
        for _ in range(index.n + 2):
            await pilot.press("full_stop")
            if app.session.selected_event != seen[-1]:
                seen.append(app.session.selected_event)
        assert seen == list(range(index.n))
        assert app.session.cursor == int(index.ts[index.n - 1])
        back = [app.session.selected_event]
        for _ in range(index.n):
            await pilot.press("comma")
            if app.session.selected_event != back[-1]:
                back.append(app.session.selected_event)
        assert back == list(reversed(range(index.n)))

    drive(app, body)


def test_row_events_markers_and_the_event_panel() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="teaching")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        while app.session.row.label != "0000:b1:00.0 acme-accel":
            await pilot.press("down")
        await pilot.press("down")  # its PASID 1 row
        row_events = sorted((int(index.ts[i]), i) for t in app.session.row.tracks for i in index.track_events(t))
        await pilot.press("home")
        visited = []
        for _ in row_events:
            await pilot.press("right_square_bracket")
            visited.append((app.session.cursor, app.session.selected_event))
            assert f"#{app.session.selected_event} " in panel_text(app, "event")
        assert visited == row_events
        markers = [i for i in range(index.n) if index.row(i)[1] == Kind.MARKER]
        await pilot.press("home")  # the first step is at the start: the lesson shows it already
        assert markers[0] == 0 and "▶ +0 ns" in panel_text(app, "lesson")
        steps = []
        for _ in markers[1:]:
            await pilot.press("m")
            steps.append(app.session.selected_event)
        assert steps == markers[1:]
        await pilot.press("M")
        assert app.session.selected_event == markers[-2]

    drive(app, body)


def test_zoom_pan_fit_and_jumps_move_the_window_and_cursor() -> None:
    index = index_of("04")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("end")
        assert app.session.cursor == index.end_ns
        await pilot.press("home")
        assert app.session.cursor == index.start_ns
        whole = app.session.window.span
        await pilot.press("plus", "plus")
        assert app.session.window.span == pytest.approx(whole / 4, rel=0.01)
        assert app.session.window.t0 <= app.session.cursor < app.session.window.t1
        t0 = app.session.window.t0
        await pilot.press("shift+right")
        assert app.session.window.t0 > t0
        await pilot.press("shift+left")
        assert app.session.window.t0 == pytest.approx(t0, abs=app.session.window.span // 100)
        await pilot.press("minus", "minus")
        assert app.session.window.span == pytest.approx(whole, rel=0.01)
        before = app.session.cursor
        await pilot.press("right")
        step = app.session.window.span // app.query_one(Timeline).cell_count
        assert app.session.cursor == before + step
        await pilot.press("plus", "plus", "plus", "0")
        assert app.session.window.span == whole
        axis = app.query_one(Timeline).render_line(0).text
        assert "ms" in axis  # units follow the zoom: a 170 ms scenario is labelled in ms

    drive(app, body)


def test_rows_open_close_and_filters_hide_rows() -> None:
    index = index_of("05")
    app = ExplorerApp(index, layout="compact")  # compact starts with devices open, the allocator closed

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        labels = [r.label for r in app.session.rows]
        assert labels[0] == "allocator" and "PASID 1 worker-1" in labels
        await pilot.press("home")
        n = len(app.session.rows)
        await pilot.press("enter")  # open the allocator
        assert len(app.session.rows) > n and app.session.rows[1].depth == 1
        await pilot.press("c")
        assert all(r.depth == 0 for r in app.session.rows)
        await pilot.press("e")
        assert len(app.session.rows) > n
        await pilot.press("slash", *"dev:3b:00 pasid:7", "enter")
        assert {(r.device, r.pasid) for r in app.session.rows if r.depth} == {("0000:3b:00.0", 7)}
        await pilot.press("escape")
        await pilot.press("slash", *"comm:worker-3", "enter")
        assert {r.pasid for r in app.session.rows if r.depth} == {3}
        await pilot.press("escape", "slash", *"kind:pasid_free", "enter")
        assert {r.label for r in app.session.rows if r.depth} == {"PASID 2 (2 holders)"}
        await pilot.press("escape", "slash", *"kind:nonsense", "enter")
        assert any("unknown kind" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        assert not app.session.filter.active and len(app.session.rows) > n

    drive(app, body, size=(80, 24))


def test_play_pause_speeds_and_search() -> None:
    index = index_of("03")
    app = ExplorerApp(index)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        start = app.session.speed
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert app.session.speed == start + 2
        for _ in SPEEDS:
            await pilot.press("less_than_sign")
        assert SPEEDS[app.session.speed] == min(SPEEDS)
        for _ in SPEEDS:
            await pilot.press("greater_than_sign")
        assert SPEEDS[app.session.speed] == float("inf")
        await pilot.press("home", "space")  # as fast as possible: the 22 ms scenario is over at once
        await pilot.pause(0.2)
        assert not app.session.playing and app.session.cursor == index.end_ns
        for _ in SPEEDS:
            await pilot.press("less_than_sign")
        began = time.monotonic()
        await pilot.press("space")  # from the end it starts over, at 0.0001x: 100 µs of recording a second
        assert app.session.playing and app.session.cursor < index.start_ns + 100_000 * (time.monotonic() - began + 0.05)
        await pilot.pause(0.3)
        await pilot.press("space")
        played_ns = 100_000 * (time.monotonic() - began + 0.05)
        assert not app.session.playing and index.start_ns < app.session.cursor < index.start_ns + played_ns
        await pilot.press("home", "f", *"hwpt_alloc", "enter")
        await pilot.pause(0.2)
        assert index.event(app.session.selected_event).get("name") == "IOMMU_HWPT_ALLOC"

    drive(app, body)


def test_mouse_help_theme_and_palette() -> None:
    index = index_of("01")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        cell = timeline.cell_count // 2
        x = timeline.label_width + 1 + cell
        await pilot.click(Timeline, offset=(x + 1, HEADER_LINES + 3))  # +1: the widget's border
        assert app.session.selected == timeline.view.top + 2
        assert row_text(app, app.session.selected)[x] == " "  # an empty cell: the cursor goes to its start
        assert app.session.cursor == app.session.window.edges(timeline.cell_count)[cell]
        span = app.session.window.span
        region = timeline.content_region
        timeline.post_message(MouseScrollUp(timeline, x, 5, 0, -1, 0, False, False, False,
                                            screen_x=region.x + x, screen_y=region.y + 5))  # a wheel turn up
        await pilot.pause()
        assert app.session.window.span == pytest.approx(span * 0.8, rel=0.01)
        w = app.session.window
        assert w.t0 <= app.session.cursor < w.t1  # it zoomed around the pointer, where the cursor is
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
    assert f"{bad}:5: key 'rows[0].panels[0].panel': unknown panel 'timelin'" in out.stderr


WITH_ANOMALIES = [name for name in SCENARIOS if index_of(name).anomalies]
ESSENTIAL_KEYS = ("n next anomaly", "space play / pause", "/ filter", "? help", "q quit")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", WITH_ANOMALIES)
def test_the_opening_screen_tells_of_anomalies_even_when_their_rows_are_off_screen(name: str,
                                                                                 size: tuple[int, int]) -> None:
    index = index_of(name)
    app = ExplorerApp(index, layout=default_layout(index, size))

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot, lambda: all(key in screen_lines(app)[-1] for key in ESSENTIAL_KEYS))
        timeline = app.query_one(Timeline)
        lines = region_lines(app, timeline)
        count = len(index.anomalies)
        assert f"{count} anomal{'y' if count == 1 else 'ies'} · n jumps" in lines[-2]
        axis = timeline.render_line(1)
        chips = [seg for seg in axis if seg.text == "!"]
        ranks = {SEVERITY_RANK[a.severity] for a in index.anomalies}
        assert chips and {ANOMALY_CHIPS[r][1] for r in ranks} >= {str(seg.style.bgcolor.name) for seg in chips}
        assert "!" in lines[2]  # on screen, whichever rows are scrolled away
        footer = screen_lines(app)[-1]
        assert all(key in footer for key in ESSENTIAL_KEYS), footer

    drive(app, body, size=size)


def test_a_recording_without_anomalies_says_nothing_of_them() -> None:
    app = ExplorerApp(index_of("01"), layout="compact")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        assert "anomal" not in timeline.view.status and "!" not in timeline.render_line(1).text

    drive(app, body, size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_lesson_panel_keeps_the_current_step_in_view(size: tuple[int, int]) -> None:
    index = index_of("03")
    app = ExplorerApp(index, layout="teaching")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        lesson = app.query_one("#lesson")
        for step in range(2, len(app.session.markers) + 1):
            await pilot.press("m")
            await pilot.pause()
            assert f"Step {step}" in panel_text(app, "event")
            assert any("▶" in line for line in region_lines(app, lesson)), f"step {step} is out of view"
        for _ in app.session.markers[1:]:
            await pilot.press("M")
        await pilot.pause()
        assert any("▶ +0 ns" in line for line in region_lines(app, lesson))

    drive(app, body, size=size)


def test_clicking_a_mark_selects_the_event_drawn_there() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        first = timeline.label_width + 1
        marks = [(r, x, ch) for r in range(len(app.session.rows))
                 for x, ch in enumerate(row_text(app, r)) if x >= first and ch not in " ╌"]
        glyphs = {m.glyph: kind for kind, m in MARKS.items()}
        assert len(marks) > 20
        for r, x, ch in marks:
            await pilot.press("0")  # the whole recording, as when the marks were read
            await pilot.click(Timeline, offset=(x + 1, HEADER_LINES + r + 1))
            if ch == "!":  # the anomaly, on its own row (a group's `!` opens onto its PASID's)
                a = index.anomalies[app.session.current_anomaly]
                assert app.session.window.cell_of(a.ts_ns, timeline.cell_count) == x - first
                assert (app.session.row.device, app.session.row.pasid) == (a.device, a.pasid)
                assert a.title in panel_text(app, "event")
            else:
                assert app.session.selected == r
                assert str(index.event(app.session.selected_event).kind) == glyphs[ch], (r, x, ch)
                assert app.session.cursor == index.ts[app.session.selected_event]
                assert f"#{app.session.selected_event} " in panel_text(app, "event")

    drive(app, body)


def test_n_and_shift_n_count_from_the_cursor_after_it_moved() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="debug")
    last = len(index.anomalies) - 1

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("n", "end", "N")
        assert app.session.current_anomaly == last
        await pilot.press("home", "n")
        assert app.session.current_anomaly == 0
        await pilot.press("n", "n", "comma")  # a step back from the third: between the second and the third
        assert app.session.current_anomaly is None
        await pilot.press("n")
        assert app.session.current_anomaly == 2
        await pilot.press("home", "full_stop", "N")
        assert app.session.current_anomaly is None  # none before the first event
        assert any("no more anomalies" in str(n.message) for n in app._notifications)

    drive(app, body)


def test_kind_anomaly_keeps_only_rows_with_anomalies() -> None:
    index = index_of("07")  # events lost (host-wide) and a response on (0000:6a:01.0, PASID 1)
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("slash", *"kind:anomaly", "enter")
        shown = {(r.device, r.pasid) for r in app.session.rows if r.depth}
        assert shown == {(a.device, a.pasid) for a in index.anomalies}
        await pilot.press("escape", "slash", *"kind:anomaly,pasid_free", "enter")  # either kind
        shown = {(r.device, r.pasid) for r in app.session.rows if r.depth}
        assert shown == {(None, None), (None, 1), ("0000:6a:01.0", 1)}

    drive(app, body)


def test_pid_comm_and_words_match_who_held_the_pasid_on_that_row() -> None:
    index = index_of("06")  # PASID 1: first the driver's (pid 211) on acme-accel, then dsa-copy's on idxd
    app = ExplorerApp(index, layout="debug")

    def shown() -> set[tuple[str | None, int | None]]:
        return {(r.device, r.pasid) for r in app.session.rows if r.depth}

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("slash", *"pid:211", "enter")
        assert shown() == {(None, 1), ("0000:b1:00.0", 1)}  # the number, and the device it used it on
        await pilot.press("escape", "slash", *"comm:dsa", "enter")
        assert shown() == {(None, 1), ("0000:6a:01.0", 1)}
        await pilot.press("escape", "slash", *"dsa-copy", "enter")
        assert shown() == {(None, 1), ("0000:6a:01.0", 1)}
        await pilot.press("escape", "slash", *"acme", "enter")  # a driver's name keeps its device's rows
        assert shown() == {("0000:b1:00.0", 1), ("0000:b1:00.0", None)}  # and its requests without a PASID
        assert "PASID 1 kworker/u8:2" in [r.label for r in app.session.rows if r.depth]

    drive(app, body)


def test_a_filtered_group_row_sums_only_the_rows_that_passed() -> None:
    index = index_of("05")
    app = ExplorerApp(index, layout="compact")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("slash", *"dev:3b:00 pasid:7", "enter", "c")  # then close every row
        group = next(r for r in app.session.rows if r.device == "0000:3b:00.0")
        assert group.depth == 0 and group.key not in app.session.expanded
        pasid7 = next(c for c in group.children if c.pasid == 7)
        edges = app.session.window.edges(app.query_one(Timeline).cell_count)
        cells = app.session.cells.row_cells(group, edges)
        assert cells.counts.sum() == len(index.track_events(pasid7.tracks[0]))
        assert not cells.anomalies.any()  # the exhaustion is on the device's no-PASID row, filtered out

    drive(app, body, size=(80, 24))


def test_left_up_bracket_and_next_search_match() -> None:
    index = index_of("03")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("end")
        step = app.session.window.span // app.query_one(Timeline).cell_count
        await pilot.press("left")
        assert app.session.cursor == index.end_ns - step
        await pilot.press("down", "down", "up")
        assert app.session.selected == 1
        row = app.session.row
        times = sorted((int(index.ts[i]), int(i)) for t in row.tracks for i in index.track_events(t))
        await pilot.press("end")  # selects the row's last event
        assert app.session.selected_event == times[-1][1]
        await pilot.press("left_square_bracket")
        assert (app.session.cursor, app.session.selected_event) == times[-2]
        await pilot.press("left_square_bracket")
        assert (app.session.cursor, app.session.selected_event) == times[-3]
        await pilot.press("home", "f", *"IOMMU_", "enter")
        await pilot.pause(0.2)
        first = app.session.selected_event
        await pilot.press("S")
        await pilot.pause(0.2)
        assert app.session.selected_event > first and "IOMMU_" in index.event(app.session.selected_event).brief()

    drive(app, body)


def test_a_command_from_the_palette_runs_its_action() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"next anomaly")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.current_anomaly == 0 and app.session.cursor == index.anomalies[0].ts_ns

    drive(app, body)


def test_the_axis_labels_in_ns_and_us_when_zoomed_far_in() -> None:
    app = ExplorerApp(index_of("04"), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        await pilot.press("home")
        units = set()
        for _ in range(24):
            await pilot.press("plus")
            units |= set(re.findall(r"\d(ns|µs|ms)\b", timeline.render_line(0).text[timeline.label_width:]))
        assert {"ms", "µs", "ns"} <= units

    drive(app, body)


@pytest.mark.parametrize("layout", ["debug", "teaching", "compact"])
@pytest.mark.parametrize("name", ["01", "04", "07"])  # 23 ms, 166 ms and 9 ms long
def test_every_layout_at_80x24_has_a_time_axis(layout: str, name: str) -> None:
    app = ExplorerApp(index_of(name), layout=layout)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        labels = re.findall(r"\d+(?:\.\d+)?(?:ns|µs|ms|s)\b", timeline.render_line(0).text[timeline.label_width:])
        assert len(labels) >= 2, timeline.render_line(0).text

    drive(app, body, size=(80, 24))


def test_an_outstanding_group_says_who_is_to_answer_it() -> None:
    index = index_of("06")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("n", "n", "n", "n")  # the unanswered group, in a VMM's fault queue
        text = panel_text(app, "allocator")
        assert "PRG 8" in text and "waiting for the guest" in text and "STALE" in text

    drive(app, body)


def test_a_big_recording_shows_its_timeline_at_once_and_its_model_as_it_comes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Above SYNC_MODEL events the first screen is drawn from the stored columns, with the allocator at the start;
    the model runs behind it (held here until the test lets it go) and fills in anomalies, state and bars."""
    import threading

    from explorer.loading import open_index
    from explorer.tui import app as app_module
    from explorer.workload import write_workload

    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=6, slow_every=700)  # 30 ms long: groups go stale after 5 ms here
    full = open_index(path, stale_ns=5_000_000)
    index = open_index(path, model=False, stale_ns=5_000_000)
    monkeypatch.setattr(app_module, "SYNC_MODEL", 1_000)
    app = ExplorerApp(index, layout="debug")
    gate, model = threading.Event(), index.run_model
    index.run_model = lambda **kw: gate.wait(30) and model(**kw)  # type: ignore[method-assign]

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        assert 0 < index.modelled < index.n and full.anomalies and not index.anomalies
        assert timeline.view.status.startswith("model ") and "%" in timeline.view.status
        assert panel_text(app, "allocator").startswith("at +0 ns · ")  # the state at the start, known already
        assert "live of" in panel_text(app, "allocator")
        assert panel_text(app, "anomalies") == "The model is still replaying the recording: more may follow."
        assert sum(1 for r in app.session.rows_all for c in r.children if len(app.session.cells._bars(c).rows())) == 0  # noqa: SLF001
        await pilot.press("end")
        assert "the model has replayed" in panel_text(app, "allocator")
        assert "The model has replayed" in panel_text(app, "event")
        await pilot.press("n")  # nothing found yet: it says the model is still running
        evidence = full.anomalies[0].evidence[-1]  # the request of a group found unanswered 5 ms later
        app.select_event(evidence, keep_row=False)  # as a click on its mark does
        assert "The model has replayed" in panel_text(app, "event")
        model(through_ns=int(index.ts[evidence]))  # the model reaches the request, not yet the finding
        assert not index.anomalies
        await pilot.press("right", "left")
        assert app.session.selected_event == evidence and full.anomalies[0].title not in panel_text(app, "event")
        gate.set()
        for _ in range(200):
            await pilot.pause(0.05)
            if app.session.spans.done == index.n:
                break
        await pilot.pause()
        assert [a.rule for a in index.anomalies] == [a.rule for a in full.anomalies]
        assert not timeline.view.status.startswith("model ")
        assert f"{len(full.anomalies):,} anomal" in timeline.view.status
        assert "still replaying" not in panel_text(app, "anomalies") and full.anomalies[0].title in \
            panel_text(app, "anomalies")
        assert panel_text(app, "allocator") == app_with_model_text(full, app.session.cursor)
        assert app.session.selected_event == evidence and full.anomalies[0].title in panel_text(app, "event")
        assert any(len(app.session.cells._bars(c).rows()) for r in app.session.rows_all for c in r.children)  # noqa: SLF001

    drive(app, body)


def test_a_finding_revised_by_a_late_answer_is_shown_revised_while_the_model_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The model reports a page-request group still unanswered at a chunk's end; its answer comes in the next chunk,
    past the threshold, and the finding is revised in place (engine.py `_late`: the kernel keeps a group outstanding
    until iopf_group_response() answers it, 6.9+). The event panel shows the revised words before the model ends,
    although the number of findings did not change."""
    import threading

    from core.test_late_answers import MS, _write

    from explorer.tui import app as app_module

    path = tmp_path / "late.pasidrec"
    _write(path, 4100, 4096, "response", after=5000)  # the answer at 160 ms, in the second of three chunks
    index = open_index(path, model=False)
    monkeypatch.setattr(app_module, "SYNC_MODEL", 1_000)
    app = ExplorerApp(index, layout="debug")
    gate, model = threading.Event(), index.run_model
    index.run_model = lambda **kw: gate.wait(30) and model(**kw)  # type: ignore[method-assign]

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        model(through_ns=120 * MS)  # the first chunk: the group is past 100 ms, not answered yet
        await pilot.press("n")
        await pilot.pause(3 * app_module.PROGRESS_S)
        assert "waited more than 100.000 ms" in panel_text(app, "event")
        model(through_ns=161 * MS)  # the second chunk, with the answer
        assert not index.model_done and len(index.anomalies) == 1
        await pilot.pause(3 * app_module.PROGRESS_S)
        shown = panel_text(app, "event")
        assert "was answered by the kernel 150.000 ms after" in shown and "waited more than" not in shown
        gate.set()

    drive(app, body)


def test_keys_repaint_the_timeline_lines_they_change_and_the_screen_shows_the_whole_view() -> None:
    """A key repaints only the timeline's lines that changed: after every kind of move, what is on screen is
    still the view drawn afresh."""
    app = ExplorerApp(index_of("06"), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        timeline = app.query_one(Timeline)
        for key in ("down", "down", "right", "right_square_bracket", "plus", "shift+left", "up", "n", "A", "left",
                    "B", "full_stop", "enter", "minus", "comma", "end", "home"):
            await pilot.press(key)
            await pilot.pause()
            shown = region_lines(app, timeline)
            timeline.invalidate()
            await pilot.pause()
            assert region_lines(app, timeline) == shown, key

    drive(app, body)


def test_after_every_kind_of_key_each_panel_shows_its_text_laid_out_afresh() -> None:
    """Panels reuse the lines of text they laid out lately and repaint only the lines that changed: after each
    key, every panel's box still shows what laying its whole text out again, with nothing reused, shows."""
    app = ExplorerApp(index_of("04"), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        for key in ("down", "right", "right", "right_square_bracket", "plus", "n", "enter", "shift+right", "A",
                    "full_stop", "full_stop", "B", "comma", "up", "minus", "end", "home", "n", "N"):
            await pilot.press(key)
            await pilot.pause()
            panels = list(app.query(Panel))
            shown = [region_lines(app, p) for p in panels]
            for panel in panels:
                panel._known, panel._known_at = {}, None  # noqa: SLF001 - nothing laid out before is reused
                panel.set_body(panel._body)  # noqa: SLF001
                panel.refresh()
            await pilot.pause()
            assert [region_lines(app, p) for p in panels] == shown, key

    drive(app, body)


def app_with_model_text(index, cursor: int) -> str:  # type: ignore[no-untyped-def]
    """What the allocator panel shows at `cursor` for an index modelled while it was opened."""
    from explorer.tui.allocator_panel import render_state

    return render_state(index, index.state_at(cursor), cursor, "red").plain


def test_a_panel_longer_than_its_box_scrolls_with_keys_and_wheel_and_says_what_it_shows() -> None:
    index = index_of("03")
    app = ExplorerApp(index, layout="compact")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("end")
        panel = max(app.query(Panel), key=lambda p: p.wrapped_lines - p.size.height)
        assert panel.wrapped_lines > panel.size.height + WHEEL_LINES
        first = panel.visible_text()
        assert panel.border_subtitle == f"1–{panel.size.height} of {panel.wrapped_lines} ↕"
        panel.focus()
        await pilot.press("down")
        assert panel.visible_text()[0] == first[1] and panel.border_subtitle.startswith("2–")
        await pilot.press("pagedown", "pagedown", "pagedown", "pagedown")
        assert panel.visible_text()[-1] == panel._strips[-1].text  # noqa: SLF001 - it stops at the end
        assert len(panel._strips) == panel.wrapped_lines  # noqa: SLF001 - the count it says is the lines drawn
        region = panel.content_region
        panel.post_message(MouseScrollUp(panel, 1, 1, 0, -1, 0, False, False, False, screen_x=region.x + 1,
                                         screen_y=region.y + 1))
        await pilot.pause()
        assert panel.top == panel.wrapped_lines - panel.size.height - WHEEL_LINES
        assert [line[2:-2].rstrip() for line in region_lines(app, panel)[1:-1]] == \
            [line.rstrip() for line in panel.visible_text()]  # on screen, inside the border and padding
        await pilot.resize_terminal(80, 60)  # taller: the end of the text comes down to the panel's new bottom
        await pilot.pause()
        assert panel.top == max(panel.wrapped_lines - panel.size.height, 0)
        assert panel.border_subtitle == ("" if panel.top == 0 else
                                         f"{panel.top + 1}–{panel.wrapped_lines} of {panel.wrapped_lines} ↕")
        short = min(app.query(Panel), key=lambda p: p.wrapped_lines)
        short.focus()
        row = app.session.selected
        await pilot.press("down")  # nothing for it to scroll: the key moves the timeline's row
        assert app.session.selected == row + 1

    drive(app, body, size=(80, 24))


def test_the_allocator_sets_a_guest_s_snapshot_beside_the_guest_s_own_model(tmp_path: Path) -> None:
    """In a merged recording the panel once showed the host's snapshots only; a guest's is now named, set beside
    the guest's own model, and its finding shown with it (`check` reports the same one)."""
    from core.test_merge import BDF, S, merged_with_snapshots

    offset = merged_with_snapshots(tmp_path)
    kernel = KernelState(open_index(tmp_path / "m.pasidrec"))
    assert len(kernel.snaps) == 4
    text = kernel.render(80 * S + offset, "red").plain
    assert "kernel snapshot of machine lab-6.12 at" in text and "(the nearest of 4)" in text
    assert re.search(rf"lab-6\.12/{re.escape(BDF)}\s+table 7\b.*\s+PASIDs 5", text), text
    assert f"table_missing: the model holds PASID 5 attached to lab-6.12/{BDF}" in text
    host = kernel.render(1050 * S, "red").plain
    assert "kernel snapshot at" in host and "table_missing" not in host


def test_the_allocator_shows_the_nearest_kernel_snapshot_beside_the_model_at_its_time(tmp_path: Path) -> None:
    index = open_index(recording(tmp_path, *snapshots(tmp_path)))
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        text = panel_text(app, "allocator")  # at the start: the start's snapshot, before any PASID was attached
        assert "kernel snapshot at 50 ns before the first event (the nearest of 2)" in text
        assert re.search(r"0000:00:0a\.0\s+table 5 · 20-bit on\s+no PASID attached", text)
        await pilot.press("end")  # the end's: PASID 9 appeared, 7 is attached in the model, PRI failed
        text = panel_text(app, "allocator")
        assert "kernel snapshot at +200 ns" in text
        assert re.search(r"0000:00:0a\.0\s+table 5, 9 · 20-bit on · PRI Response Failure\s+PASIDs 7", text)
        assert "table_missing: the model holds PASID 7 attached to 0000:00:0a.0" in text
        assert "pri_unexplained" in text

    drive(app, body)


def test_dragging_over_a_panel_copies_the_lines_of_text_it_covers() -> None:
    """A drag over a panel's lines selects them, highlighted where they stand, and `ctrl+c` copies their text.
    The lines were laid out for an earlier cursor and reused lower down, where Textual had numbered them by the
    place they were laid out at. When the panel's text changes, the selection goes with it. A double-click copies
    the whole text, and after a tab what is copied is what is shown. A drag over the timeline copies nothing (not
    the widget's name)."""
    app = ExplorerApp(index_of("06"), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        for _ in range(30):  # the event panel's text changes at each step; its lines are reused from before
            await pilot.press("right")
        await pilot.pause()
        panel = app.query_one("#event", Panel)
        texts = panel.text.split("\n")
        shown = [line.rstrip() for line in panel.visible_text()]
        # two lines on screen that are each a whole line of text, one under the other, below the first
        y = next(y for y in range(1, len(shown) - 1) if shown[y] in texts and shown[y + 1] in texts
                 and texts.index(shown[y + 1]) == texts.index(shown[y]) + 1 and len(shown[y + 1]) > 5)
        left, top = panel.content_region.x - panel.region.x, panel.content_region.y - panel.region.y
        await pilot.mouse_down(panel, offset=(left, top + y))
        await pilot.hover(panel, offset=(left + 5, top + y + 1))
        await pilot.mouse_up(panel, offset=(left + 5, top + y + 1))
        await pilot.pause()
        expected = shown[y] + "\n" + shown[y + 1][:6]  # (up to the character under the pointer)
        assert app.screen.get_selected_text() == expected
        await pilot.press("ctrl+c")
        assert app.clipboard == expected
        ground = panel.visual_style.rich_style.bgcolor  # (the selection's ink is blended over it)
        lit = [n for n in range(panel.size.height) if any(
            s.style is not None and s.style.bgcolor != ground and s.text.strip() for s in panel.render_line(n))]
        assert lit == [y, y + 1]
        await pilot.press("n")  # the panel's text changes: what was selected is no longer there to copy
        await pilot.pause()
        assert app.screen.get_selected_text() is None
        await pilot.click(panel, offset=(left + 1, top + 1), times=2)
        await pilot.press("ctrl+c")
        assert app.clipboard == panel.text
        panel.set_body(PanelText("a\tbcdef ghijk\nnext"))  # after a tab: what is shown is what is copied
        await pilot.mouse_down(panel, offset=(left + 9, top))
        await pilot.hover(panel, offset=(left + 12, top))
        await pilot.mouse_up(panel, offset=(left + 12, top))
        await pilot.pause()
        assert app.screen.get_selected_text() == "cdef" == panel.visible_text()[0][9:13]
        app.screen.clear_selection()
        timeline = app.query_one(Timeline)
        await pilot.mouse_down(timeline, offset=(2, HEADER_LINES))
        await pilot.hover(timeline, offset=(30, HEADER_LINES + 2))
        await pilot.mouse_up(timeline, offset=(30, HEADER_LINES + 2))
        await pilot.pause()
        assert app.screen.get_selected_text() is None

    drive(app, body)


def test_replay_help_names_the_keys_the_explorer_binds() -> None:
    """Each key `replay --help` lists for a purpose is the one the explorer binds to it (search moved from s to f)."""
    helped = subprocess.run([sys.executable, "-m", "explorer.cli.main", "replay", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60).stdout
    bound = {b.description: b.key for b in ExplorerApp.BINDINGS if isinstance(b, Binding)}
    search = next(line for line in helped.splitlines() if "search event text" in line)
    assert search.split()[:2] == [bound["search event text"], bound["next search match"]]
