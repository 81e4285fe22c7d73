"""A real trace.dat, recorded on this machine's kernel, imported through trace-cmd.

This host has no IOMMU hardware, so no iommu tracepoint fires; the trace carries PASID Explorer's own events
written into a private tracefs instance's trace_marker (as a probe or a test harness would), amid the kernel's
own sched events. The instance keeps the test from touching anyone else's tracing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.importers import import_log
from explorer.loading import open_index

TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture
def instance() -> Path:
    if os.geteuid() != 0:
        pytest.skip("writing a tracefs instance needs root")
    if shutil.which("trace-cmd") is None:
        pytest.skip("trace-cmd is not installed")
    if not (TRACEFS / "instances").is_dir():
        pytest.skip("tracefs is not mounted at /sys/kernel/tracing")
    path = TRACEFS / "instances" / f"pasid-explorer-test-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        if path.exists():
            path.rmdir()


@pytest.mark.live
def test_trace_dat_with_our_events_imports_through_trace_cmd(instance: Path, tmp_path: Path) -> None:
    events = [
        {"kind": "pasid_alloc", "pasid": 5, "path": "sva", "owner": "pid 42 (dsa-test)", "mm": 42},
        {"kind": "pasid_attach", "device": "0000:6a:01.0", "pasid": 5, "domain": 16, "domain_type": "sva"},
        {"kind": "page_request", "device": "0000:6a:01.0", "pasid": 5, "prg": 3, "addr": 4096, "perm": 3,
         "last": True},
        {"kind": "page_response", "device": "0000:6a:01.0", "pasid": 5, "prg": 3, "code": 0, "by": "kernel"},
    ]
    (instance / "events/sched/sched_process_exec/enable").write_text("1")
    with open(instance / "trace_marker", "w") as marker:
        for ev in events:
            marker.write(f"pasid_explorer: {json.dumps(ev)}\n")
            marker.flush()
    subprocess.run(["true"], check=True)
    (instance / "events/sched/sched_process_exec/enable").write_text("0")
    dat = tmp_path / "trace.dat"
    subprocess.run(["trace-cmd", "extract", "-B", instance.name, "-o", str(dat)], check=True, capture_output=True,
                   timeout=60)
    assert dat.read_bytes()[:10] == b"\x17\x08Dtracing"

    out = tmp_path / "trace.pasidrec"
    stats = import_log(str(dat), out)
    assert stats.format == "trace-dat" and stats.parsed == len(events) and stats.unknown == 0
    idx = open_index(out)
    got = [idx.event(i) for i in range(idx.n)]
    assert [e.kind for e in got] == [e["kind"] for e in events]
    assert all(e.source == "import:trace-dat" and e.pid and e.comm for e in got)
    assert got[2].get("prg") == 3 and got[2].device == "0000:6a:01.0" and got[2].pasid == 5
    assert idx.header.clock == "kernel" and got[0].ts_ns <= got[-1].ts_ns
    assert not [a for a in idx.anomalies if a.severity == "error"], "a clean lifecycle breaks no rule"


def test_trace_dat_without_trace_cmd_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dat = tmp_path / "trace.dat"
    dat.write_bytes(b"\x17\x08Dtracing6\x00" + bytes(64))
    monkeypatch.setenv("PATH", str(tmp_path))
    from explorer.errors import InputError

    with pytest.raises(InputError, match="trace-cmd"):
        import_log(str(dat), tmp_path / "x.pasidrec")


def test_a_damaged_trace_dat_that_trace_cmd_reports_nothing_for_is_said_so(tmp_path: Path) -> None:
    """The real trace-cmd exits 0 and prints nothing for a trace.dat whose header it cannot read: the import said the
    input was empty."""
    from explorer.errors import InputError

    dat = tmp_path / "trace.dat"
    dat.write_bytes(b"\x17\x08Dtracing6\x00\x00\x00" + bytes(200))
    with pytest.raises(InputError) as e:
        import_log(str(dat), tmp_path / "x.pasidrec")
    assert "trace-cmd report printed nothing for it: the trace.dat is empty or damaged" in str(e.value)
    assert not (tmp_path / "x.pasidrec").exists()


# A stand-in for trace-cmd: 200 KB of warnings on stderr (past a pipe's buffer) before its report, then its exit.
FAKE_TRACE_CMD = """#!{python}
import sys
sys.stderr.write("trace-cmd: some warning about a missing plugin\\n" * 4000)
sys.stderr.flush()
if {report}:
    print("cpus=1")
    print('  bash-1  [000]  1.000001: print: tracing_mark_write: pasid_explorer: {{"kind": "marker", "text": "hi"}}')
sys.stderr.write("{last}\\n")
sys.exit({code})
"""


def _import_with_fake_trace_cmd(tmp_path: Path, fmt: str | None, code: int = 0,
                                report: bool = True) -> subprocess.CompletedProcess[str]:
    """Import a trace.dat through the stand-in, in a child process with a time limit: a hang fails, not stalls."""
    exe = tmp_path / "bin" / "trace-cmd"
    exe.parent.mkdir()
    exe.write_text(FAKE_TRACE_CMD.format(python=sys.executable, last="trace-cmd: the very last word", code=code,
                                      report=report))
    exe.chmod(0o755)
    dat = tmp_path / "trace.dat"
    dat.write_bytes(b"\x17\x08Dtracing6\x00" + bytes(64))
    script = ("import sys\nfrom explorer.errors import InputError\nfrom explorer.importers import import_log\n"
              f"try:\n    s = import_log({str(dat)!r}, {str(tmp_path / 'out.pasidrec')!r}, fmt={fmt!r})\n"
              "    print(s.format, s.parsed)\nexcept InputError as e:\n    print(e)\n")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).parents[2], check=True)


@pytest.mark.parametrize("fmt", [None, "ftrace", "trace-dat"])
def test_trace_cmd_warnings_past_a_pipes_buffer_do_not_stall_the_import(fmt: str | None, tmp_path: Path) -> None:
    # --format ftrace on a trace.dat still goes through trace-cmd: the file is binary whatever the flag says.
    assert _import_with_fake_trace_cmd(tmp_path, fmt).stdout.split() == ["trace-dat", "1"]


@pytest.mark.parametrize("report", [True, False])
def test_a_failing_trace_cmd_is_one_line_with_its_last_word(tmp_path: Path, report: bool) -> None:
    """Whether it printed part of a report or none (then its failure, not an empty input, is what is said)."""
    said = _import_with_fake_trace_cmd(tmp_path, None, code=1, report=report).stdout.strip()
    assert said.endswith("trace-cmd report failed: trace-cmd: the very last word") and "\n" not in said
