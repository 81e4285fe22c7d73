"""A big dmesg log is parsed in worker processes, range by range, and must make the very file the single-process
import makes, byte for byte after the header's creation time, wherever the ranges fall: in a record spread over
lines, between a status line and its faults, after the last fault a "callbacks suppressed" line speaks for. Here the
reads and ranges are made tiny, so that a small log is cut in hundreds of places, and the state a worker rebuilds
before its range is made short, so that this process often has to parse a range itself. A worker that fails or is
killed changes nothing but the time; Ctrl-C stops the import and its workers, and leaves no file."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import ended

from explorer.importers import import_log, pipeline, split
from explorer.recording import Recording
from explorer.recording.encoded import PackedRows
from explorer.recording.framing import FRAME, MAGIC

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
bench = __import__("import")  # the benchmark's log generator: the fixtures' records re-stamped among other lines


def _dmesg_cases() -> list[str]:
    return [case["log"] for path in sorted(FIXTURES.glob("*.yaml"))
            for case in yaml.safe_load(path.read_text())["cases"] if not case.get("format") and not case.get("clock")]


def _recorded(path: Path) -> tuple[dict[str, Any], bytes]:
    """The file as a user gets it: its header but for the time it was made, then every byte after the header."""
    data = path.read_bytes()
    with Recording(path) as rec:
        header = rec.header.to_dict()
    del header["created_unix"]
    _, length, _ = FRAME.unpack_from(data, len(MAGIC))
    return header, data[len(MAGIC) + FRAME.size + length:]


def _geometry(monkeypatch: pytest.MonkeyPatch, sniff: int, block: int, reads: int, overlap: int) -> None:
    monkeypatch.setattr(pipeline, "SNIFF_BYTES", sniff)
    monkeypatch.setattr(pipeline, "BLOCK", block)
    monkeypatch.setattr(split, "RANGE_READS", reads)
    monkeypatch.setattr(split, "OVERLAP", overlap)


def _both_ways(src: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Import `src` in one process and split; assert the two files are the same. Returns how the split went."""
    monkeypatch.setattr(split, "SPLIT_MIN", 1 << 62)
    import_log(str(src), tmp / "one.pasidrec")
    seen = {"adopted": 0, "parsed here": 0}
    adopt, parse_range = split._adopt, split.parse_range

    def adopted(*args: Any) -> None:
        seen["adopted"] += 1
        adopt(*args)

    def parsed(*args: Any, before: Any = None) -> None:
        seen["parsed here"] += before is None  # (a worker's own parse passes `before`)
        parse_range(*args, before=before)

    monkeypatch.setattr(split, "_adopt", adopted)
    monkeypatch.setattr(split, "parse_range", parsed)
    monkeypatch.setattr(split, "SPLIT_MIN", 0)
    for thread in threading.enumerate():  # the import forks only a process of one thread: the reader must be gone
        if thread is not threading.main_thread():
            thread.join()
    import_log(str(src), tmp / "split.pasidrec")
    assert _recorded(tmp / "split.pasidrec") == _recorded(tmp / "one.pasidrec")
    return seen


# (the cases come from several boots, each kept as a machine: a range in which one starts is parsed here, so the
# first range must end before the first boot, about 9 KiB in, for the last geometry to adopt any)
@pytest.mark.parametrize(("block", "reads", "overlap"), [(48, 1, 100), (300, 2, 4096), (1000, 1, 7), (4096, 1, 1)])
def test_every_fixture_case_in_a_row_imports_the_same_split(block: int, reads: int, overlap: int, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "all.log"
    src.write_text("".join(_dmesg_cases()) * 3)
    _geometry(monkeypatch, 2048, block, reads, overlap)
    seen = _both_ways(src, tmp_path, monkeypatch)
    assert seen["adopted"] > 0


@pytest.mark.parametrize(("seed", "share", "crlf"), [(1, 0.3, False), (2, 0.9, True), (3, 0.05, False)])
def test_the_benchmarks_log_imports_the_same_split(seed: int, share: float, crlf: bool, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "mixed.log"
    bench.generate(src, 20_000, share, seed)
    if crlf:
        src.write_bytes(src.read_bytes().replace(b"\n", b"\r\n"))
    _geometry(monkeypatch, 1 << 16, 4096, 2, 8192)
    seen = _both_ways(src, tmp_path, monkeypatch)
    assert seen["adopted"] > 0


def test_a_log_of_two_boots_imports_the_same_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second boot's rows, found by workers that know nothing of the first boot, are moved to its machine."""
    one = tmp_path / "one.log"
    bench.generate(one, 20_000, 0.3, 4)
    boot = one.read_text()
    src = tmp_path / "boots.log"
    banner = "[    0.000000] Linux version {} (x) #1\n"
    src.write_text(banner.format("6.8.0") + boot + banner.format("6.12.0") + boot)
    _geometry(monkeypatch, 1 << 16, 4096, 2, 8192)
    later = []
    adopt = split._adopt
    monkeypatch.setattr(split, "_adopt", lambda log, *args: (later.append(log.sink.boot is not None),
                                                             adopt(log, *args)))
    seen = _both_ways(src, tmp_path, monkeypatch)
    assert seen["adopted"] > 0 and any(later)
    with Recording(tmp_path / "split.pasidrec") as rec:
        assert [m.kernel for m in rec.machines] == ["6.8.0", "6.12.0"]
    assert not import_log(str(one), tmp_path / "bench.pasidrec").boots  # the benchmark's log is one boot


def test_rows_the_columns_cannot_hold_come_from_a_worker_as_rows(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker sends its rows encoded as the writer stores them, except a range holding one that the columns
    cannot (a stamp past 2^63 ns): the writer stores that range's rows as rows, as it does in one process."""
    src = tmp_path / "huge.log"
    bench.generate(src, 20_000, 0.3, 5)
    with src.open("a") as f:  # (each fault is written when the next comes)
        f.writelines(f"[999999999{i}.999999] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 "
                     "[fault reason 0x06] PTE Read access is not set\n" for i in range(3))
    _geometry(monkeypatch, 1 << 16, 4096, 2, 1 << 16)  # (the last range adopted)
    sent: set[type] = set()
    adopt = split._adopt
    monkeypatch.setattr(split, "_adopt", lambda log, writer, p: (sent.add(type(p.rows)), adopt(log, writer, p)))
    _both_ways(src, tmp_path, monkeypatch)
    assert sent == {list, PackedRows}


_records, _noise = bench.pools()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), min_size=20, max_size=300),
       sniff=st.integers(64, 4096), block=st.integers(16, 2048), reads=st.integers(1, 3),
       overlap=st.integers(1, 3000))
def test_a_log_cut_anywhere_imports_the_same_split(picks: list[tuple[bool, int]], sniff: int, block: int, reads: int,
                                                   overlap: int, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Records and other lines in any order, read and split at any size: the same file."""
    lines: list[str] = []
    for is_record, i in picks:
        lines += _records[i % len(_records)] if is_record else [_noise[i % len(_noise)]]
    src = tmp_path / "cut.log"
    src.write_text("\n".join(lines) + "\n")
    _geometry(monkeypatch, sniff, block, reads, overlap)
    _both_ways(src, tmp_path, monkeypatch)


def _dies_on_its_second_range(start: int, end: int | None) -> split.Parsed | None:
    if start == SECOND_RANGE:
        os._exit(3)  # as the kernel's OOM killer would end it
    return _parse(start, end)


def _fails_every_other_range(start: int, end: int | None) -> split.Parsed | None:
    return None if random.Random(start).random() < 0.5 else _parse(start, end)


_parse = split._parse
SECOND_RANGE = (1 << 16) + 2 * 4096  # the first read, then a range of two reads


@pytest.mark.parametrize("worker", [_dies_on_its_second_range, _fails_every_other_range])
def test_a_worker_that_fails_or_is_killed_changes_nothing_but_the_time(worker: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mixed.log"
    bench.generate(src, 20_000, 0.3, 4)
    _geometry(monkeypatch, 1 << 16, 4096, 2, 8192)
    monkeypatch.setattr(split, "_parse", worker)
    seen = _both_ways(src, tmp_path, monkeypatch)
    assert seen["parsed here"] > 0
    assert capfd.readouterr().err == ""  # not a word of it on the terminal


def test_ctrl_c_stops_the_import_and_its_workers_and_leaves_no_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = tmp_path / "mixed.log", tmp_path / "out.pasidrec"
    bench.generate(src, 20_000, 0.3, 5)
    _geometry(monkeypatch, 1 << 16, 4096, 2, 8192)
    monkeypatch.setattr(split, "SPLIT_MIN", 0)

    def interrupt(done: int, total: int) -> None:
        if done > total // 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_log(str(src), out, progress=interrupt)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    assert multiprocessing.active_children() == []


_CLI = """
import sys
from explorer.cli.main import main
from explorer.importers import pipeline, split
pipeline.BLOCK, split.RANGE_READS, split.SPLIT_MIN = 4096, 1, 0  # a thousand ranges: still running at Ctrl-C
sys.exit(main(["import", sys.argv[1], "-o", sys.argv[2]]))
"""


def _importing(src: Path, out: Path, workers_started: int = 2) -> tuple[subprocess.Popen[str], list[str]]:
    """The CLI importing `src` (a log of 60,000 lines), and its workers' pids once it has `workers_started`."""
    if not src.exists():
        bench.generate(src, 60_000, 0.3, 6)
    cmd = subprocess.Popen([sys.executable, "-c", _CLI, str(src), str(out)], start_new_session=True, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    workers: list[str] = []
    for _ in range(600):
        workers = subprocess.run(["pgrep", "-P", str(cmd.pid)], capture_output=True, text=True).stdout.split()
        if len(workers) >= workers_started or cmd.poll() is not None:
            break
        time.sleep(0.002)
    return cmd, workers


def test_ctrl_c_at_the_terminal_stops_the_command_and_its_workers_in_one_line(tmp_path: Path) -> None:
    src, out = tmp_path / "big.log", tmp_path / "big.pasidrec"
    cmd, workers = _importing(src, out)
    os.killpg(cmd.pid, signal.SIGINT)  # as Ctrl-C does: to the terminal's whole foreground group
    _, err = cmd.communicate(timeout=60)
    assert len(workers) > 1
    assert (cmd.returncode, err) == (130, "pasid-explorer: interrupted\n")
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_ctrl_c_as_the_workers_are_forked_is_neither_lost_nor_an_internal_error(tmp_path: Path) -> None:
    """A Ctrl-C the moment the first worker exists, amid the forking: the command stops in one line, every time."""
    src, out = tmp_path / "big.log", tmp_path / "big.pasidrec"
    for _ in range(5):
        cmd, workers = _importing(src, out, workers_started=1)
        os.killpg(cmd.pid, signal.SIGINT)
        _, err = cmd.communicate(timeout=60)
        assert workers
        assert (cmd.returncode, err) == (130, "pasid-explorer: interrupted\n")
        assert not out.exists() and list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_import_killed_leaves_no_worker_behind(sig: int, tmp_path: Path) -> None:
    """kill -9, a timeout's SIGTERM or the OOM killer run no cleanup: the workers once stayed, blocked on their
    pipes and holding their memory, for ever (prctl's PR_SET_PDEATHSIG now ends them with the import)."""
    cmd, workers = _importing(tmp_path / "big.log", tmp_path / "big.pasidrec")
    cmd.send_signal(sig)  # (to the importing process alone)
    cmd.communicate(timeout=60)
    assert len(workers) > 1
    deadline = time.monotonic() + 10
    while not all(map(ended, workers)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(map(ended, workers))

