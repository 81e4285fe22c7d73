"""`live`: the explorer fed by a real capture on this kernel. A process's ioctls appear on the timeline as they
happen, the cursor follows the present until the user moves it, and what was shown is also recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.events import Kind
from explorer.index import RecordingIndex
from explorer.recording import Recording
from explorer.tui.app import ExplorerApp
from explorer.tui.panel import Panel
from probes.capture import Capture, CaptureOptions
from probes.recorder import RecordingTee

from .client import PLAN
from .conftest import Client

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("live_host")]


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the live view did not catch up in time"
        await pilot.pause(0.1)


def uapi_count(index: RecordingIndex, pid: int) -> int:
    kid = index.kind_id(str(Kind.UAPI))
    return sum(1 for i in range(index.n) if index.kinds[i] == kid and index.row(i)[5] == pid)


def test_live_view_grows_follows_the_present_and_records_what_it_shows(tmp_path: Path, clients) -> None:
    """(The capture follows the client alone: a host-wide one shared its ring with whatever else the host ran,
    and lost the client's calls when another test flooded it.)"""
    out = tmp_path / "live.pasidrec"
    client = Client("calls", "2")  # two rounds of the plan, each on its own go
    clients.append(client)
    source = RecordingTee(Capture(CaptureOptions(pid=client.pid)), out)
    app = ExplorerApp(RecordingIndex(source.header), live=source)

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.session.following
            client.go()
            await wait_for(pilot, lambda: uapi_count(app.index, client.pid) >= len(PLAN))
            await pilot.pause(0.3)
            # the process's calls are on screen, and the cursor sits at the newest event
            assert app.session.cursor == app.index.end_ns
            host = next(r for r in app.session.rows if r.label == "host-wide")
            assert host.tracks
            timeline = app.query_one("Timeline")
            assert "following" in timeline.view.status
            assert "events" in timeline.view.status  # the capture's own counter
            # moving the cursor stops following: new events extend the timeline, the cursor stays
            await pilot.press("home")
            held = app.session.cursor
            assert not app.session.following and held == app.index.start_ns
            n_before = app.index.n
            client.go()
            client.finish()
            await wait_for(pilot, lambda: uapi_count(app.index, client.pid) >= 2 * len(PLAN))
            assert app.index.n > n_before and app.session.cursor == held
            # stepping to the last event shows a decoded call of the second round in the event panel
            await pilot.press("end")
            assert app.session.following and app.session.cursor == app.index.end_ns
            await pilot.press("comma")
            panel = app.query_one("#event", Panel)
            assert "IOMMU_" in panel.text or "VFIO_" in panel.text or "mm_exit" in panel.text

    try:
        asyncio.run(scenario())
    finally:
        source.close()
    shown = app.index
    rec = Recording(out)
    assert rec.event_count >= shown.n  # everything shown was recorded (the close may add the last stragglers)
    recorded = {(r[0], r[1], r[5]) for c in range(len(rec.chunks)) for r in rec.chunk_rows(c)}
    assert all((r[0], r[1], r[5]) in recorded for r in (shown.row(i) for i in range(shown.n)))


def test_sigterm_closes_the_live_view_and_its_recording_cleanly(tmp_path: Path) -> None:
    from tui.test_terminal import Terminal  # the same real terminal as the explorer's end-to-end test

    out = tmp_path / "term.pasidrec"
    term = Terminal([sys.executable, "-m", "explorer.cli.main", "live", "-o", str(out)], 120, 36)
    try:
        term.wait_for("allocator", timeout=60)
        pid = int(subprocess.run(["pgrep", "-f", f"live -o {out}"], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
        os.kill(pid, signal.SIGTERM)
        assert "EXIT=0" in term.wait_for("EXIT=")
    finally:
        term.close()
    rec = Recording(out)
    assert rec.complete and rec.footer["end_reason"] == "terminated"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_live_memory_per_event_stays_bounded_once_the_window_is_full(clients, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A flood of real ioctls through the real capture: past LIVE_WINDOW events the rows go to the spill
    recording, so resident memory grows by the columns and the model's share only, far below what holding every
    row costs (over 1,000 bytes an event here: the test fails if the window is removed)."""
    from explorer import index as index_module

    window = 10_000
    monkeypatch.setattr(index_module, "LIVE_WINDOW", window)
    source = Capture(CaptureOptions())
    app = ExplorerApp(RecordingIndex(source.header), live=source)
    marks: list[tuple[int, int]] = []

    async def flood_until(pilot, events: int) -> None:  # type: ignore[no-untyped-def]
        """Floods, one after another, until the view holds `events` (the ring buffer drops what the screen
        cannot take: the count is of what arrived)."""
        deadline = time.monotonic() + 240
        while app.index.n < events:
            assert time.monotonic() < deadline, f"only {app.index.n} events arrived"
            flood = Client("flood", "200000")
            clients.append(flood)
            flood.go()
            await wait_for(pilot, lambda f=flood: f.proc.poll() is not None, timeout=120)
        seen = -1
        while seen != app.index.n:  # until what the kernel handed over is all in
            seen = app.index.n
            await pilot.pause(1.0)

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            await flood_until(pilot, 3 * window)
            marks.append((app.index.n, rss_bytes()))
            await flood_until(pilot, marks[0][0] + 400_000)
            marks.append((app.index.n, rss_bytes()))
            held = sum(len(r) for r in app.index._live_chunks.values())  # noqa: SLF001
            assert held <= window + index_module.LIVE_CHUNK
            first = app.index.row(0)  # the oldest event, read back from the spill recording
            await pilot.press("home")
            assert app.session.cursor == first[0]

    try:
        asyncio.run(scenario())
    finally:
        source.close()
    (n0, r0), (n1, r1) = marks
    growth = (r1 - r0) / (n1 - n0)
    print(f"live growth after the window filled: {growth:.0f} B/event over {n1 - n0:,} events")
    # (a capture that hands over 100,000 rows in one poll leaves a transient peak in the figure: 13-312 here)
    assert growth < 400, f"{growth:.0f} bytes an event"


def test_live_output_is_where_older_rows_are_read_back_from(tmp_path: Path, clients, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`live -o`: past the window, rows are read back from the recording it writes (no second, temporary
    recording), each exactly as it arrived, though the writer cut its chunks elsewhere and sorted them."""
    from explorer import index as index_module
    from explorer.live_spill import OutputSpill

    window = 10_000
    monkeypatch.setattr(index_module, "LIVE_WINDOW", window)

    def no_second_recording(header: object) -> None:
        raise AssertionError("live -o wrote a temporary recording beside its own")

    monkeypatch.setattr(index_module, "TempSpill", no_second_recording)
    out = tmp_path / "out.pasidrec"
    flood = Client("flood", "60000")
    clients.append(flood)
    # the flood's calls alone: a host-wide capture shared its ring with other floods on the host and lost rows
    source = RecordingTee(Capture(CaptureOptions(pid=flood.pid)), out)
    arrived: list[list] = []  # type: ignore[type-arg]
    poll = source.poll
    source.poll = lambda timeout_s: arrived.extend(rows := poll(timeout_s)) or rows  # type: ignore[method-assign]
    app = ExplorerApp(RecordingIndex(source.header, spill=OutputSpill.of(source.writer)), live=source)

    async def scenario() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            flood.go()
            await wait_for(pilot, lambda: flood.proc.poll() is not None, timeout=120)
            await wait_for(pilot, lambda: app.index.n >= 4 * window, timeout=60)
            held = sum(len(r) for r in app.index._live_chunks.values())  # noqa: SLF001
            assert held <= window + index_module.LIVE_CHUNK
            await pilot.press("home")  # a seek into evicted time
            assert app.session.cursor == arrived[0][0]

    try:
        asyncio.run(scenario())
    finally:
        source.close()
    shown = app.index
    assert 0 in shown._spill and len(arrived) >= shown.n  # noqa: SLF001
    assert [shown.row(i) for i in range(shown.n)] == arrived[:shown.n]
    rec = Recording(out)
    recorded = sorted(r[0] for c in range(len(rec.chunks)) for r in rec.chunk_rows(c))
    assert recorded == sorted(r[0] for r in arrived)  # the one file holds what the screen had


def test_sigkill_of_live_output_leaves_a_valid_recording_short_of_one_chunk(tmp_path: Path, clients) -> None:
    from tui.test_terminal import Terminal

    out = tmp_path / "killed.pasidrec"
    flood = Client("flood", "5000000")
    clients.append(flood)
    term = Terminal([sys.executable, "-m", "explorer.cli.main", "live", "-o", str(out)], 120, 36)
    try:
        term.wait_for("allocator", timeout=60)
        pid = int(subprocess.run(["pgrep", "-f", f"live -o {out}"], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
        flood.go()
        time.sleep(3.0)
        os.kill(pid, signal.SIGKILL)
        term.wait_for("EXIT=")
    finally:
        term.close()
    r = Recording(out)
    summary = r.damage_summary()
    assert r.footer is None and any(cut in summary for cut in ("did not close cleanly", "cut short")), summary
    end = r.chunks[-1].offset + 12 + r.chunks[-1].length
    assert r.size - end <= max(c.length for c in r.chunks) + 12  # what was lost is less than one chunk
    assert r.event_count >= 4096 and len(list(r.iter_events())) == r.event_count
    assert RecordingIndex.build(Recording(out)).n == r.event_count


def test_live_output_on_a_full_disk_ends_with_one_clear_line_and_keeps_every_complete_chunk(
        small_disk: Path, clients) -> None:  # type: ignore[no-untyped-def]
    """(Before, the capture's thread died with a traceback kept for the exit, and the screen silently stopped
    growing until the user quit.)"""
    from tui.test_terminal import Terminal

    out = small_disk / "full.pasidrec"
    flood = Client("flood", "5000000")
    clients.append(flood)
    term = Terminal([sys.executable, "-m", "explorer.cli.main", "live", "-o", str(out)], 120, 36)
    try:
        term.wait_for("allocator", timeout=60)
        flood.go()
        screen = term.wait_for("EXIT=", timeout=120)
    finally:
        term.close()
    assert "EXIT=2" in screen and "Traceback" not in screen and screen.count("pasid-explorer:") == 1, screen
    said = "".join(screen[screen.index("pasid-explorer:"):screen.index("EXIT=")].splitlines())  # (wrapped at 120)
    assert "No space left on device" in said and "complete chunks are kept" in said, said
    r = Recording(out)
    assert r.chunks and all(r.try_chunk_rows(i) is not None for i in range(len(r.chunks)))
    assert r.size - (r.chunks[-1].offset + 12 + r.chunks[-1].length) <= max(c.length for c in r.chunks) + 12
