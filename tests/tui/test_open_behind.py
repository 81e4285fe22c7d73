"""A big recording's first screen comes from its first chunks; the rest is indexed behind it, with progress and a
key that stops it. Driven with Textual's Pilot on real generated recordings, against an eager full read."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from explorer.index import FIRST_CHUNKS, RecordingIndex
from explorer.loading import FIRST_SCREEN, open_index
from explorer.recording import Recording, RecordingWriter
from explorer.tui.app import INDEX_BATCH, ExplorerApp
from explorer.tui.timeline import Timeline
from explorer.workload import write_workload

from .conftest import drive, screen_lines


def _recording(tmp_path, events: int = 40_000, chunk_events: int | None = None):  # type: ignore[no-untyped-def]
    """A generated recording; with `chunk_events`, rewritten in chunks that small (a long quiet capture writes a
    chunk a second of a few events)."""
    path = tmp_path / "big.pasidrec"
    write_workload(str(path), events, seed=4, slow_every=900)
    if chunk_events is None:
        return path
    small = tmp_path / "small-chunks.pasidrec"
    with Recording(path) as rec, RecordingWriter(small, rec.header, chunk_events=chunk_events) as w:
        for row in rec.iter_rows():
            w.append_row(row)
    return small


def _gated(index: RecordingIndex) -> threading.Event:
    """Hold the worker's reading of the rest of the file until the test lets it go."""
    gate, read = threading.Event(), index.read_heads
    index.read_heads = lambda start, count: gate.wait(30) and read(start, count)  # type: ignore[method-assign]
    return gate


async def _until(pilot, done) -> None:  # type: ignore[no-untyped-def]
    for _ in range(600):
        if done():
            break
        await pilot.pause(0.05)
    await pilot.pause()


@pytest.mark.parametrize("chunk_events", [None, 10])
def test_first_screen_before_indexing_ends_then_the_same_as_an_eager_open(tmp_path, chunk_events) -> None:  # type: ignore[no-untyped-def]
    """The first screen comes from the chunks holding the first events (5,000 here), or from the first
    FIRST_CHUNKS chunks when they hold fewer (4,000 chunks of ten events: all 40,000 are below FIRST_SCREEN)."""
    path = _recording(tmp_path, chunk_events=chunk_events)
    full = open_index(path)
    index = open_index(path, model=False, first=5_000 if chunk_events is None else FIRST_SCREEN)
    if chunk_events is None:
        assert 5_000 <= index.n < full.n and not index.indexed_all
    else:
        assert index.indexed_files == FIRST_CHUNKS and index.n == FIRST_CHUNKS * chunk_events < full.n
    gate = _gated(index)
    app = ExplorerApp(index, layout="debug")
    eager = ExplorerApp(open_index(path, model=False), layout="debug")
    seen: dict[str, list[str]] = {}

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        status = app.query_one(Timeline).view.status
        assert "indexing " in status and f"of {full.n:,} events · k stops" in status
        assert f"{index.n:,} of {full.n:,} events" in app.sub_title
        assert screen_lines(app)[1:-2]  # drawn: the first screen is up while the rest waits
        gate.set()
        await _until(pilot, lambda: index.indexed_all and app.session.spans.done == index.n)
        assert "indexing" not in app.query_one(Timeline).view.status
        assert f"· {full.n:,} events ·" in app.sub_title
        await pilot.press("0", "down", "right", "right", "plus")
        seen["behind"] = screen_lines(app)

    async def eager_body(pilot) -> None:  # type: ignore[no-untyped-def]
        await _until(pilot, lambda: eager.session.spans.done == eager.index.n)
        await pilot.press("0", "down", "right", "right", "plus")
        seen["eager"] = screen_lines(eager)

    drive(app, body)
    drive(eager, eager_body)
    assert seen["behind"] == seen["eager"]
    # Every column, every row and the model's state at any time are those of the whole file read at once
    for name in ("ts", "kinds", "track_of", "ts_max"):
        assert np.array_equal(getattr(index, name), getattr(full, name)), name
    assert index.tracks == full.tracks
    for t in range(len(full.tracks)):
        assert np.array_equal(index.track_events(t), full.track_events(t))
    rng = random.Random(3)
    for i in rng.sample(range(full.n), 200):
        assert index.row(i) == full.row(i)
    assert [(a.ts_ns, a.rule) for a in index.anomalies] == [(a.ts_ns, a.rule) for a in full.anomalies]
    for t in (rng.randrange(full.start_ns, full.end_ns) for _ in range(20)):
        assert index.state_at(t).size == full.state_at(t).size


def test_k_stops_indexing_and_the_model_runs_over_what_was_indexed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _recording(tmp_path, 150_000)
    index = open_index(path, model=False, first=5_000)
    first = index.indexed_files
    gate = _gated(index)
    app = ExplorerApp(index, layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("k")
        gate.set()
        await _until(pilot, lambda: app.session.spans.done == index.n and index.model_done)
        await pilot.pause(0.3)
        assert index.indexed_files in (first, first + INDEX_BATCH)  # at most the batch in hand joins
        assert not index.indexed_all and index.n < index.file_events == 150_000
        status = app.query_one(Timeline).view.status
        assert f"indexing stopped at {index.n / index.file_events:.0%} of {index.file_events:,} events" in status
        assert index.model_done and "model " not in status
        await pilot.press("end", "right_square_bracket", "full_stop")  # the app goes on over what it has
        assert app.is_running

    drive(app, body)
