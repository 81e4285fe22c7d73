"""The explorer app: composes the layout's panels and keeps the cursor, the window, the rows and the filter.

The app only reads the model (a RecordingIndex and its simulator); panels get what to show pushed down, and the
timeline's clicks and wheel turns come up as messages.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from ..errors import ExplorerCrashed
from ..events import Kind, Row
from ..explain import model_progress
from ..index import RecordingIndex
from ..live_source import LiveSource
from ..simulator import Anomaly
from ..text import line
from ..units import fmt_ns
from .allocator_panel import AllocatorPanel
from .anomaly_panel import AnomalyPanel
from .cells import CellModel
from .event_panel import EventPanel
from .filters import FILTER_HELP, Filter, FilterSyntaxError, parse_filter
from .help_screen import HelpScreen
from .lesson_panel import LessonPanel, marker_indices
from .navigation import event_at, evidence_shown, find_text, next_anomaly, step_global, step_on_tracks
from .panel import Panel
from .screen_layout import Layout, load_layout
from .spans import Spans
from .timeline import Timeline, View
from .timescale import Window
from .tracks import ALLOCATOR, TrackRow, build_rows, visible_rows

# Kernel events come microseconds apart, so replay offers slow motion well below 0.1x as well.
SPEEDS: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 1, 2, 5, 10, 100, 1000, float("inf"))
PLAY_S = 10.0  # the default speed replays the whole recording in about this long
SYNC_MODEL = 200_000  # up to this many events the model and bars are run before the first frame, above in a worker
TICK_S = 1 / 30
PROGRESS_S = 0.5  # while the model runs in its worker, the screen shows how far it got this often
MAX_PACE = 1000  # the speed as fast as possible never falls below
_PANELS: dict[str, type[Panel]] = {"allocator": AllocatorPanel, "event": EventPanel, "anomalies": AnomalyPanel,
                                   "lesson": LessonPanel}


class ExplorerApp(App[None]):
    """Replay (or watch live) one event stream as per-device / per-PASID timelines beside the allocator model."""

    TITLE = "PASID Explorer"
    CSS = """
    #filter, #search { dock: bottom; display: none; height: 3; }
    #filter.shown, #search.shown { display: block; }
    .layout-row { height: 1fr; }
    Timeline { border: round $primary 50%; }
    Timeline:focus { border: round $accent; }
    """
    # The footer shows the bindings with show=True in this order, as many as fit: the essentials come first.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "anomaly(1)", "next anomaly"),
        Binding("space", "play", "play / pause"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("left", "cursor(-1)", "cursor ←", show=False),
        Binding("right", "cursor(1)", "cursor →", show=False),
        Binding("shift+left", "pan(-0.25)", "pan earlier", show=False),
        Binding("shift+right", "pan(0.25)", "pan later", show=False),
        Binding("plus,equals_sign", "zoom(0.5)", "zoom in", key_display="+"),
        Binding("minus", "zoom(2)", "zoom out", key_display="-"),
        Binding("0", "fit", "whole recording", show=False),
        Binding("home", "jump(0)", "jump to start", show=False),
        Binding("end", "jump(1)", "jump to end (live: follow)", show=False),
        Binding("up", "row(-1)", "previous row", show=False),
        Binding("down", "row(1)", "next row", show=False),
        Binding("enter", "toggle_row", "open / close row", show=False),
        Binding("e", "expand(True)", "open every row", show=False),
        Binding("c", "expand(False)", "close every row", show=False),
        Binding("right_square_bracket", "row_event(1)", "next event on row", key_display="]"),
        Binding("left_square_bracket", "row_event(-1)", "previous event on row", key_display="[", show=False),
        Binding("full_stop", "step(1)", "step one event", key_display="."),
        Binding("comma", "step(-1)", "step back one event", key_display=",", show=False),
        Binding("N", "anomaly(-1)", "previous anomaly", key_display="N", show=False),
        Binding("m", "marker(1)", "next step (marker)", show=False),
        Binding("M", "marker(-1)", "previous step (marker)", key_display="M", show=False),
        Binding("greater_than_sign", "speed(1)", "faster", key_display=">", show=False),
        Binding("less_than_sign", "speed(-1)", "slower", key_display="<", show=False),
        Binding("s", "search", "search event text", show=False),
        Binding("S", "search_again(1)", "next search match", key_display="S", show=False),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("t", "toggle_theme", "light / dark", show=False),
    ]

    def __init__(self, index: RecordingIndex, *, live: LiveSource | None = None, layout: str | Layout | None = None,
                 source_name: str = "") -> None:
        gc.freeze()  # the index's objects live as long as the app: keep the collector from rescanning them
        super().__init__()
        self.index = index
        self.live = live
        self.layout = layout if isinstance(layout, Layout) else load_layout(layout or default_layout(index))
        self.source_name = source_name
        self.spans = Spans(index)
        sync = index.n <= SYNC_MODEL
        self._bars = self.spans if sync else Spans(index)  # a big one's are fed in the model's worker, shown whole
        # Bars come from the model's own rows when it has them all still to replay (else they are decoded apart).
        # A big recording's first screen needs the state at the cursor (the start): the rest is modelled behind it.
        index.run_model(observe=self._bars.feed if index.modelled_chunks == 0 else None,
                        through_ns=None if sync else index.start_ns)
        if sync:
            self.spans.update()
        self.cells = CellModel(index, self.spans)
        self.rows_all: list[TrackRow] = build_rows(index, self.spans)
        self.expanded: set[tuple[object, ...]] = set()
        self._expand_default()
        self.filter: Filter = parse_filter(self.layout.filter)
        self.cells.reset(self.filter.event_kinds)
        self.window = Window.whole(index.start_ns, index.end_ns) if index.n else Window(0, 1_000_000_000, 0, 0)
        self.cursor = index.start_ns
        self.rows: list[TrackRow] = []
        self.selected = 0
        self.selected_event: int | None = None
        self._anomaly: Anomaly | None = None  # the one shown: findings the model adds later may sort before it
        self.markers = marker_indices(index)
        self._marker_ts = [int(index.ts[i]) for i in self.markers]
        self.speed = default_speed(index.end_ns - index.start_ns)
        self.playing = False
        self.following = live is not None
        self._last_tick = 0.0
        self._top = 0
        self.needle = ""  # the last search
        self.frame_count = 0  # full refreshes done, for the benchmark and tests

    @property
    def current_anomaly(self) -> int | None:
        """The position in index.anomalies of the anomaly shown (it moves as the model finds earlier ones)."""
        a = self._anomaly
        if a is None:
            return None
        found = self.index.anomalies
        i = bisect.bisect_left(self.index.anomaly_times, a.ts_ns)
        while found[i] is not a:
            i += 1
        return i

    @current_anomaly.setter
    def current_anomaly(self, n: int | None) -> None:
        self._anomaly = None if n is None else self.index.anomalies[n]

    # -- composition ------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        for r in self.layout.rows:
            with Horizontal(classes="layout-row") as row:
                row.styles.height = r.height
                for spec in r.panels:
                    widget = (Timeline(self.cells, self.layout.label_width, id="timeline")
                              if spec.panel == "timeline" else _PANELS[spec.panel](id=spec.panel))
                    widget.styles.width = spec.width
                    yield widget
        yield Input(placeholder=FILTER_HELP, id="filter")
        yield Input(placeholder="search: text in an event's line (a PASID, an address, IOMMU_HWPT_ALLOC, a comm)",
                    id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-light" if self.layout.theme == "light" else "textual-dark"
        self.sub_title = self._subtitle()
        self._apply_filter(self.filter)
        if self.spans.done < self.index.n:
            self.call_after_refresh(self._run_model)  # once the first screen is up
            self._progress = self.set_interval(PROGRESS_S, self._show_progress)
        if self.live is not None:
            self._poll_live()
        self.set_interval(TICK_S, self._tick)
        self.query_one(Timeline).focus()

    def _subtitle(self) -> str:
        h = self.index.header
        what = h.title or self.source_name or h.source
        return line(f"{what} · {self.index.n:,} events · layout {self.layout.name}")  # a title is the input's

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.description:
                action = b.action
                yield SystemCommand(b.description.capitalize(), f"key: {b.key_display or b.key}",
                                    lambda a=action: self.run_action(a))

    # -- state pushed down ------------------------------------------------------------------------------------
    def _keep(self) -> np.ndarray | None:
        return self.cells.keep

    def _expand_default(self) -> None:
        mode = self.layout.expand
        for row in self.rows_all:
            is_alloc = row.key == (ALLOCATOR,)
            if mode == "all" or (mode == "devices" and not is_alloc) or (mode == "allocator" and is_alloc):
                self.expanded.add(row.key)

    def _rebuild_rows(self) -> None:
        key = self.rows[self.selected].key if self.rows else None
        self.rows = visible_rows(self.rows_all, self.expanded, self.filter, self.index, self.spans,
                                 self.cells.tracks_with_kinds(self.filter.kinds))
        keys = [r.key for r in self.rows]
        self.selected = keys.index(key) if key in keys else min(self.selected, max(len(self.rows) - 1, 0))

    @property
    def row(self) -> TrackRow | None:
        return self.rows[self.selected] if self.rows else None

    def refresh_view(self, *, reselect: bool = True) -> None:
        """Push the cursor, window and rows to every panel."""
        row = self.row
        if reselect:
            self.selected_event = event_at(self.index, row.tracks, self.cursor, self._keep()) if row else None
        timeline = self.query_one(Timeline)
        view = View(self.window, self.cursor, self.rows, self.expanded, self.selected, self._top, self._status())
        timeline.show(view)
        self._top = view.top
        for panel in self.query(Panel):
            self._fill(panel)
        self.frame_count += 1

    def _fill(self, panel: Panel) -> None:
        """Refill a panel when what it depends on changed: re-laying out unchanged text would cost more than the
        whole timeline frame."""
        key: tuple[object, ...]
        if isinstance(panel, AllocatorPanel):
            known = self.index.covers(self.cursor)
            key = (self.cursor, self.index.n, None if known else self.index.modelled)  # (the progress it shows)
        elif isinstance(panel, EventPanel):
            i = self.selected_event
            progress = None if i is None or self.index.covers(int(self.index.ts[i])) else self.index.modelled
            key = (i, self._anomaly, self.row.key if self.row else None, self.index.n, progress,
                   len(self.index.anomalies))
        elif isinstance(panel, AnomalyPanel):
            found = len(self.index.anomalies)
            key = (self._anomaly, found, self.index.model_done,
                   found and bisect.bisect_right(self.index.anomaly_times, self.cursor))
        else:
            key = (bisect.bisect_right(self._marker_ts, self.cursor),)
        if key == panel.shown:
            return
        panel.shown = key
        if isinstance(panel, AllocatorPanel):
            panel.show_state(self.index, self.index.state_at(self.cursor) if known else None, self.cursor)
        elif isinstance(panel, EventPanel):
            panel.show_event(self.index, self.selected_event, self.row.label if self.row else "this row",
                             self.current_anomaly)
        elif isinstance(panel, AnomalyPanel):
            panel.show_anomalies(self.index, self.cursor, self.current_anomaly)
        elif isinstance(panel, LessonPanel):
            panel.show_lesson(self.index, self.markers, self.cursor)

    def _status(self) -> str:
        row = self.row
        found = len(self.index.anomalies)
        modelling = not self.index.model_done
        bits = [f"model {self.index.modelled / self.index.n:.0%}"] if modelling else []
        if found:
            bits.append(f"{found:,} anomal{'y' if found == 1 else 'ies'}{' so far' if modelling else ''} · n jumps")
        bits.append(f"span {fmt_ns(self.window.span)}")
        if row is not None:
            timeline = self.query_one(Timeline)
            n = timeline.cell_count
            cell = self.window.cell_of(self.cursor, n)
            if cell is not None:
                edges = self.window.edges(n)
                c = self.cells.row_cells(row, edges[cell:cell + 2])
                bits.append(f"{row.label}: {int(c.counts[0]):,} event(s) in the cursor's cell")
        if self.filter.active:
            bits.append(f"filter: {self.filter.text}")
        if self.playing:
            speed = SPEEDS[self.speed]
            bits.append(f"▶ {'max' if speed == float('inf') else f'{speed:g}x'}")
        if self.live is not None:
            bits.append(self.live.status() + (" · following" if self.following else ""))
        if self.spans.done < self.index.n and not modelling:
            bits.append("computing bars…")
        return " · ".join(bits)

    # -- moving -----------------------------------------------------------------------------------------------
    def _move_to(self, t: int, *, follow: bool = False) -> None:
        """Move the cursor; n and N then count from here, not from the anomaly last jumped to."""
        self.cursor = t
        self.current_anomaly = None
        self.following = follow and self.live is not None
        self.window.show(t)

    def action_cursor(self, cells: int) -> None:
        n = self.query_one(Timeline).cell_count
        self._move_to(self.cursor + cells * max(self.window.span // n, 1))
        self.refresh_view()

    def action_pan(self, fraction: float) -> None:
        self.window.pan(fraction)
        self.refresh_view(reselect=False)

    def action_zoom(self, factor: float) -> None:
        self.window.zoom(factor, self.cursor)
        self.refresh_view(reselect=False)

    def action_fit(self) -> None:
        self.window = Window.whole(self.index.start_ns, self.index.end_ns)
        self.refresh_view(reselect=False)

    def action_jump(self, end: int) -> None:
        self._move_to(self.index.end_ns if end else self.index.start_ns, follow=bool(end))
        self.refresh_view()

    def action_row(self, delta: int) -> None:
        if self.rows:
            self.selected = min(max(self.selected + delta, 0), len(self.rows) - 1)
            self.refresh_view()

    def action_toggle_row(self) -> None:
        row = self.row
        if row is None:
            return
        # a device or the allocator row without events has no rows to open: Enter on it does nothing
        group = row if row.is_group else next((r for r in self.rows_all if row in r.children), None)
        if group is None or not group.children:
            return
        self.expanded.symmetric_difference_update({group.key})
        self._rebuild_rows()
        self.selected = [r.key for r in self.rows].index(group.key) if group.key not in self.expanded or row is group \
            else self.selected
        self.refresh_view()

    def action_expand(self, on: bool) -> None:
        self.expanded = {r.key for r in self.rows_all} if on else set()
        self._rebuild_rows()
        self.refresh_view()

    def action_row_event(self, delta: int) -> None:
        row = self.row
        if row is None:
            return
        i = step_on_tracks(self.index, row.tracks, self.selected_event, self.cursor, delta > 0, self._keep())
        if i is None:
            self.notify("no more events on this row", timeout=2)
            return
        self._select_event(i, keep_row=True)

    def action_step(self, delta: int) -> None:
        if not self.index.n:
            return
        current = self.selected_event if self.selected_event is not None else self.index.index_at(self.cursor) - 1
        i = step_global(self.index, current, delta > 0, self._visible_tracks(), self._keep())
        if i is None:
            self.playing = False
            self.notify("no more events", timeout=2)
            return
        self._select_event(i, keep_row=False)

    def _visible_tracks(self) -> np.ndarray:
        visible = np.zeros(max(len(self.index.tracks), 1), dtype=bool)
        for r in self.rows:
            visible[r.tracks] = True
        return visible

    def _select_event(self, i: int, *, keep_row: bool) -> None:
        """Put the cursor on event `i` and select its row (opening its device if needed)."""
        self._move_to(int(self.index.ts[i]))
        if not keep_row:
            self._select_track(int(self.index.track_of[i]))
        self.refresh_view(reselect=False)
        self.selected_event = i
        for panel in self.query(EventPanel):
            self._fill(panel)

    def _select_track(self, tid: int) -> None:
        for r in self.rows_all:
            for c in r.children:
                if tid in c.tracks:
                    if r.key not in self.expanded and self._row_shown(r):
                        self.expanded.add(r.key)
                        self._rebuild_rows()
                    keys = [x.key for x in self.rows]
                    for k in (c.key, r.key):
                        if k in keys:
                            self.selected = keys.index(k)
                            return

    def _row_shown(self, row: TrackRow) -> bool:
        return any(r.key == row.key for r in self.rows)

    def action_anomaly(self, delta: int) -> None:
        found = self.index.anomalies
        n = next_anomaly(found, self.index.anomaly_times, self.current_anomaly, self.cursor, delta > 0)
        if n is None:
            if not self.index.model_done:
                self.notify(f"no {'more ' if found else ''}anomalies found yet: {model_progress(self.index)}",
                            timeout=3)
            else:
                self.notify("no more anomalies" if found else "no anomalies in this recording", timeout=2)
            return
        self._show_anomaly(n)

    def _show_anomaly(self, n: int) -> None:
        """Put the cursor on anomaly `n` and its row; the event panel explains it with its evidence event (the
        latest at or before it, even when that sits on another row)."""
        a = self.index.anomalies[n]
        ev = evidence_shown(self.index, a)
        self._move_to(a.ts_ns)
        self.current_anomaly = n
        if not self._select_pair(a.device, a.pasid) and ev is not None:
            self._select_track(int(self.index.track_of[ev]))  # no row of its own: the row of its evidence
        self.selected_event = ev
        self.refresh_view(reselect=False)

    def _select_pair(self, device: str | None, pasid: int | None) -> bool:
        for tid, t in enumerate(self.index.tracks):
            if t.device == device and t.pasid == pasid:
                self._select_track(tid)
                return True
        return False

    def action_marker(self, delta: int) -> None:
        kid = self.index.kind_id(str(Kind.MARKER))
        if not self.markers or kid is None:
            self.notify("this recording has no teaching markers", timeout=2)
            return
        only = np.zeros(256, dtype=bool)
        only[kid] = True
        current = self.selected_event if self.selected_event is not None else self.index.index_at(self.cursor) - 1
        target = step_global(self.index, current, delta > 0, np.ones(len(self.index.tracks), dtype=bool), only)
        if target is None:
            self.notify("no more steps", timeout=2)
            return
        self._select_event(target, keep_row=False)

    # -- replay -----------------------------------------------------------------------------------------------
    def action_play(self) -> None:
        self.playing = not self.playing
        self._last_tick = time.monotonic()
        if self.playing and self.cursor >= self.index.end_ns:
            self._move_to(self.index.start_ns)
        self.refresh_view(reselect=False)

    def action_speed(self, delta: int) -> None:
        self.speed = min(max(self.speed + delta, 0), len(SPEEDS) - 1)
        speed = SPEEDS[self.speed]
        self.notify(f"speed {'as fast as possible' if speed == float('inf') else f'{speed:g}x'}", timeout=1.5)
        self.refresh_view(reselect=False)

    def _show_progress(self) -> None:
        """While the model runs: its progress, and what it has found so far (kind:anomaly keeps those rows)."""
        if "anomaly" in self.filter.kinds:
            self._rebuild_rows()
        self.refresh_view(reselect=False)

    def _tick(self) -> None:
        """Replay: move the cursor by the time that passed times the speed. As fast as possible means every frame
        lands on the next event, or moves at MAX_PACE when that goes further, so it is never slower than 1000x."""
        if not self.playing:
            return
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        speed = SPEEDS[self.speed]
        target = self.cursor + int(dt * 1e9 * min(speed, MAX_PACE))
        if speed == float("inf") and self.index.n:
            nxt = step_global(self.index, self.index.index_at(self.cursor) - 1, True, self._visible_tracks(),
                              self._keep())
            if nxt is not None and int(self.index.ts[nxt]) > target:
                self._select_event(nxt, keep_row=False)
                return
        if target >= self.index.end_ns:
            target, self.playing = self.index.end_ns, False
        self._move_to(target)
        self.refresh_view()

    # -- filter, theme, help ----------------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.filter.text
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        try:
            flt = parse_filter(event.value)
        except FilterSyntaxError as e:
            self.notify(str(e), severity="error", timeout=6, markup=False)
            return
        event.input.remove_class("shown")
        self._apply_filter(flt)
        self.query_one(Timeline).focus()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("shown")
        self.query_one(Timeline).focus()
        self.needle = event.value.strip()
        self.action_search_again(1)

    def action_search_again(self, delta: int) -> None:
        if not self.needle:
            self.action_search()
            return
        current = self.selected_event if self.selected_event is not None else self.index.index_at(self.cursor) - 1
        self._find(current, delta > 0, self.needle, self._visible_tracks(), self._keep())

    @work(thread=True, exclusive=True, group="search")
    def _find(self, current: int, forward: bool, needle: str, visible: np.ndarray, keep: np.ndarray | None) -> None:
        found = find_text(self.index, current, forward, needle, visible, keep)
        self.call_from_thread(self._found, found, needle)

    def _found(self, i: int | None, needle: str) -> None:
        if i is None:
            self.notify(f"no more events matching '{needle}'", severity="warning", timeout=3, markup=False)
            return
        self._select_event(i, keep_row=False)

    def action_clear_filter(self) -> None:
        self.query_one("#search", Input).remove_class("shown")
        box = self.query_one("#filter", Input)
        box.remove_class("shown")
        if self.filter.active:
            self._apply_filter(Filter())
        self.query_one(Timeline).focus()

    def _apply_filter(self, flt: Filter) -> None:
        self.filter = flt
        self.cells.reset(flt.event_kinds)
        if flt.active:
            self.expanded |= {r.key for r in self.rows_all}
        self._rebuild_rows()
        if flt.active and not self.rows:
            later = "" if self.spans.done >= self.index.n else \
                " yet: anomalies and who held each PASID are known once the model has replayed the recording"
            self.notify(f"nothing matches '{flt.text}'{later}", severity="warning", timeout=4, markup=False)
        self.refresh_view()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def watch_theme(self, theme: str) -> None:
        """Redraw in the new theme's ink: the timeline, and every panel refilled."""
        timeline = self.query(Timeline)
        if timeline:
            timeline.first().dark = self.current_theme.dark
            timeline.first().invalidate()
        for panel in self.query(Panel):
            panel.shown = None
            self._fill(panel)

    def action_help(self) -> None:
        self.push_screen(HelpScreen([b for b in self.BINDINGS if isinstance(b, Binding)]))

    # -- messages from the timeline ---------------------------------------------------------------------------
    @on(Timeline.Clicked)
    def _clicked(self, message: Timeline.Clicked) -> None:
        """Select the clicked row, and what its clicked cell shows: the anomaly, else the event whose mark is
        drawn there, else the cell's start time."""
        if message.row is not None:
            self.selected = message.row
        row = self.row
        if message.cell is None or row is None:
            self.refresh_view()
            return
        edges = self.window.edges(self.query_one(Timeline).cell_count)
        t0, t1 = int(edges[message.cell]), int(edges[message.cell + 1])
        anomaly = self.cells.anomaly_at(row, t0, t1)
        event = self.cells.telling_event(row, t0, t1) if anomaly is None else None
        if anomaly is not None:
            self._show_anomaly(anomaly)
        elif event is not None:
            self._select_event(event, keep_row=True)
        else:
            self._move_to(t0)
            self.refresh_view()

    @on(Timeline.Zoom)
    def _zoomed(self, message: Timeline.Zoom) -> None:
        self.window.zoom(message.factor, message.around_ns)
        self.refresh_view(reselect=False)

    # -- background work --------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="model")
    def _run_model(self) -> None:
        """The model over a recording opened from its columns alone, and the bars from the same rows (or, for an
        index modelled already, the bars alone). The bars are built aside and handed over whole: the timeline
        never reads them half made."""
        worker = get_current_worker()
        spans = self._bars
        observe = spans.feed if spans.done == self.index.modelled else None  # fed from the first chunk on
        if self.index.run_model(observe=observe, stop=lambda: worker.is_cancelled):
            spans.update()  # what the model's rows did not bring (an index it had already run over)
            if not worker.is_cancelled and self.is_running:
                self.call_from_thread(self._model_ready, spans)

    def _model_ready(self, spans: Spans) -> None:
        self._progress.stop()
        gc.freeze()
        self.spans = self.cells.spans = spans
        self.cells.reset()
        self.rows_all = build_rows(self.index, spans)
        self._rebuild_rows()
        self.refresh_view(reselect=False)

    @work(thread=True, exclusive=True, group="live")
    def _poll_live(self) -> None:
        assert self.live is not None
        worker = get_current_worker()
        while not worker.is_cancelled:
            rows = self.live.poll(0.2)
            if worker.is_cancelled or not self.is_running:
                break  # the app is closing: the source's owner writes what is still in flight
            self.call_from_thread(self._live_rows, rows)

    def _live_rows(self, rows: list[Row]) -> None:
        if rows:
            ntracks = len(self.index.tracks)
            self.index.add_rows(rows)
            self.index.finish()
            self.spans.update()
            self.cells.reset()
            if len(self.index.tracks) != ntracks:
                self.rows_all = build_rows(self.index, self.spans)
                self._expand_default()
                self._rebuild_rows()
            self.window.extend(self.index.end_ns)
            if self.window.lo == 0 and self.index.n == len(rows):
                self.window = Window.whole(self.index.start_ns, self.index.end_ns)
                self.cursor = self.index.start_ns
        if self.following and self.index.n:
            self._move_to(self.index.end_ns, follow=True)
        self.sub_title = self._subtitle()
        self.refresh_view()


def default_speed(duration_ns: int) -> int:
    """The fastest speed (an index into SPEEDS) that still takes PLAY_S or more for the whole recording."""
    fits = [i for i, s in enumerate(SPEEDS[:-1]) if duration_ns / 1e9 / s >= PLAY_S]
    return fits[-1] if fits else 0


COMPACT_BELOW = (120, 36)  # a terminal narrower or shorter than this gets the compact layout by default


def default_layout(index: RecordingIndex, terminal: tuple[int, int] | None = None) -> str:
    """Compact on a small terminal; else teaching for recordings with lesson markers, debug for the rest."""
    if terminal is not None and (terminal[0] < COMPACT_BELOW[0] or terminal[1] < COMPACT_BELOW[1]):
        return "compact"
    return "teaching" if marker_indices(index) else "debug"


def run_explorer(app: ExplorerApp, *, headless: bool = False) -> None:
    """Run the UI (`headless`: without a terminal); ExplorerCrashed when it stopped on an error (Textual has
    printed its traceback), so that no crash exits 0."""
    app.run(headless=headless)
    if app.return_code:
        raise ExplorerCrashed(f"the explorer exited with {app.return_code}")
