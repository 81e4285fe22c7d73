"""The kernel's own iommufd selftest (tools/testing/selftests/iommu/iommufd.c, built from the lab kernel's tree) as
a workload: about 290k ioctls in a few minutes, a child process per test, PASID attach, replace and detach, and a
few page faults answered through fault queues.

What it did is counted apart from the capture, in user space, by libiocount (an LD_PRELOAD library in the lab's
workloads): every iommufd/VFIO ioctl by number and outcome, IOMMU_TEST_CMD by op, the PASID and group of each
TRIGGER_IOPF that succeeded, and the responses written to fault fds. The recording made inside the VM must hold
exactly that, nothing twice and nothing lost, and agree with the kernel-side counters and the model's end state.

Only kernels whose tree's selftest builds against their own uAPI run it (7.3; Debian's 6.12.118 ships a newer
selftest than its headers).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from explorer.lab import kernels, session, workloads
from explorer.loading import open_index
from explorer.uapi import IOMMU_TEST_OPS
from probes.loader import VFIO_TRACKED
from probes.uapi_decode import VFIO_BASE

from .conftest import KERNELS, TCG_STALE_NS
from .test_faultq import events, footer

pytestmark = [pytest.mark.lab, pytest.mark.slow]
INVALID_NR = 0x7F  # iommufd.c's "cmd_fail" case asks for an ioctl number below iommufd's range: not captured
OP_NUMBER = {name: op for op, name in IOMMU_TEST_OPS.items()}


def captured(nr: int) -> bool:
    """The capture's ioctl filter (probes/capture.bpf.c sys_enter_ioctl): iommufd's own numbers, and the VFIO
    numbers it decodes."""
    return nr >= 0x80 or (VFIO_BASE <= nr < VFIO_BASE + 32 and bool(VFIO_TRACKED >> (nr - VFIO_BASE) & 1))


@pytest.fixture(scope="module", params=[v for v in KERNELS if kernels.source_for(v).selftest])
def selftest_run(request: pytest.FixtureRequest, lab_kernels, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    run = session.run(request.param, workloads.selftest_command(),
                      tmp_path_factory.mktemp("selftest") / "selftest.pasidrec")
    tally = json.loads((run.run_dir / workloads.TALLY).read_text())
    tap = (run.run_dir / workloads.SELFTEST_TAP).read_text(errors="replace")
    return run, tally, tap


def test_every_selftest_ioctl_is_recorded_once_with_its_outcome(selftest_run) -> None:  # type: ignore[no-untyped-def]
    run, tally, tap = selftest_run
    assert "# Totals: pass:" in tap  # the selftest ran to its end (some of its cases need options the lab lacks)
    did = Counter()
    for nr, (ok, failed) in tally["ioctls"].items():
        if captured(int(nr)):
            did.update({(int(nr), False): ok, (int(nr), True): failed})
    assert {int(nr) for nr in tally["ioctls"] if not captured(int(nr))} <= {INVALID_NR}
    calls = [e for e in events(run.recording) if e.kind == "uapi"]
    assert Counter((e.get("cmd") & 0xFF, e.get("ret") != 0) for e in calls) == +did
    assert sum(did.values()) > 200_000 and run.figures["lost"] == 0
    ops = Counter((e.get("args", {}).get("op"), e.get("ret") != 0) for e in calls if e.get("name") == "IOMMU_TEST_CMD")
    want = Counter()
    for op, (ok, failed) in tally["test_ops"].items():
        name = IOMMU_TEST_OPS.get(int(op), int(op))
        want.update({(name, False): ok, (name, True): failed})
    assert ops == +want


def test_page_requests_answers_and_pasid_operations_match_what_the_selftest_did(selftest_run) -> None:  # type: ignore[no-untyped-def]
    run, tally, _ = selftest_run
    evs = events(run.recording)
    requests = Counter((e.pasid, e.get("prg")) for e in evs if e.kind == "page_request")
    assert requests == Counter((t["pasid"], t["grpid"]) for t in tally["triggers"]) and requests
    answers = Counter((e.get("code"), e.get("by")) for e in evs if e.kind == "page_response")
    assert answers == Counter((r["code"], "user") for r in tally["responses"])
    # iommufd's PASID attach/replace reach iommu_attach_device_pasid / iommu_replace_device_pasid once per call
    # that succeeded (drivers/iommu/iommufd/device.c, 7.3); a replace the core refuses is recorded with its error.
    for op, kind in (("PASID_ATTACH", "pasid_attach"), ("PASID_REPLACE", "pasid_replace")):
        ok = tally["test_ops"].get(str(OP_NUMBER[op]), [0, 0])[0]
        assert sum(1 for e in evs if e.kind == kind and not e.get("error")) == ok > 0, kind
    attached = Counter((e.device, e.pasid) for e in evs if e.kind == "pasid_attach")
    assert Counter((e.device, e.pasid) for e in evs if e.kind == "pasid_detach") == attached  # each one undone


def test_kernel_counters_and_the_models_end_state_agree_with_the_recording(selftest_run) -> None:  # type: ignore[no-untyped-def]
    run, _, _ = selftest_run
    counts = Counter()
    for entry in footer(run.recording).get("kernel_counts", []):
        counts[entry["type"]] += entry["count"]
    recorded = Counter(e.kind for e in events(run.recording))
    assert counts["ioctl"] == recorded["uapi"]
    assert (counts["report_fault"], counts["page_response"]) == (recorded["page_request"], recorded["page_response"])
    idx = open_index(run.recording, stale_ns=TCG_STALE_NS)
    assert idx.sim.state.groups == {} and idx.sim.state.pasids == {}  # every group answered; no host PASIDs
    assert [k for k in idx.sim.state.attachments if k[1]] == []  # every PASID attachment detached
    assert [(a.rule, a.explanation) for a in idx.anomalies] == []
