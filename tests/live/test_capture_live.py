"""Live capture on the real kernel, as root: the probes attach, `record` captures what a process did, losses are
accounted exactly, and recordings survive SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from explorer.index import RecordingIndex
from explorer.recording import Recording
from explorer.snapshot import stored
from probes.hooks import HOOKS

from .client import COMM, PLAN, UNKNOWN_IOMMUFD
from .conftest import ROOT, Client, Recorder, cli, settle

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("live_host")]
ENOTTY = -25
TRACEFS = Path("/sys/kernel/tracing")


def kernel_facts() -> tuple[set[str], str, bool]:
    """Read independently of the probes package: function symbols, lockdown level, kprobe support."""
    with open("/proc/kallsyms") as f:
        symbols = {parts[2] for parts in map(str.split, f) if len(parts) > 2}
    try:
        text = Path("/sys/kernel/security/lockdown").read_text()
        lockdown = text[text.index("[") + 1:text.index("]")]
    except (OSError, ValueError):
        lockdown = "none"
    kprobes = (TRACEFS / "kprobe_events").exists() or Path("/sys/bus/event_source/devices/kprobe").exists()
    return symbols, lockdown, kprobes


def test_probes_reports_exactly_what_this_host_offers() -> None:
    result = cli("probes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    symbols, lockdown, kprobes = kernel_facts()
    status = {h["hook"]: h["status"] for h in report["hooks"]}
    assert set(status) == {h.name for h in HOOKS}
    for hook in HOOKS:
        if not hook.function:
            exists = (TRACEFS / "events" / hook.system / hook.event).is_dir()
            assert status[hook.name] == ("attached" if exists else "missing"), hook.name
        elif hook.name not in symbols:
            assert status[hook.name] == "missing symbol", hook.name
        elif lockdown == "confidentiality" or (lockdown != "none" and not kprobes):
            # fentry is refused under lockdown, and kprobes are absent or (confidentiality) refused too
            assert status[hook.name] == "blocked by lockdown", hook.name
        else:
            assert status[hook.name] == "attached", hook.name
    assert report["can_capture"] is True
    invisible = {k for k in report["invisible_kinds"]}
    for kind in ("pasid_alloc", "sva_bind", "pasid_attach"):
        full = [h for h in HOOKS if kind in h.kinds and not h.partial]
        assert (kind in invisible) == all(status[h.name] != "attached" for h in full)
    assert "uapi" in report["visible_kinds"] and "mm_exit" in report["visible_kinds"]
    text = cli("probes").stdout
    assert "syscalls:sys_enter_ioctl" in text
    # places looked at and not probed say why (kernel_facts.NOT_HOOKED), e.g. VT-d's cache_tag tracepoints
    assert {n["hook"] for n in report["not_hooked"]} >= {"intel_iommu:cache_tag_assign/unassign"}
    assert "cache_tag_assign/unassign (6.10+): not an attach" in text
    assert all(f"invisible: {kind}:" in text for kind in invisible)


def test_record_captures_a_process_ioctls_decoded_with_results_and_its_exit(tmp_path: Path, clients) -> None:
    target, bystander = Client("calls"), Client("calls")
    clients += [target, bystander]
    out = tmp_path / "e2e.pasidrec"
    rec = Recorder(out, "--pid", str(target.pid))
    bystander.go()
    bystander.finish()
    target.go()
    target.finish()
    settle()
    err = rec.stop(signal.SIGTERM)
    assert rec.proc.returncode == 0, err
    assert "terminated" in err

    r = Recording(out)
    assert r.complete and r.footer is not None and r.footer["end_reason"] == "terminated"
    assert r.header.source == "capture" and r.header.clock == "monotonic"
    assert "syscalls:sys_enter_ioctl" in r.header.probes["attached"]
    assert r.header.probes["filters"] == {"pid": target.pid}
    events = list(r.iter_events())
    assert [e.ts_ns for e in events] == sorted(e.ts_ns for e in events)
    uapi = [e for e in events if e.kind == "uapi"]
    assert {(e.pid, e.comm) for e in uapi} == {(target.pid, COMM.decode())}  # the bystander is filtered out
    expected = [(name, args, ENOTTY) for name, _, args in PLAN] + [("IOMMU_UNKNOWN_0x9f", {}, ENOTTY)]
    assert [(e.get("name"), e.get("args"), e.get("ret")) for e in uapi] == expected
    assert uapi[-1].get("cmd") == UNKNOWN_IOMMUFD and all(e.source == "syscalls:sys_exit_ioctl" for e in uapi)
    attach = next(e for e in uapi if e.get("name") == "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
    assert attach.pasid == 42
    exits = [e for e in events if e.kind == "mm_exit"]
    assert [(e.pid, e.get("mm")) for e in exits] == [(target.pid, target.pid)]
    assert exits[0].ts_ns > uapi[-1].ts_ns
    # The kernel's own state, read at the start (header) and at the end (footer, after the last event).
    snaps, problems = stored.snapshots(r.header.extra, r.footer)
    assert problems == [] and len(snaps) == 2 and snaps[1]["taken_ns"] >= events[-1].ts_ns
    assert snaps[0]["kernel"] == os.uname().release and snaps[0]["pci"].keys() == snaps[1]["pci"].keys()

    state = RecordingIndex.build(Recording(out)).sim.state
    assert state.uapi_calls == dict(Counter((target.pid, name, ENOTTY) for name, *_ in expected))
    assert state.uapi_objects == {}  # every call failed: no IOAS, HWPT or fault queue exists
    counts = {(c["cmd"], c["pid"]): c["count"] for c in r.footer["kernel_counts"] if c["type"] == "ioctl"}
    assert sum(n for (_, pid), n in counts.items() if pid == target.pid) == len(expected)


def test_a_flood_bigger_than_the_ring_buffer_is_accounted_exactly(tmp_path: Path, clients) -> None:
    n = 30_000
    flood = Client("flood", str(n))
    clients.append(flood)
    out = tmp_path / "flood.pasidrec"
    rec = Recorder(out, "--pid", str(flood.pid), "--ring-kb", "4")
    flood.go()
    flood.finish()
    settle()
    rec.stop(signal.SIGINT)
    r = Recording(out)
    assert r.footer is not None and r.footer["end_reason"] == "interrupted"
    kinds = Counter(e.kind for e in r.iter_events())
    lost = sum(e.get("count") for e in r.iter_events() if e.kind == "lost")
    assert lost > 0 and kinds["lost"] >= 1
    assert all(e.cpu is not None for e in r.iter_events() if e.kind == "lost")
    assert kinds["uapi"] + kinds["mm_exit"] + lost == n + 1  # every ioctl, and the exit
    assert r.footer["lost"] == lost
    in_kernel = sum(c["count"] for c in r.footer["kernel_counts"] if c["type"] == "ioctl" and c.get("pid") == flood.pid)
    assert in_kernel == n  # the in-kernel counts stay exact whatever the ring buffer dropped
    assert r.footer["kernel_counts_missed"] == 0
    shown = cli("info", str(out)).stdout  # info shows the exact counts beside what the ring buffer delivered
    counted = re.search(r"counted in the kernel.*\n(?:.*\n)*?\s+ioctl\s+([\d,]+)\n", shown)
    assert counted is not None and int(counted[1].replace(",", "")) >= n, shown
    idx = RecordingIndex.build(Recording(out))
    assert idx.sim.state.lost == lost and idx.sim.state.uncertain


def test_a_million_call_flood_is_recorded_whole(tmp_path: Path, clients) -> None:
    """Lossless at the rate one process of load offers: every one of 1M calls recorded, each field exact, and the
    footer says what each probe cost in the kernel. Any event lost fails it."""
    n = 1_000_000
    flood = Client("flood", str(n))
    clients.append(flood)
    out = tmp_path / "million.pasidrec"
    rec = Recorder(out, "--pid", str(flood.pid))
    started = time.monotonic()
    flood.go()
    flood.finish(timeout=600)
    offered = n / (time.monotonic() - started)
    settle()
    err = rec.stop(signal.SIGINT, timeout=300)
    assert rec.proc.returncode == 0, err
    r = Recording(out)
    assert r.damage == [] and r.footer is not None and r.footer["end_reason"] == "interrupted"
    assert r.footer["lost"] == 0 and "lost" not in r.footer["counts"], f"lost {r.footer['lost']:,} at {offered:,.0f}/s"
    rows = [row for c in range(len(r.chunks)) for row in r.chunk_rows(c)]
    calls = [row for row in rows if row[1] == "uapi"]
    assert {row[5] for row in calls} == {flood.pid}  # the filter holds from the first event (compiled in)
    assert len(calls) == n and [row[0] for row in rows] == sorted(row[0] for row in rows)
    fd = calls[0][8]["fd"]
    expected = {"cmd": 0x3B81, "name": "IOMMU_IOAS_ALLOC", "fd": fd, "args": {"size": 12, "flags": 0}, "ret": ENOTTY}
    assert all(row[2:] == [None, None, row[4], flood.pid, COMM.decode(), "syscalls:sys_exit_ioctl", expected]
               for row in calls)
    in_kernel = sum(c["count"] for c in r.footer["kernel_counts"] if c["type"] == "ioctl" and c.get("pid") == flood.pid)
    assert in_kernel == n
    costs = r.footer["bpf_costs"]
    assert "problem" in costs or costs["syscalls:sys_exit_ioctl"]["runs"] >= n


def _killed_after(client: Client, out: Path, seconds: float) -> tuple[Recording, int]:
    """`record` of the client's calls, killed with SIGKILL after `seconds`; the recording and the kill's time.

    The kill lands between frames ("did not close cleanly") or inside one ("cut short"): either way the reader
    names the cut and there is no footer."""
    rec = Recorder(out, "--pid", str(client.pid))
    client.go()
    time.sleep(seconds)
    killed_at = time.monotonic_ns()
    rec.proc.kill()
    rec.proc.wait()
    r = Recording(out)
    summary = r.damage_summary()
    assert r.footer is None and any(cut in summary for cut in ("did not close cleanly", "cut short")), summary
    return r, killed_at


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path, clients) -> None:
    steady = Client("steady", "6")
    clients.append(steady)
    out = tmp_path / "killed.pasidrec"
    r, killed_at = _killed_after(steady, out, 3.0)
    assert r.damage
    events = list(r.iter_events())
    assert len(events) > 200 and {e.kind for e in events} == {"uapi"}
    assert max(e.ts_ns for e in events) >= killed_at - 1_600_000_000  # flushed every second, plus a poll
    assert RecordingIndex.build(Recording(out)).n == len(events)


def test_sigkill_under_load_keeps_every_complete_chunk_and_names_the_cut(tmp_path: Path, clients) -> None:
    flood = Client("flood", "5000000")
    clients.append(flood)
    out = tmp_path / "loaded.pasidrec"
    r, _ = _killed_after(flood, out, 3.0)  # chunks are being written as fast as the flood fills them
    cut = [d for d in r.damage if "cut short" in d.what]
    # At most the frame being written when killed, and the missing footer (not named again after a cut frame).
    assert len(cut) <= 1 and len(r.damage) - len(cut) <= 1
    end = r.chunks[-1].offset + 12 + r.chunks[-1].length
    assert r.size - end <= max(c.length for c in r.chunks) + 12  # what was lost is less than one chunk
    events = list(r.iter_events())
    assert len(events) == r.event_count >= 4096 and not [d for d in r.damage if "event" in d.what]
    assert cli("check", str(out)).returncode in (0, 1)


def test_a_full_disk_is_one_clear_line_and_every_complete_chunk_is_kept(small_disk: Path, clients) -> None:
    flood = Client("flood", "5000000")
    clients.append(flood)
    out = small_disk / "full.pasidrec"
    rec = Recorder(out, "--pid", str(flood.pid))
    flood.go()
    _, err = rec.proc.communicate(timeout=120)
    assert rec.proc.returncode == 2, err
    lines = [x for x in err.splitlines() if x.startswith("pasid-explorer:")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in err
    assert "complete chunks are kept" in lines[0] and " events in " not in err  # no count of what was not kept
    r = Recording(out)
    assert r.chunks and all(r.try_chunk_rows(i) is not None for i in range(len(r.chunks)))
    assert r.size - (r.chunks[-1].offset + 12 + r.chunks[-1].length) <= max(c.length for c in r.chunks) + 12


def test_not_root_gets_one_clear_line(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    # nobody, keeping only the right to read and search files (the checkout may live under /root)
    unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+dac_read_search",
                    "--ambient-caps=+dac_read_search"]
    result = subprocess.run([*unprivileged, sys.executable, "-m", "explorer.cli.main", "record", "-o",
                             str(tmp_path / "x.pasidrec"), "--duration", "1"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("pasid-explorer: live capture loads BPF programs and needs root: run it "
                                     "with sudo")
    assert not (tmp_path / "x.pasidrec").exists()


def test_without_bcc_the_error_names_the_packages(tmp_path: Path) -> None:
    fake = tmp_path / "bcc"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'bcc'\")\n")
    result = cli("record", "-o", str(tmp_path / "x.pasidrec"), env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "apt install python3-bpfcc" in result.stderr and "dnf install python3-bcc" in result.stderr


def test_bad_options_fail_before_anything_is_written(tmp_path: Path) -> None:
    result = cli("record", "-o", str(tmp_path / "x.pasidrec"), "--pid", "999999999")
    assert result.returncode == 2 and "no such process" in result.stderr
    result = cli("record", "-o", str(tmp_path / "missing" / "x.pasidrec"), "--duration", "1")
    assert result.returncode == 2 and "cannot write the recording" in result.stderr
    result = cli("record", "-o", str(tmp_path / "x.pasidrec"), "--ring-kb", "3")
    assert result.returncode == 2 and "power of two" in result.stderr
    kept = tmp_path / "kept.pasidrec"  # a capture made before: not replaced unless asked
    kept.write_bytes(b"an earlier capture")
    result = cli("record", "-o", str(kept), "--duration", "1")
    assert result.returncode == 2 and "the file is there already" in result.stderr and "--force" in result.stderr
    assert kept.read_bytes() == b"an earlier capture"
