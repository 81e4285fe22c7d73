"""The kernel lab's VM and the host it runs on, recorded at the same time and put on one timeline.

`lab run` records inside the guest (its machine named lab-<version>); `record` records the host meanwhile. The
merge aligns the guest's clock from the two recordings' clock readings alone, and every guest event must then
fall inside the host recording's span (from its start readings to its end readings), as it did in fact. The
stated error bound is what the readings show; the QEMU guest's wall clock, set from an emulated RTC at boot, may
add up to a second, which the span (the whole boot, and 40-70 s of the guest's capture starting) dwarfs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from live.conftest import Recorder, host_problem

from explorer.merge import merge, open_sources
from explorer.recording import Recording

from .conftest import LabRunner

pytestmark = [pytest.mark.lab, pytest.mark.slow]
FAULTS = ["faultq", "-d", "1", "-n", "6", "-p", "0x10"]


def test_the_lab_guest_falls_inside_its_host_s_recording(lab_runner: LabRunner, tmp_path: Path) -> None:
    problem = host_problem()
    if problem:
        pytest.skip(f"recording the host needs root, tracefs and bcc: {problem}")
    host_path, guest_path = tmp_path / "host.pasidrec", tmp_path / "guest.pasidrec"
    # only this process's iommufd calls (none): other work on the host must not swell the recording; its span,
    # from its start readings to its end readings, is what the guest is held to
    host = Recorder(host_path, "--pid", str(os.getpid()))
    try:
        run = lab_runner(FAULTS, guest_path)
    finally:
        host.stop(signal.SIGINT)
    assert run.status == 0
    guest_events = list(Recording(guest_path).iter_events())
    assert any(e.kind == "page_request" for e in guest_events)
    sources = open_sources([str(host_path), str(guest_path)])
    merged = tmp_path / "merged.pasidrec"
    result = merge(sources, merged)
    rec = Recording(merged)
    host_m, guest_m = rec.machines
    assert (host_m.name, guest_m.name) == ("host", f"lab-{run.kernel.version}")
    assert guest_m.boot_id != host_m.boot_id and guest_m.kernel == run.kernel.release
    assert guest_m.aligned_by == "realtime" and guest_m.error_ns is not None
    print(f"lab {run.kernel.version}: guest offset {guest_m.offset_ns} ns, bound from the readings "
          f"±{guest_m.error_ns} ns")  # (-s shows it)
    assert guest_m.error_ns < 10_000_000, "the readings themselves bound the alignment to milliseconds"
    start, end = host_m.start.monotonic, host_m.end.monotonic
    mine = [e for e in rec.iter_events() if e.machine == 1]
    assert result.events[guest_m.name] == len(mine) == len(guest_events)
    assert [e.ts_ns - guest_m.offset_ns for e in mine] == [e.ts_ns for e in guest_events], "times unchanged"
    assert all(start <= e.ts_ns <= end for e in mine), "every guest event inside the host's recording"
    # the guest's own recording span, moved, lies inside the host's too (the guest booted after the host began)
    assert start < guest_m.start.monotonic + guest_m.offset_ns < guest_m.end.monotonic + guest_m.offset_ns < end
