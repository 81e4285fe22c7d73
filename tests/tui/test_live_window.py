"""`live` keeps a window of recent rows in memory and reads older ones back from the recording it writes: the
rows, the model's state and the screen after a seek into evicted time are those of the same events read whole."""

from __future__ import annotations

import random
from itertools import islice

from explorer import index as index_module
from explorer.index import RecordingIndex
from explorer.recording import RecordingWriter
from explorer.tui.app import ExplorerApp
from explorer.workload import generate_rows, workload_header

from .conftest import drive, panel_text

EVENTS, BATCH, WINDOW = 60_000, 2_000, 8_000


class GeneratedSource:
    """A live source of a seeded synthetic workload, a batch per poll."""

    def __init__(self) -> None:
        self.header = workload_header(EVENTS, 5)
        self._rows = generate_rows(EVENTS, 5, slow_every=500)
        self.sent: list[list] = []  # type: ignore[type-arg]

    def poll(self, timeout_s: float) -> list:  # type: ignore[type-arg]
        batch = list(islice(self._rows, BATCH))
        self.sent += batch
        return batch

    def status(self) -> str:
        return f"{len(self.sent):,} events"

    def close(self) -> None:
        pass


def test_live_rows_past_the_window_are_read_back_from_the_spill_recording(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(index_module, "LIVE_WINDOW", WINDOW)
    source = GeneratedSource()
    live = RecordingIndex(source.header)
    app = ExplorerApp(live, live=source, layout="debug")
    seen: dict[str, str] = {}

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        for _ in range(600):
            if live.n >= EVENTS:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        # rows in memory: the window and the batch the model is on, not the 60,000 events
        held = sum(len(r) for r in live._live_chunks.values())  # noqa: SLF001
        assert live.n == EVENTS and held <= WINDOW + BATCH
        await pilot.press("home", "right_square_bracket", "full_stop", "full_stop")  # a seek to the start
        seen["event"] = panel_text(app, "event")
        seen["allocator"] = panel_text(app, "allocator")

    drive(app, body)
    path = tmp_path / "same.pasidrec"
    with RecordingWriter(path, source.header) as w:
        w.extend_rows(source.sent)
    from explorer.loading import open_index

    whole = open_index(path)
    assert live.n == whole.n
    rng = random.Random(2)
    for i in [*range(0, 50), *rng.sample(range(whole.n), 300)]:
        assert live.row(i) == whole.row(i), i
    assert [(a.ts_ns, a.rule) for a in live.anomalies] == [(a.ts_ns, a.rule) for a in whole.anomalies]
    for t in [whole.start_ns, *(rng.randrange(whole.start_ns, whole.end_ns) for _ in range(15))]:
        assert live.state_at(t).size == whole.state_at(t).size
    # the same seek on the whole recording shows the same event and allocator
    app2 = ExplorerApp(whole, layout="debug")

    async def body2(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("home", "right_square_bracket", "full_stop", "full_stop")
        assert panel_text(app2, "event") == seen["event"]
        assert panel_text(app2, "allocator") == seen["allocator"]

    drive(app2, body2)
