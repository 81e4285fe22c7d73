"""`live -o` reads its older rows back from the recording it writes, whose writer cuts chunks of its own and sorts
each by time: every batch the screen had must come back as it arrived, rows out of time order included."""

from __future__ import annotations

import os
import random
from pathlib import Path

from explorer.events import R_TS
from explorer.live_spill import OutputSpill
from explorer.recording import Recording, RecordingWriter
from explorer.recording.encoded import PackedRows
from explorer.workload import generate_rows, workload_header

EVENTS = 3_000


def test_each_batch_comes_back_from_the_output_as_it_arrived(tmp_path: Path) -> None:
    rng = random.Random(5)
    rows = list(generate_rows(EVENTS, 3))
    for i in rng.sample(range(EVENTS), EVENTS // 20):  # late rows: the capture hands them over after later ones
        rows[i][R_TS] -= rng.randrange(1, 50_000)
    writer = RecordingWriter(tmp_path / "out.pasidrec", workload_header(EVENTS, 3), chunk_events=256)
    spill = OutputSpill.of(writer)
    assert spill is not None
    batches, at = [], 0
    while at < EVENTS:
        batch = rows[at:at + rng.randrange(1, 400)]
        packed = PackedRows.of_rows(batch)
        writer.append_packed(packed)
        if rng.random() < 0.2:
            writer.flush()  # the recorder's one-second timer
        # a batch is taken once the writer has written all of it, not before
        assert spill.put(len(batches), at, batch) == (writer.events_written >= at + len(batch))
        batches.append((at, packed.rows()))
        at += len(batch)
    writer.close()
    reordered = [c for c in range(len(Recording(writer.path).chunks)) if c in spill._order]  # noqa: SLF001
    assert reordered  # the case that matters was made
    for c, (start, batch) in enumerate(batches):
        spill.put(c, start, batch)
        assert c in spill and spill.rows(c) == batch, c


def test_an_output_that_cannot_be_read_back_leaves_the_temporary_spill() -> None:
    with RecordingWriter(os.devnull, workload_header(10, 1)) as writer:  # `live -o /dev/null`
        assert OutputSpill.of(writer) is None


def test_an_output_cut_while_live_runs_reads_back_as_losses_not_a_crash(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The user overwrites the -o file (a `record -o` of the same name in another terminal) while `live` still
    shows it: a seek into evicted time finds one loss per event where the rows were, named, instead of an
    IndexError that ended the explorer."""
    from explorer import index as index_module
    from explorer.index import RecordingIndex

    monkeypatch.setattr(index_module, "LIVE_WINDOW", 2_000)
    path = tmp_path / "out.pasidrec"
    header = workload_header(EVENTS, 3)
    writer = RecordingWriter(path, header)
    index = RecordingIndex(header, spill=OutputSpill.of(writer))
    rows = list(generate_rows(EVENTS, 3))
    for at in range(0, EVENTS, 500):
        writer.append_packed(PackedRows.of_rows(rows[at:at + 500]))
        writer.flush()
        index.add_rows(rows[at:at + 500])
    assert index.row(0) == rows[0]
    with open(path, "r+b") as f:  # noqa: PTH123
        f.truncate(100)
    lost = index.row(600)  # a chunk not read since
    assert lost[1] == "lost" and f"{path} no longer holds the chunk" in lost[8]["why"]
    assert [index.row(i)[0] for i in range(EVENTS - 10, EVENTS)] == [r[0] for r in rows[-10:]]  # the window's own
    index.state_at(rows[100][0])  # a seek replays the losses
