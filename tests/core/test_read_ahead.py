"""A big recording's model pass reads its next chunks in a helper process (explorer/read_ahead.py). The model is
the same whether the helper dies mid-pass, cannot read a damaged chunk, or the pass is stopped and resumed; and no
helper outlives its pass, nor the explorer when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from core.model_replay import plain, read_ahead_always, replay
from processes import ended

from explorer.index import RecordingIndex
from explorer.read_ahead import Pages, ReadAhead
from explorer.recording import Recording, RecordingWriter
from explorer.workload import write_workload


def _workload(tmp_path: Path) -> Path:
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=2, slow_every=30)
    return path


def _helpers(m: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every helper process started from now on (within `m`'s context)."""
    procs: list[subprocess.Popen[bytes]] = []
    start = ReadAhead.start.__func__  # type: ignore[attr-defined]

    def starting(cls: type[ReadAhead], *args: Any) -> ReadAhead | None:
        ahead = start(cls, *args)
        if ahead is not None:
            procs.append(ahead._proc)  # noqa: SLF001
        return ahead

    m.setattr(ReadAhead, "start", classmethod(starting))
    return procs



def test_a_helper_killed_mid_pass_leaves_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _workload(tmp_path)
    here = replay(path, "here", monkeypatch)
    procs = _helpers(monkeypatch)
    take = ReadAhead.take

    def killing(self: ReadAhead, i: int) -> Pages | None:
        if i == 3 and self._proc is not None:  # noqa: SLF001
            self._proc.kill()  # noqa: SLF001
        return take(self, i)

    monkeypatch.setattr(ReadAhead, "take", killing)
    ahead = replay(path, "ahead", monkeypatch)
    assert 0 < ahead.pop("read ahead") < len(Recording(path).chunks) - 1
    assert ahead == {k: v for k, v in here.items() if k != "read ahead"}
    assert [p.returncode for p in procs] == [-signal.SIGKILL]


def test_a_chunk_the_helper_cannot_read_is_modelled_as_a_loss_as_before(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = _workload(tmp_path)
    data = bytearray(path.read_bytes())
    data[Recording(path).chunks[4].offset + 200] ^= 0xFF
    path.write_bytes(bytes(data))
    here, ahead = replay(path, "here", monkeypatch), replay(path, "ahead", monkeypatch)
    assert any("chunk" in d for d in here["damage"])
    assert ahead.pop("read ahead") == len(Recording(path).chunks) - 2  # (the first is read as it starts)
    assert ahead == {k: v for k, v in here.items() if k != "read ahead"}


def test_rows_still_to_decode_of_a_chunk_read_ahead_that_no_longer_reads_here_are_losses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper sends a chunk's inputs, not the chunk: the few rows the state makes the model decode besides (a
    group on a PASID with no domain) are read here, and where the chunk no longer reads they are losses, said so."""
    path = _workload(tmp_path)
    with monkeypatch.context() as m:
        taken = read_ahead_always(m)
        idx = RecordingIndex.build(Recording(path), model=False)
        m.setattr(Recording, "chunk_head", lambda self, i: None)
        idx.run_model()
    assert taken[0] == len(Recording(path).chunks) - 1
    assert any("read again to model it, it no longer reads" in d for d in idx.damage)
    assert any(a.rule == "events_lost" and "its chunk could not be read again" in a.explanation
               for a in idx.anomalies)


def test_a_stopped_pass_ends_its_helper_and_resumes_to_the_same_model(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _workload(tmp_path)
    with monkeypatch.context() as m:
        procs = _helpers(m)
        taken = read_ahead_always(m)
        stopped = RecordingIndex.build(Recording(path), model=False)
        assert not stopped.run_model(stop=lambda: taken[0] >= 2)
        assert procs[0].returncode is not None  # ended before `run_model` returned
        assert 0 < stopped.modelled < stopped.n
        assert stopped.run_model()
        assert len(procs) == 2 and procs[1].returncode is not None
    whole = RecordingIndex.build(Recording(path), model=False)
    whole.run_model()
    assert stopped.anomalies == whole.anomalies
    assert stopped.damage == whole.damage
    assert plain(stopped._checkpoints) == plain(whole._checkpoints)  # noqa: SLF001
    assert plain(stopped.state_at(stopped.end_ns)) == plain(whole.state_at(whole.end_ns))


def test_chunks_whose_asks_and_answers_outgrow_their_pipes_are_read_ahead_without_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of 65,536 events (a capture's busy second, a spill) is asked for with 256 KiB of positions, more than
    the helper's stdin pipe holds, while its answer outgrows the answers' pipe: the index writing the next ask and
    the helper writing an answer once waited for each other for ever."""
    events = tmp_path / "w.pasidrec"
    write_workload(str(events), 200_000, seed=3)
    path = tmp_path / "big-chunks.pasidrec"
    with Recording(events) as rec, RecordingWriter(path, rec.header, chunk_events=65_536) as w:
        w.extend(rec.iter_events())
    assert len(Recording(path).chunks) == 4
    got: dict[str, Any] = {}
    done = threading.Thread(target=lambda: got.update(replay(path, "ahead", monkeypatch)), daemon=True)
    done.start()
    done.join(timeout=120)
    assert not done.is_alive(), "the pass hung"
    assert got.pop("read ahead") == 3  # (every chunk but the first, read as the helper starts)
    assert got == {k: v for k, v in replay(path, "here", monkeypatch).items() if k != "read ahead"}


def test_a_recording_whose_name_is_given_to_another_file_mid_pass_is_read_ahead_still(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper reads the file the index has open, not whatever its name means now (`generate -o` or a new
    capture written over the same name while the explorer models the old one)."""
    path = _workload(tmp_path)
    here, chunks = replay(path, "here", monkeypatch), len(Recording(path).chunks)
    start = ReadAhead.start.__func__  # type: ignore[attr-defined]

    def replacing(cls: type[ReadAhead], *args: Any) -> ReadAhead | None:
        ahead = start(cls, *args)
        (tmp_path / "new.pasidrec").write_bytes(b"not the recording the explorer opened")
        (tmp_path / "new.pasidrec").replace(path)  # (before the helper, starting, opens it)
        return ahead

    monkeypatch.setattr(ReadAhead, "start", classmethod(replacing))
    ahead = replay(path, "ahead", monkeypatch)
    assert ahead.pop("read ahead") == chunks - 1  # (the first is read as the helper starts)
    assert ahead == {k: v for k, v in here.items() if k != "read ahead"}


_KILLED_MID_PASS = """
import os, signal, sys
import pytest
sys.path.insert(0, sys.argv[2])
from core.model_replay import read_ahead_always
from explorer.index import RecordingIndex
from explorer.recording import Recording
with pytest.MonkeyPatch.context() as m:
    taken = read_ahead_always(m)
    idx = RecordingIndex.build(Recording(sys.argv[1]), model=False)
    def observe(rows, positions):
        if taken[0] == 2:
            print(idx._ahead._proc.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    idx.run_model(observe=observe)
"""


def test_an_explorer_killed_mid_pass_leaves_no_helper_behind(tmp_path: Path) -> None:
    path = _workload(tmp_path)
    out = subprocess.run([sys.executable, "-c", _KILLED_MID_PASS, str(path), str(Path(__file__).parents[1])],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == -signal.SIGKILL, out.stderr
    helper = int(out.stdout)
    deadline = time.monotonic() + 10
    while not ended(helper) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended(helper)


def test_a_process_holding_over_a_thousand_files_open_reads_ahead_the_same(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper's pipe then gets a descriptor past 1023, which select() refuses (a ValueError out of the pass);
    poll() takes any."""
    import os
    import resource

    path = _workload(tmp_path)
    here = replay(path, "here", monkeypatch)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(4096, hard)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        ahead = replay(path, "ahead", monkeypatch)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert ahead.pop("read ahead") > 0
    assert ahead == {k: v for k, v in here.items() if k != "read ahead"}


@pytest.mark.parametrize("way", ["here", "ahead"])
def test_a_recording_cut_shorter_while_its_model_runs_ends_in_damage_lines_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """A capture file rotated or truncated by another program while the explorer models it: the chunks past the cut
    no longer read, which the index says as damage (the reader once unpacked a frame's leading bytes that were no
    longer there: a struct.error out of the pass)."""
    path = _workload(tmp_path)
    if way == "ahead":
        read_ahead_always(monkeypatch)
    idx = RecordingIndex.build(Recording(path), model=False)
    cut = [False]

    def progress(done: int, total: int) -> None:
        if not cut[0] and done > total // 3:
            os.truncate(path, path.stat().st_size // 2)
            cut[0] = True

    assert idx.run_model(progress=progress) and cut[0]
    assert any("file ends inside" in d or "no longer reads" in d for d in idx.damage)
    assert any(a.rule == "events_lost" for a in idx.anomalies)
    assert not any(ch in d for d in idx.damage for ch in "\x1b\ufffd")
