"""The explorer app: composes the layout's panels, binds keys to the session's moves, and runs the workers (the
model behind a big recording's first screen, search, live polling).

What is shown lives in a plain `Session` (tui/session.py), which the moves change; after each, the app pushes
the session to the timeline and lets each panel refill itself if what it depends on changed (tui/panel.py).
The timeline's clicks and wheel turns come up as messages.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from ..errors import ExplorerCrashed
from ..events import Row
from ..index import RecordingIndex
from ..live_source import LiveSource
from ..recording.reader import ChunkHead
from ..text import line
from .cells import CellModel
from .filters import FILTER_HELP, Filter, FilterSyntaxError, parse_filter
from .help_screen import HelpScreen
from .navigation import find_text, marker_indices
from .panel import Panel
from .panels import PANELS
from .plain_input import PlainInput
from .screen_layout import Layout, load_layout
from .session import Session
from .spans import Spans
from .timeline import Timeline, View
from .timescale import Window
from .tracks import build_rows

SYNC_MODEL = 200_000  # up to this many events the model and bars are run before the first frame, above in a worker
INDEX_BATCH = 16  # file chunks the worker reads between two hand-overs to the app when indexing behind the screen
TICK_S = 1 / 30
PROGRESS_S = 0.5  # while the model runs in its worker, the screen shows how far it got this often
INDEXING_REDRAW = 4  # while indexing behind the screen, every this many progress ticks (a frame of a growing
# big recording costs the thread that also takes in what the worker read)


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
        # Perfetto's keys, for hands that know them (`s` searched before: search moved to `f`, see help_screen)
        Binding("w", "zoom(0.5)", "zoom in (Perfetto)", show=False),
        Binding("s", "zoom(2)", "zoom out (Perfetto)", show=False),
        Binding("a", "pan(-0.25)", "pan earlier (Perfetto)", show=False),
        Binding("d", "pan(0.25)", "pan later (Perfetto)", show=False),
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
        Binding("m", "marker(1)", "next teaching step", show=False),
        Binding("M", "marker(-1)", "previous teaching step", key_display="M", show=False),
        Binding("greater_than_sign", "speed(1)", "faster", key_display=">", show=False),
        Binding("less_than_sign", "speed(-1)", "slower", key_display="<", show=False),
        Binding("f", "search", "search event text", show=False),
        Binding("S", "search_again(1)", "next search match", key_display="S", show=False),
        Binding("A", "set_mark('a')", "marker A at the cursor", key_display="A", show=False),
        Binding("B", "set_mark('b')", "marker B at the cursor", key_display="B", show=False),
        Binding("x", "clear_marks", "clear markers A and B", show=False),
        Binding("escape", "clear_filter", "stop a running search, else clear filter", show=False),
        Binding("t", "toggle_theme", "light / dark", show=False),
        Binding("k", "stop_indexing", "stop indexing the rest of a big recording", show=False),
    ]

    def __init__(self, index: RecordingIndex, *, live: LiveSource | None = None, layout: str | Layout | None = None,
                 source_name: str = "") -> None:
        gc.freeze()  # the index's objects live as long as the app: keep the collector from rescanning them
        super().__init__()
        self.index = index
        self.live = live
        self.layout = layout if isinstance(layout, Layout) else load_layout(layout or default_layout(index))
        self.source_name = source_name
        spans = Spans(index)
        sync = index.n <= SYNC_MODEL and index.indexed_all
        self._bars = spans if sync else Spans(index)  # a big one's are fed in the model's worker, shown whole
        # Bars come from the model's own rows when it has them all still to replay (else they are decoded apart).
        # A big recording's first screen needs the state at the cursor (the start): the rest is modelled behind it.
        index.run_model(observe=self._bars.feed if index.modelled_chunks == 0 else None,
                        through_ns=None if sync else index.start_ns)
        if sync:
            spans.update()
        self.session = Session(index, spans, CellModel(index, spans), expand=self.layout.expand, live=live is not None,
                               filter=parse_filter(self.layout.filter))
        self.session.intervals_ready = sync
        self._last_tick = 0.0
        self._top = 0
        self._stop_indexing = False  # `k`: the user stopped indexing the rest of a big recording
        self._ntracks = len(index.tracks)  # tracks when the rows were last built
        self._ticks = 0  # progress ticks so far
        self._searches = 0  # searches started: only the latest one's answer lands
        self._searching: str | None = None  # a running search's status
        self.frame_count = 0  # full refreshes done, for the benchmark and tests

    # -- composition ------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        for r in self.layout.rows:
            with Horizontal(classes="layout-row") as row:
                row.styles.height = r.height
                for spec in r.panels:
                    kind = PANELS[spec.panel]
                    widget = Timeline(self.session.cells, self.layout.label_width, id="timeline") \
                        if kind is Timeline else kind(id=spec.panel)
                    widget.styles.width = spec.width
                    yield widget
        yield PlainInput(placeholder=FILTER_HELP, id="filter")
        yield PlainInput(placeholder="search: text in an event's line (a PASID, an address, IOMMU_HWPT_ALLOC, a comm)",
                    id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-light" if self.layout.theme == "light" else "textual-dark"
        self.sub_title = self._subtitle()
        self._apply_filter(self.session.filter)
        if not self.index.indexed_all or self.session.spans.done < self.index.n:
            self.call_after_refresh(self._run_model)  # once the first screen is up
            self._progress = self.set_interval(PROGRESS_S, self._show_progress)
        if self.live is not None:
            self._poll_live()
        self.set_interval(TICK_S, self._tick)
        self.query_one(Timeline).focus()

    def _subtitle(self) -> str:
        h = self.index.header
        what = h.title or self.source_name or h.source
        idx = self.index
        events = f"{idx.n:,}" if idx.indexed_all else f"{idx.n:,} of {idx.file_events:,}"
        return line(f"{what} · {events} events · layout {self.layout.name}")  # a title is the input's

    def _source_status(self) -> str | None:
        """The live source's line, or how far indexing a big recording has got (and how to stop it)."""
        if self.live is not None:
            return self.live.status()
        idx = self.index
        if idx.indexed_all:
            return None
        done = f"{idx.n / max(idx.file_events, 1):.0%} of {idx.file_events:,} events"
        return f"indexing stopped at {done}" if self._stop_indexing else f"indexing {done} · k stops"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if isinstance(b, Binding) and b.description:
                action = b.action
                yield SystemCommand(b.description.capitalize(), f"key: {b.key_display or b.key}",
                                    lambda a=action: self.run_action(a))

    # -- the session pushed down ------------------------------------------------------------------------------
    def refresh_view(self, *, reselect: bool = True) -> None:
        """Push the session to the timeline, and to every panel whose inputs changed."""
        s = self.session
        if reselect:
            s.reselect()
        timeline = self.query_one(Timeline)
        status = s.status(timeline.cell_count, self._source_status())
        view = View(s.window, s.cursor, s.rows, s.expanded, s.selected, self._top,
                    status if self._searching is None else f"{line(self._searching)} · {status}",
                    (s.mark_a, s.mark_b))
        timeline.show(view)
        self._top = view.top
        for panel in self.query(Panel):
            panel.refresh_from(s)
        self.frame_count += 1

    def _say(self, message: str | None, timeout: float = 2, severity: SeverityLevel = "information") -> None:
        """Every notification goes through here: it may quote the input (a row's label, a filter a user pasted),
        so its control characters are shown escaped and markup in it stays as written."""
        if message is not None:
            self.notify(line(message), severity=severity, timeout=timeout, markup=False)

    # -- keys: the session's moves ----------------------------------------------------------------------------
    def action_cursor(self, cells: int) -> None:
        self.session.cursor_by(cells, self.query_one(Timeline).cell_count)
        self.refresh_view()

    def action_pan(self, fraction: float) -> None:
        self.session.window.pan(fraction)
        self.refresh_view(reselect=False)

    def action_zoom(self, factor: float) -> None:
        self.session.window.zoom(factor, self.session.cursor)
        self.refresh_view(reselect=False)

    def action_fit(self) -> None:
        self.session.fit()
        self.refresh_view(reselect=False)

    def action_jump(self, end: int) -> None:
        self.session.jump(bool(end))
        self.refresh_view()

    def action_row(self, delta: int) -> None:
        if self.session.rows:
            self.session.row_move(delta)
            self.refresh_view()

    def action_toggle_row(self) -> None:
        if self.session.row is not None:
            self.session.toggle_row()
            self.refresh_view()

    def action_expand(self, on: bool) -> None:
        self.session.expand_all(on)
        self.refresh_view()

    def action_row_event(self, delta: int) -> None:
        self._moved(self.session.row_event(delta))

    def action_step(self, delta: int) -> None:
        self._moved(self.session.step(delta))

    def action_anomaly(self, delta: int) -> None:
        self._moved(self.session.anomaly(delta), timeout=3)

    def action_marker(self, delta: int) -> None:
        self._moved(self.session.marker(delta))

    def action_set_mark(self, which: str) -> None:
        self.session.set_mark(which)
        self.refresh_view(reselect=False)

    def action_clear_marks(self) -> None:
        self._moved(self.session.clear_marks())

    def _moved(self, refused: str | None, timeout: float = 2) -> None:
        """After a move to an event or anomaly: show it, or say why there was none."""
        if refused is not None:
            self._say(refused, timeout)
        else:
            self.refresh_view(reselect=False)

    def select_event(self, i: int, *, keep_row: bool) -> None:
        self.session.select_event(i, keep_row=keep_row)
        self.refresh_view(reselect=False)

    # -- replay -----------------------------------------------------------------------------------------------
    def action_play(self) -> None:
        self.session.play()
        self._last_tick = time.monotonic()
        self.refresh_view(reselect=False)

    def action_speed(self, delta: int) -> None:
        self._say(self.session.change_speed(delta), timeout=1.5)
        self.refresh_view(reselect=False)

    def action_stop_indexing(self) -> None:
        """Stop indexing the rest of a big recording: what is indexed stays, and the model runs over it."""
        if self.index.indexed_all or self._stop_indexing:
            self._say("nothing is being indexed")
            return
        self._stop_indexing = True
        self.index.compact_columns()
        self._say(f"indexing stopped at {self.index.n:,} of {self.index.file_events:,} events; "
                  "the model runs over those", timeout=4)
        self.refresh_view(reselect=False)

    def _show_progress(self) -> None:
        """While indexing or the model runs: the progress, and what the model has found so far (kind:anomaly
        keeps those rows)."""
        self._ticks += 1
        if not self.index.indexed_all and not self._stop_indexing and self._ticks % INDEXING_REDRAW:
            return
        if "anomaly" in self.session.filter.kinds:
            self.session.rebuild_rows()
        self.sub_title = self._subtitle()
        self.refresh_view(reselect=False)

    def _tick(self) -> None:
        if not self.session.playing:
            return
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        if self.session.advance(dt):
            self.refresh_view(reselect=False)

    # -- filter, search, theme, help --------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.session.filter.text
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        try:
            flt = parse_filter(event.value)
        except FilterSyntaxError as e:
            self._say(str(e), 6, "error")
            return
        event.input.remove_class("shown")
        self._apply_filter(flt)
        self.query_one(Timeline).focus()

    def _apply_filter(self, flt: Filter) -> None:
        refused = self.session.apply_filter(flt)
        if refused is not None:
            self._say(refused, 4, "warning")  # it quotes the typed filter
        self.refresh_view()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("shown")
        self.query_one(Timeline).focus()
        self.session.needle = event.value.strip()
        self.action_search_again(1)

    def action_search_again(self, delta: int) -> None:
        s = self.session
        if not s.needle:
            self.action_search()
            return
        current = s.selected_event if s.selected_event is not None else self.index.index_at(s.cursor) - 1
        self._stop_search()
        self._searching = f"searching '{s.needle}' · esc stops"
        self.refresh_view(reselect=False)
        self._find(self._searches, current, delta > 0, s.needle, s.visible_tracks(), s.keep())

    def _stop_search(self) -> None:
        """A running search stops at its next block, and what it would have found never lands."""
        self._searches += 1
        self.workers.cancel_group(self, "search")
        self._searching = None

    @work(thread=True, exclusive=True, group="search")
    def _find(self, search: int, current: int, forward: bool, needle: str, visible: np.ndarray,
              keep: np.ndarray | None) -> None:
        """Search number `search` (a newer one, `esc` or leaving stops it), its progress in the status line."""
        worker = get_current_worker()
        span = max(self.index.n - 1 - current if forward else current + 1, 1)
        shown = time.monotonic()

        def going(reached: int) -> bool:
            nonlocal shown
            if worker.is_cancelled or not self.is_running:
                return False
            if time.monotonic() - shown >= PROGRESS_S:
                shown = time.monotonic()
                done = (reached - current if forward else current - reached) / span
                self.call_from_thread(self._search_progress, search, f"searching '{needle}' {done:.0%} · esc stops")
            return True

        found = find_text(self.index, current, forward, needle, visible, keep, going)
        if not worker.is_cancelled and self.is_running:
            self.call_from_thread(self._found, search, found, needle)

    def _search_progress(self, search: int, status: str) -> None:
        if search == self._searches:
            self._searching = status
            self.refresh_view(reselect=False)

    def _found(self, search: int, i: int | None, needle: str) -> None:
        if search != self._searches:
            return
        self._searching = None
        if i is None:
            self._say(f"no more events matching '{needle}'", 3, "warning")
            self.refresh_view(reselect=False)
            return
        self.select_event(i, keep_row=False)

    def action_clear_filter(self) -> None:
        if self._searching is not None:  # esc stops a running search first; the next one clears the filter
            self._stop_search()
            self._say("search stopped")
            self.refresh_view(reselect=False)
            return
        self.query_one("#search", Input).remove_class("shown")
        box = self.query_one("#filter", Input)
        box.remove_class("shown")
        if self.session.filter.active:
            self._apply_filter(Filter())
        self.query_one(Timeline).focus()

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
            panel.refresh_from(self.session)

    def action_help(self) -> None:
        self.push_screen(HelpScreen([b for b in self.BINDINGS if isinstance(b, Binding)]))

    # -- messages from the timeline ---------------------------------------------------------------------------
    @on(Timeline.Clicked)
    def _clicked(self, message: Timeline.Clicked) -> None:
        """Select the clicked row, and what its clicked cell shows: the anomaly, else the event whose mark is
        drawn there, else the cell's start time."""
        s = self.session
        if message.row is not None:
            s.selected = message.row
        row = s.row
        if message.cell is None or row is None:
            self.refresh_view()
            return
        edges = s.window.edges(self.query_one(Timeline).cell_count)
        t0, t1 = int(edges[message.cell]), int(edges[message.cell + 1])
        anomaly = s.cells.anomaly_at(row, t0, t1)
        event = s.cells.telling_event(row, t0, t1) if anomaly is None else None
        if anomaly is not None:
            s.show_anomaly(anomaly)
            self.refresh_view(reselect=False)
        elif event is not None:
            self.select_event(event, keep_row=True)
        else:
            s.move_to(t0)
            self.refresh_view()

    @on(Timeline.Zoom)
    def _zoomed(self, message: Timeline.Zoom) -> None:
        self.session.window.zoom(message.factor, message.around_ns)
        self.refresh_view(reselect=False)

    # -- background work --------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="model")
    def _run_model(self) -> None:
        """The rest of a big recording's index (read and decompressed here, handed to the app a few chunks at a
        time until done or stopped), then the model over it, and the bars from the same rows (or, for an index
        modelled already, the bars alone). The bars are built aside and handed over whole: the timeline never
        reads them half made."""
        worker = get_current_worker()
        index = self.index
        at = index.indexed_files
        while not index.indexed_all and not self._stop_indexing and not worker.is_cancelled and self.is_running:
            heads = index.read_heads(at, INDEX_BATCH)
            at += len(heads)
            self.call_from_thread(self._indexed, heads)
        spans = self._bars
        observe = spans.feed if spans.done == self.index.modelled else None  # fed from the first chunk on
        if self.index.run_model(observe=observe, stop=lambda: worker.is_cancelled):
            spans.update()  # what the model's rows did not bring (an index it had already run over)
            spans.prepare()
            index.intervals.by_event(-1)  # what each event opened or closed, looked up once here, not in a step
            if not worker.is_cancelled and self.is_running:
                self.call_from_thread(self._model_ready, spans)

    def _indexed(self, heads: list[tuple[int, ChunkHead | None]]) -> None:
        """Chunks read behind the first screen join the index; the view follows as a live one does."""
        self.index.add_heads(heads)
        if self._stop_indexing:  # the batch in hand when `k` was pressed: the last
            self.index.compact_columns()
        self._grew(len(heads))
        self.sub_title = self._subtitle()

    def _grew(self, added: int) -> None:
        """The index grew (indexing behind the screen, or live rows): new tracks become rows, and the window
        reaches the new end (a replay's window showing everything keeps showing everything)."""
        s, idx = self.session, self.index
        s.cells.reset()
        if len(idx.tracks) != self._ntracks:
            self._ntracks = len(idx.tracks)
            s.rows_all = build_rows(idx, s.spans)
            s.expand_default()
            s.rebuild_rows()
        fitted = s.window == Window.whole(s.window.lo, s.window.hi)
        s.window.extend(idx.end_ns)
        if idx.n == added:  # the first events
            s.window = Window.whole(idx.start_ns, idx.end_ns)
            s.cursor = idx.start_ns
        elif fitted and self.live is None:
            s.window = Window.whole(s.window.lo, idx.end_ns)

    def _model_ready(self, spans: Spans) -> None:
        self._progress.stop()
        gc.freeze()
        self.session.new_bars(spans)
        self.session.intervals_ready = True
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
        s = self.session
        if rows:
            self.index.add_rows(rows)
            self.index.finish()
            s.spans.update()
            self._grew(len(rows))
        if s.following and self.index.n:
            s.move_to(self.index.end_ns, follow=True)
        self.sub_title = self._subtitle()
        self.refresh_view()


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
