"""`live` keeps a window of recent rows in memory and reads older ones back from a recording (the one `-o` writes,
or a temporary one): the rows, the model's state and the screen after a seek into evicted time are those of the
same events read whole."""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pytest

from explorer import index as index_module
from explorer.index import RecordingIndex
from explorer.live_spill import OutputSpill, TempSpill
from explorer.recording import RecordingWriter
from explorer.recording.encoded import PackedRows
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


class GeneratedTee(GeneratedSource):
    """The same, also recorded as `live -o` records (probes/recorder.py): rows appended encoded, a chunk cut at
    4,096 of them and at a flush every third poll (the recorder's one-second timer), so that the file's chunks
    straddle the screen's batches."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.writer = RecordingWriter(path, self.header)

    def poll(self, timeout_s: float) -> list:  # type: ignore[type-arg]
        batch = super().poll(timeout_s)
        self.writer.append_packed(PackedRows.of_rows(batch))
        if len(self.sent) % (3 * BATCH) == 0:
            self.writer.flush()
        return batch

    def close(self) -> None:
        self.writer.close()


def no_second_recording(header: object) -> None:
    raise AssertionError("live -o wrote a temporary recording beside its own")


@pytest.mark.parametrize("output", [False, True], ids=["temporary", "output"])
def test_live_rows_past_the_window_are_read_back_from_a_recording(tmp_path, monkeypatch, output) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(index_module, "LIVE_WINDOW", WINDOW)
    path = tmp_path / "same.pasidrec"
    source = GeneratedTee(path) if output else GeneratedSource()
    if isinstance(source, GeneratedTee):
        monkeypatch.setattr(index_module, "TempSpill", no_second_recording)
        live = RecordingIndex(source.header, spill=OutputSpill.of(source.writer))
    else:
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
    assert isinstance(live._spill, OutputSpill if output else TempSpill)  # noqa: SLF001
    if isinstance(source, GeneratedTee):
        source.close()  # the file live -o wrote is the one read whole
    else:
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
