"""What the explorer shows, as a plain object: the cursor, the time window, the rows and the one selected, the
selected event and anomaly, the filter, the search, replay, the teaching markers and the A/B markers.

Every key's move is a method here that changes this state and returns what to tell the user (or None), so the
moves are unit-tested without a screen; the app (tui/app.py) only binds keys to them, runs workers and pushes
the result to its widgets. Nothing here imports Textual.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..events import Kind
from ..explain import model_progress
from ..index import RecordingIndex
from ..simulator import Anomaly, SimState
from ..text import line
from ..units import fmt_ns
from .cells import CellModel
from .filters import Filter
from .navigation import event_at, evidence_shown, marker_indices, next_anomaly, step_global, step_on_tracks
from .spans import Spans
from .timescale import Window
from .tracks import ALLOCATOR, TrackRow, build_rows, visible_rows

# Kernel events come microseconds apart, so replay offers slow motion well below 0.1x as well.
SPEEDS: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 1, 2, 5, 10, 100, 1000, float("inf"))
PLAY_S = 10.0  # the default speed replays the whole recording in about this long
MAX_PACE = 1000  # the speed as fast as possible never falls below
# states at recent times the session keeps: a frame asks for two, the cursor's and the event's (each is a whole
# state, about 120 MB at a million live PASIDs)
KEPT_STATES = 2


def default_speed(duration_ns: int) -> int:
    """The fastest speed (an index into SPEEDS) that still takes PLAY_S or more for the whole recording."""
    fits = [i for i, s in enumerate(SPEEDS[:-1]) if duration_ns / 1e9 / s >= PLAY_S]
    return fits[-1] if fits else 0


@dataclass(eq=False)
class Session:
    """The view of one index. `spans` and `cells` are the timeline's bars and marks (swapped in whole when a
    worker has built them); `expand` is the layout's default for which rows start open."""

    index: RecordingIndex
    spans: Spans
    cells: CellModel
    expand: str = "devices"
    live: bool = False
    filter: Filter = field(default_factory=Filter)
    rows_all: list[TrackRow] = field(default_factory=list, init=False)
    expanded: set[tuple[object, ...]] = field(default_factory=set, init=False)
    rows: list[TrackRow] = field(default_factory=list, init=False)  # the rows on screen: rows_all opened and filtered
    selected: int = field(default=0, init=False)  # which of `rows`
    selected_event: int | None = field(default=None, init=False)
    cursor: int = field(default=0, init=False)
    window: Window = field(default_factory=lambda: Window(0, 1_000_000_000, 0, 0), init=False)
    playing: bool = field(default=False, init=False)
    speed: int = field(default=0, init=False)  # an index into SPEEDS
    following: bool = field(default=False, init=False)  # live: the cursor stays on the newest event
    needle: str = field(default="", init=False)  # the last search
    markers: list[int] = field(default_factory=list, init=False)  # the teaching steps' event indices
    # the A and B markers' times (KernelShark's): set at the cursor, kept through every seek and zoom
    mark_a: int | None = field(default=None, init=False)
    mark_b: int | None = field(default=None, init=False)
    # the anomaly shown, kept by identity: findings the model adds later may sort before it
    _anomaly: Anomaly | None = field(default=None, init=False)
    # the states last sought, by time, for the index and model as they were then (see state_at)
    _states: dict[int, SimState] = field(default_factory=dict, init=False)
    _states_of: tuple[int, int] = field(default=(-1, -1), init=False)
    # whether the event panel may read what each event opened or closed: a big recording's are looked up in the
    # model's worker before it hands the bars over (seconds at 10M events), so that no step waits for that
    intervals_ready: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        index = self.index
        self.rows_all = build_rows(index, self.spans)
        self.expand_default()
        self.cells.reset(self.filter.event_kinds)
        if index.n:
            self.window = Window.whole(index.start_ns, index.end_ns)
        self.cursor = index.start_ns
        self.markers = marker_indices(index)
        self._marker_ts = [int(index.ts[i]) for i in self.markers]
        self.speed = default_speed(index.end_ns - index.start_ns)
        self.following = self.live
        self.rebuild_rows()

    # -- what is selected -------------------------------------------------------------------------------------
    @property
    def row(self) -> TrackRow | None:
        return self.rows[self.selected] if self.rows else None

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

    @property
    def shown_anomaly(self) -> Anomaly | None:
        return self._anomaly

    @property
    def step_at(self) -> int:
        """How many teaching steps lie at or before the cursor."""
        return bisect.bisect_right(self._marker_ts, self.cursor)

    def state_at(self, t: int) -> SimState:
        """The model's state at `t` (read, never changed), kept with the last few asked for while the index and
        the model stay as they are: the allocator panel asks for the cursor's and the event panel for the
        selected event's, and a seek costs more than the rest of a frame.
        Asked for a time after the selected event's, that one is sought first: the index's seek goes on forward
        from the last one, so the two cost one replay from their checkpoint, not two."""
        index = self.index
        if self._states_of != (index.n, index.modelled):
            self._states, self._states_of = {}, (index.n, index.modelled)
        got = self._states.get(t)
        if got is None:
            i = self.selected_event
            first = int(index.ts[i]) if i is not None else t
            if first < t and first not in self._states and index.covers(first):
                self._keep(first, index.state_at(first))
            got = self._keep(t, index.state_at(t))
        return got

    def _keep(self, t: int, state: SimState) -> SimState:
        if len(self._states) >= KEPT_STATES:
            del self._states[next(iter(self._states))]
        self._states[t] = state
        return state

    def keep(self) -> np.ndarray | None:
        """The kinds the filter keeps (None: all)."""
        return self.cells.keep

    def reselect(self) -> None:
        """Select the latest event at or before the cursor on the selected row."""
        row = self.row
        self.selected_event = event_at(self.index, row.tracks, self.cursor, self.keep()) if row else None

    def visible_tracks(self) -> np.ndarray:
        visible = np.zeros(max(len(self.index.tracks), 1), dtype=bool)
        for r in self.rows:
            visible[r.tracks] = True
        return visible

    # -- rows -------------------------------------------------------------------------------------------------
    def expand_default(self) -> None:
        for row in self.rows_all:
            is_alloc = row.key == (ALLOCATOR,)
            if self.expand == "all" or (self.expand == "devices" and not is_alloc) or \
                    (self.expand == "allocator" and is_alloc):
                self.expanded.add(row.key)

    def rebuild_rows(self) -> None:
        """The rows on screen again (after a filter, an opened row, new tracks), keeping the selected one."""
        key = self.rows[self.selected].key if self.rows else None
        self.rows = visible_rows(self.rows_all, self.expanded, self.filter, self.index, self.spans,
                                 self.cells.tracks_with_kinds(self.filter.kinds))
        keys = [r.key for r in self.rows]
        self.selected = keys.index(key) if key in keys else min(self.selected, max(len(self.rows) - 1, 0))

    def new_bars(self, spans: Spans) -> None:
        """The bars (and who held each PASID) a worker built, in place of those shown."""
        self.spans = self.cells.spans = spans
        self.cells.reset()
        self.rows_all = build_rows(self.index, spans)
        self.rebuild_rows()

    def row_move(self, delta: int) -> None:
        if self.rows:
            self.selected = min(max(self.selected + delta, 0), len(self.rows) - 1)

    def toggle_row(self) -> None:
        """Open or close the selected row's group (a child row closes its parent)."""
        row = self.row
        if row is None:
            return
        # a device or the allocator row without events has no rows to open: Enter on it does nothing
        group = row if row.is_group else next((r for r in self.rows_all if row in r.children), None)
        if group is None or not group.children:
            return
        self.expanded.symmetric_difference_update({group.key})
        self.rebuild_rows()
        if group.key not in self.expanded or row is group:
            self.selected = [r.key for r in self.rows].index(group.key)

    def expand_all(self, on: bool) -> None:
        self.expanded = {r.key for r in self.rows_all} if on else set()
        self.rebuild_rows()

    def apply_filter(self, flt: Filter) -> str | None:
        self.filter = flt
        self.cells.reset(flt.event_kinds)
        if flt.active:
            self.expanded |= {r.key for r in self.rows_all}
        self.rebuild_rows()
        if flt.active and not self.rows:
            later = "" if self.spans.done >= self.index.n else \
                " yet: anomalies and who held each PASID are known once the model has replayed the recording"
            return f"nothing matches '{flt.text}'{later}"
        return None

    # -- time -------------------------------------------------------------------------------------------------
    def move_to(self, t: int, *, follow: bool = False) -> None:
        """Move the cursor; n and N then count from here, not from the anomaly last jumped to."""
        self.cursor = t
        self._anomaly = None
        self.following = follow and self.live
        self.window.show(t)

    def cursor_by(self, cells: int, n_cells: int) -> None:
        """Move the cursor by `cells` of a timeline `n_cells` wide."""
        self.move_to(self.cursor + cells * max(self.window.span // max(n_cells, 1), 1))

    def fit(self) -> None:
        self.window = Window.whole(self.index.start_ns, self.index.end_ns)

    def jump(self, end: bool) -> None:
        self.move_to(self.index.end_ns if end else self.index.start_ns, follow=end)

    # -- A/B markers ------------------------------------------------------------------------------------------
    def set_mark(self, which: str) -> None:
        """Put marker A or B at the cursor."""
        if which == "a":
            self.mark_a = self.cursor
        else:
            self.mark_b = self.cursor

    def clear_marks(self) -> str | None:
        if self.mark_a is None and self.mark_b is None:
            return "no markers to clear: A and B set them at the cursor"
        self.mark_a = self.mark_b = None
        return None

    def measured_range(self) -> tuple[int, int, bool]:
        """The range the range panel counts, [t0, t1): from A to B inclusive when both are set (True), else the
        visible window (False)."""
        a, b = self.mark_a, self.mark_b
        if a is not None and b is not None:
            return min(a, b), max(a, b) + 1, True
        return self.window.t0, self.window.t1, False

    def marks_status(self) -> str | None:
        """The markers as the status line says them: the time between them, or where the one set is."""
        a, b = self.mark_a, self.mark_b
        if a is not None and b is not None:
            return f"A→B Δ {fmt_ns(b - a)}"
        if a is None and b is None:
            return None
        name, t = ("A", a) if a is not None else ("B", b)
        return f"{name} at +{fmt_ns(t - self.index.start_ns)}"  # type: ignore[operator]

    # -- events, anomalies, steps -----------------------------------------------------------------------------
    def select_event(self, i: int, *, keep_row: bool) -> None:
        """Put the cursor on event `i` and select its row (opening its device if needed)."""
        self.move_to(int(self.index.ts[i]))
        if not keep_row:
            self.select_track(int(self.index.track_of[i]))
        self.selected_event = i

    def select_track(self, tid: int) -> None:
        for r in self.rows_all:
            for c in r.children:
                if tid in c.tracks:
                    if r.key not in self.expanded and any(x.key == r.key for x in self.rows):
                        self.expanded.add(r.key)
                        self.rebuild_rows()
                    keys = [x.key for x in self.rows]
                    for k in (c.key, r.key):
                        if k in keys:
                            self.selected = keys.index(k)
                            return

    def row_event(self, delta: int) -> str | None:
        """The next (or previous) event on the selected row."""
        row = self.row
        if row is None:
            return None
        i = step_on_tracks(self.index, row.tracks, self.selected_event, self.cursor, delta > 0, self.keep())
        if i is None:
            return "no more events on this row"
        self.select_event(i, keep_row=True)
        return None

    def step(self, delta: int) -> str | None:
        """The next (or previous) event on any row on screen."""
        if not self.index.n:
            return None
        current = self.selected_event if self.selected_event is not None else self.index.index_at(self.cursor) - 1
        i = step_global(self.index, current, delta > 0, self.visible_tracks(), self.keep())
        if i is None:
            self.playing = False
            return "no more events"
        self.select_event(i, keep_row=False)
        return None

    def anomaly(self, delta: int) -> str | None:
        """The next (or previous) anomaly from the cursor, or from the one shown."""
        found = self.index.anomalies
        n = next_anomaly(found, self.index.anomaly_times, self.current_anomaly, self.cursor, delta > 0)
        if n is None:
            if not self.index.model_done:
                return f"no {'more ' if found else ''}anomalies found yet: {model_progress(self.index)}"
            return "no more anomalies" if found else "no anomalies in this recording"
        self.show_anomaly(n)
        return None

    def show_anomaly(self, n: int) -> None:
        """Put the cursor on anomaly `n` and its row; the event shown is its evidence (the latest at or before
        it, even when that sits on another row)."""
        a = self.index.anomalies[n]
        ev = evidence_shown(self.index, a)
        self.move_to(a.ts_ns)
        self.current_anomaly = n
        if not self._select_pair(a.device, a.pasid) and ev is not None:
            self.select_track(int(self.index.track_of[ev]))  # no row of its own: the row of its evidence
        self.selected_event = ev

    def _select_pair(self, device: str | None, pasid: int | None) -> bool:
        for tid, t in enumerate(self.index.tracks):
            if t.device == device and t.pasid == pasid:
                self.select_track(tid)
                return True
        return False

    def marker(self, delta: int) -> str | None:
        """The next (or previous) teaching step."""
        kid = self.index.kind_id(str(Kind.MARKER))
        if not self.markers or kid is None:
            return "this recording has no teaching markers"
        only = np.zeros(256, dtype=bool)
        only[kid] = True
        current = self.selected_event if self.selected_event is not None else self.index.index_at(self.cursor) - 1
        target = step_global(self.index, current, delta > 0, np.ones(len(self.index.tracks), dtype=bool), only)
        if target is None:
            return "no more steps"
        self.select_event(target, keep_row=False)
        return None

    # -- replay -----------------------------------------------------------------------------------------------
    def play(self) -> None:
        """Play or pause; playing from the end starts again."""
        self.playing = not self.playing
        if self.playing and self.cursor >= self.index.end_ns:
            self.move_to(self.index.start_ns)

    def change_speed(self, delta: int) -> str:
        self.speed = min(max(self.speed + delta, 0), len(SPEEDS) - 1)
        speed = SPEEDS[self.speed]
        return f"speed {'as fast as possible' if speed == float('inf') else f'{speed:g}x'}"

    def advance(self, dt_s: float) -> bool:
        """Replay `dt_s` seconds at the speed. As fast as possible, every call lands on the next event, or moves
        at MAX_PACE when that goes further, so it is never slower than 1000x. False when not playing."""
        if not self.playing:
            return False
        speed = SPEEDS[self.speed]
        target = self.cursor + int(dt_s * 1e9 * min(speed, MAX_PACE))
        if speed == float("inf") and self.index.n:
            nxt = step_global(self.index, self.index.index_at(self.cursor) - 1, True, self.visible_tracks(),
                              self.keep())
            if nxt is not None and int(self.index.ts[nxt]) > target:
                self.select_event(nxt, keep_row=False)
                return True
        if target >= self.index.end_ns:
            target, self.playing = self.index.end_ns, False
        self.move_to(target)
        self.reselect()
        return True

    # -- the status line --------------------------------------------------------------------------------------
    def status(self, n_cells: int, live_status: str | None = None) -> str:
        """The timeline's status line for a timeline `n_cells` wide."""
        row = self.row
        index = self.index
        found = len(index.anomalies)
        modelling = not index.model_done
        bits = [f"model {index.modelled / index.n:.0%}"] if modelling else []
        if found:
            bits.append(f"{found:,} anomal{'y' if found == 1 else 'ies'}{' so far' if modelling else ''} · n jumps")
        bits.append(f"span {fmt_ns(self.window.span)}")
        marks = self.marks_status()
        if marks is not None:
            bits.append(marks)
        cell = self.window.cell_of(self.cursor, n_cells) if row is not None else None
        if row is not None and cell is not None:
            edges = self.window.edges(n_cells)
            c = self.cells.row_cells(row, edges[cell:cell + 2])
            bits.append(f"{row.label}: {int(c.counts[0]):,} event(s) in the cursor's cell")
        if self.filter.active:
            bits.append(f"filter: {self.filter.text}")
        if self.playing:
            speed = SPEEDS[self.speed]
            bits.append(f"▶ {'max' if speed == float('inf') else f'{speed:g}x'}")
        if live_status is not None:
            bits.append(live_status + (" · following" if self.following else ""))
        if self.spans.done < index.n and not modelling:
            bits.append("computing bars…")
        return line(" · ".join(bits))  # it quotes a row's label and the filter as typed (or pasted)
