"""Measuring as in KernelShark and Perfetto, driven by Pilot: A/B markers and the time between them, the range
panel's counts against an independent count of the recording, page-request latency percentiles against a
reference worked out from the events a test wrote, and Perfetto's w/s/a/d beside the explorer's own keys."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from pathlib import Path
from weakref import WeakKeyDictionary

import pytest

from explorer import range_stats
from explorer.events import Kind, make
from explorer.loading import open_index
from explorer.recording import DeviceInfo, Header, Recording, write_events
from explorer.tui import range_panel
from explorer.tui.app import ExplorerApp
from explorer.tui.timeline import HEADER_LINES, Timeline
from explorer.units import fmt_ns
from explorer.workload import write_workload

from .conftest import drive, index_of, panel_text

D1, D2 = "0000:6a:01.0", "0000:6a:02.0"


def axis_marks(app: ExplorerApp) -> dict[str, int]:
    """Where the axis shows each of A, B and the cursor's ▼: letter -> cell."""
    timeline = app.query_one(Timeline)
    ticks = timeline.render_line(1).text[timeline.label_width + 1:]
    return {ch: cell for cell, ch in enumerate(ticks) if ch in "AB▼"}


def test_markers_a_and_b_show_the_time_between_them_and_stay_through_seeks_pans_and_zooms() -> None:
    index = index_of("04")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        s = app.session
        timeline = app.query_one(Timeline)
        await pilot.press("home", *["right"] * 5, "A")
        a = s.cursor
        await pilot.press(*["right"] * 30, "B")
        b = s.cursor
        await pilot.press("right")
        assert (s.mark_a, s.mark_b) == (a, b) and b > a
        assert f"A→B Δ {fmt_ns(b - a)}" in timeline.view.status
        n = timeline.cell_count
        assert axis_marks(app) == {"A": s.window.cell_of(a, n), "B": s.window.cell_of(b, n),
                                   "▼": s.window.cell_of(s.cursor, n)}
        # a marker is a line down each row where nothing else is drawn
        column = [timeline.render_line(HEADER_LINES + r).text[timeline.label_width + 1 + axis_marks(app)["A"]]
                  for r in range(len(s.rows))]
        assert "│" in column
        assert panel_text(app, "range").startswith(f"A–B +{fmt_ns(a - index.start_ns)} … "
                                                   f"+{fmt_ns(b - index.start_ns)} (Δ {fmt_ns(b - a)})")
        # seeks, zooms and pans (Perfetto's keys and the explorer's) move the view, never the markers
        for keys in (["end"], ["home"], ["w", "w"], ["d"], ["a", "a"], ["plus"], ["s"], ["minus"], ["0"]):
            await pilot.press(*keys)
            assert (s.mark_a, s.mark_b) == (a, b), keys
            w = s.window
            shown = {k: v for k, v in axis_marks(app).items() if k != "▼"}
            expected = {k: w.cell_of(t, n) for k, t in (("A", a), ("B", b))
                        if w.cell_of(t, n) is not None and w.cell_of(t, n) != w.cell_of(s.cursor, n)}
            assert shown == expected, keys
            assert f"Δ {fmt_ns(b - a)}" in timeline.view.status
        await pilot.press("x")
        assert (s.mark_a, s.mark_b) == (None, None) and "Δ" not in timeline.view.status
        assert set(axis_marks(app)) <= {"▼"}
        assert panel_text(app, "range").startswith("visible window ")
        await pilot.press("x")  # nothing left to clear: it says so
        assert any("no markers to clear" in str(m.message) for m in app._notifications)

    drive(app, body)


def test_perfettos_keys_zoom_and_pan_like_the_explorers_own() -> None:
    index = index_of("04")
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        s = app.session
        for ours, perfettos in (("plus", "w"), ("minus", "s"), ("shift+right", "d"), ("shift+left", "a")):
            await pilot.press("0", "end", "plus", "plus")  # zoomed in at the end: room to pan and zoom both ways
            before = (s.window.t0, s.window.t1)
            await pilot.press(ours)
            after = (s.window.t0, s.window.t1)
            assert after != before, ours
            await pilot.press("0", "end", "plus", "plus", perfettos)
            assert (s.window.t0, s.window.t1) == after, (ours, perfettos)
        await pilot.press("f")  # search moved from s to f
        assert app.focused is app.query_one("#search")

    drive(app, body)


def counted(text: str, start: str) -> dict[str, int]:
    """The `count  name` lines of the panel's section that begins after the line `start`."""
    lines = text.split("\n")
    found = {}
    for line in lines[lines.index(start) + 1:]:
        m = re.fullmatch(r"\s+([\d,]+)\s+(\S.*)", line)
        if not m:
            break
        found[m[2].strip()] = int(m[1].replace(",", ""))
    return found


def test_the_range_panel_counts_what_the_recording_holds_between_the_markers_or_in_the_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 20_000, seed=3, slow_every=300)
    rows = [(e.ts_ns, str(e.kind), e.device, e.pasid) for e in Recording(path).iter_events()]

    def expected(t0: int, t1: int) -> tuple[Counter[str], Counter[str]]:
        """An independent count, from the file: kinds, and faults per `device · PASID`."""
        inside = [r for r in rows if t0 <= r[0] < t1]
        faults = Counter(f"{d or 'allocator'}{'' if p is None else f' · PASID {p}'}"
                         for _, k, d, p in inside if k == Kind.FAULT)
        return Counter(k for _, k, _, _ in inside), faults

    app = ExplorerApp(open_index(path), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        s = app.session
        await pilot.press("home", "w", "w", *["right"] * 7, "full_stop", "A", *["right"] * 40, "full_stop", "B")
        a, b = s.mark_a, s.mark_b
        kinds, faults = expected(a, b + 1)  # both markers sit on events, and those are inside
        assert {a, b} <= {r[0] for r in rows} and 0 < sum(kinds.values()) < len(rows) and faults
        text = panel_text(app, "range")
        assert f"\n{sum(kinds.values()):,} event(s)\n" in text
        assert counted(text, f"{sum(kinds.values()):,} event(s)") == kinds
        assert counted(text, "faults per device · PASID") == faults
        await pilot.press("x", "d")  # no markers: the visible window, [t0, t1)
        kinds, faults = expected(s.window.t0, s.window.t1)
        text = panel_text(app, "range")
        assert counted(text, f"{sum(kinds.values()):,} event(s)") == kinds
        assert counted(text, "faults per device · PASID") == faults
        # a big recording is counted in a worker (held here until the test lets it go): the panel says it is
        # counting, the keys go on working meanwhile, and the count of the latest range arrives
        monkeypatch.setattr(range_panel, "SYNC_EVENTS", 0)
        # with counts kept every 1024 events, as a big recording keeps them every 65,536, and none made yet
        monkeypatch.setattr(range_stats, "BLOCK", 1024)
        for tables in ("_COUNTS", "_TABLES"):
            monkeypatch.setattr(range_stats, tables, WeakKeyDictionary())
        gate, count = threading.Event(), range_panel.range_stats

        def gated(*a):  # type: ignore[no-untyped-def]
            """A worker's count waits for the test; one on the app's own thread does not."""
            return (threading.current_thread() is threading.main_thread() or gate.wait(30)) and count(*a)

        monkeypatch.setattr(range_panel, "range_stats", gated)
        await pilot.press("0")
        panel = app.query_one("#range")
        assert panel.border_title == "range (counting…)"
        cursor = s.cursor
        await pilot.press("right", "w")
        assert s.cursor > cursor and panel.border_title == "range (counting…)"
        gate.set()
        for _ in range(100):
            await pilot.pause(0.05)
            if panel.border_title == "range":
                break
        kinds, _ = expected(s.window.t0, s.window.t1)
        assert counted(panel_text(app, "range"), f"{sum(kinds.values()):,} event(s)") == kinds
        # that count made the tables every later one reads: the next range is counted at once, with the key (a
        # worker's count would wait for the gate again)
        gate.clear()
        await pilot.press("w", "d")
        kinds, _ = expected(s.window.t0, s.window.t1)
        assert panel.border_title == "range"
        assert counted(panel_text(app, "range"), f"{sum(kinds.values()):,} event(s)") == kinds
        gate.set()

    drive(app, body)


def latency_recording(path: Path) -> tuple[list[int], list[int]]:
    """Two devices: D1 answers 100 page-request groups after 1..100 µs, in a shuffled order; D2 answers one
    after 7 µs, has one drained by a detach and leaves one unanswered. Returns D1's latencies in request order,
    and each group's request time."""
    latencies = [(i * 37) % 100 * 1_000 + 1_000 for i in range(100)]  # 1..100 µs, each once (37 is prime to 100)
    events = [make(Kind.PASID_ALLOC, 1_000, pasid=5, path="sva", owner="pid 1 (a)", mm=1),
              make(Kind.PASID_ATTACH, 2_000, device=D1, pasid=5, domain=7, domain_type="sva"),
              make(Kind.PASID_ATTACH, 3_000, device=D2, pasid=5, domain=7, domain_type="sva")]
    requests = []
    for i, lat in enumerate(latencies):
        t = 1_000_000 * (i + 1)
        requests.append(t)
        events += [make(Kind.PAGE_REQUEST, t, device=D1, pasid=5, prg=i, addr=0x1000, perm=1, last=True),
                   make(Kind.PAGE_RESPONSE, t + lat, device=D1, pasid=5, prg=i, code=0, by="kernel")]
    t = 200_000_000
    events += [make(Kind.PAGE_REQUEST, t, device=D2, pasid=5, prg=1, addr=0x2000, perm=1, last=True),
               make(Kind.PAGE_RESPONSE, t + 7_000, device=D2, pasid=5, prg=1, code=0, by="kernel"),
               make(Kind.PAGE_REQUEST, t + 100_000, device=D2, pasid=5, prg=2, addr=0x3000, perm=1, last=True),
               make(Kind.PASID_DETACH, t + 110_000, device=D2, pasid=5, domain=7, domain_type="sva"),
               make(Kind.PASID_ATTACH, t + 120_000, device=D2, pasid=5, domain=7, domain_type="sva"),
               make(Kind.PAGE_REQUEST, t + 130_000, device=D2, pasid=5, prg=3, addr=0x4000, perm=1, last=True),
               make(Kind.MARKER, t + 1_000_000, text="end")]
    write_events(path, Header(source="test", devices=[DeviceInfo(D1, pasid_width=20), DeviceInfo(D2, pasid_width=20)]),
                 events)
    return latencies, requests


def nearest_rank(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


def test_page_request_latency_percentiles_and_histogram_match_the_groups_written(tmp_path: Path) -> None:
    path = tmp_path / "latency.pasidrec"
    latencies, requests = latency_recording(path)
    index = open_index(path)
    app = ExplorerApp(index, layout="debug")

    def summary(text: str, device: str) -> str:
        return next(line for line in text.split("\n") if line.startswith(device + "  "))

    def histogram(text: str) -> dict[str, int]:
        return {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\s+(\S+–\S+|[<≥] \S+) █* *([\d,]+)$",
                                                                     text, re.M)}

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("home", "A", "end", "B")  # the whole recording, between the markers
        text = panel_text(app, "range")
        p50, p99 = nearest_rank(latencies, 50), nearest_rank(latencies, 99)
        assert (p50, p99, max(latencies)) == (50_000, 99_000, 100_000)  # the reference, by construction
        assert summary(text, D1) == (f"{D1}  100 answered · p50 {fmt_ns(p50)} · p99 {fmt_ns(p99)} · "
                                     f"max {fmt_ns(max(latencies))}")
        d1 = text[text.index(summary(text, D1)):text.index(summary(text, D2))]
        assert histogram(d1) == {"1µs–2µs": 1, "2µs–5µs": 3, "5µs–10µs": 5, "10µs–20µs": 10, "20µs–50µs": 30,
                                 "50µs–100µs": 50, "100µs–200µs": 1}
        assert summary(text, D2) == f"{D2}  1 answered · p50 7.0 µs · p99 7.0 µs · max 7.0 µs"
        assert "1 drained at a detach (answered by the kernel, no response seen) · 1 unanswered" in \
            text[text.index(summary(text, D2)):]
        # the first ten groups only: the range from the first request to the tenth group's response
        await pilot.press("x", "home")
        while app.session.cursor < requests[0]:
            await pilot.press("full_stop")
        await pilot.press("A")
        while app.session.cursor < requests[9] + latencies[9]:
            await pilot.press("full_stop")
        await pilot.press("B")
        text = panel_text(app, "range")
        first = latencies[:10]
        assert summary(text, D1) == (f"{D1}  10 answered · p50 {fmt_ns(nearest_rank(first, 50))} · "
                                     f"p99 {fmt_ns(nearest_rank(first, 99))} · max {fmt_ns(max(first))}")
        assert D2 not in text

    drive(app, body)


def test_live_rows_move_a_group_from_unanswered_to_answered_in_the_next_count() -> None:
    """Live, the model goes on: a count taken after each batch sees the groups as the model holds them then."""
    from explorer.index import RecordingIndex
    from explorer.range_stats import range_stats

    index = RecordingIndex(Header(source="test", devices=[DeviceInfo(D1, pasid_width=20)]))
    index.add_rows([e.to_row() for e in (
        make(Kind.PASID_ALLOC, 1_000, pasid=5, path="sva", owner="pid 1 (a)", mm=1),
        make(Kind.PASID_ATTACH, 2_000, device=D1, pasid=5, domain=7, domain_type="sva"),
        make(Kind.PAGE_REQUEST, 3_000, device=D1, pasid=5, prg=4, addr=0x1000, perm=1, last=True))])
    (d,) = range_stats(index, 0, 10_000).latency  # type: ignore[misc]
    assert (d.device, d.answered, d.unanswered) == (D1, 0, 1)
    index.add_rows([make(Kind.PAGE_RESPONSE, 8_000, device=D1, pasid=5, prg=4, code=0, by="kernel").to_row()])
    (d,) = range_stats(index, 0, 10_000).latency  # type: ignore[misc]
    assert (d.answered, d.unanswered, d.p50_ns, d.max_ns) == (1, 0, 5_000, 5_000)
    assert range_stats(index, 3_001, 10_000).latency == []  # the group opened before the range
