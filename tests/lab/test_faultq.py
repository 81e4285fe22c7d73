"""Real kernels in a VM make real page requests, and the tool is held to them.

Each lab kernel boots under QEMU and runs `faultq`, which makes I/O page faults through iommufd's selftest mock
device (drivers/iommu/iommufd/selftest.c, IOMMU_TEST_OP_TRIGGER_IOPF -> iommu_report_device_fault) and answers
them through its fault queue (iommufd fault fd -> iopf_group_response). faultq prints what it did; the recording
made inside the VM must hold exactly that: every fault once, every answer once with its code and who gave it,
every ioctl; the kernel-side counters must agree; `check` must find nothing in a clean run and exactly the
planted anomalies in a planted one; and the model's end state must be the kernel's.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from explorer.events import Event
from explorer.loading import open_index
from explorer.recording import open_recording

from .conftest import TCG_STALE_NS, LabRunner

pytestmark = [pytest.mark.lab, pytest.mark.slow]
FLOOD = 20_000  # IOMMU_OPTION calls as fast as they go, first: the capture must keep up with them
CLEAN = ["faultq", "-d", "3", "-n", "40", "-i", "5", "-u", "2", "-c", "3", "-p", "0x10", "-s", str(FLOOD)]
HELD = "/tmp/faultq-holding"  # guest path: faultq creates it once its planted groups are waiting
PLANTED = ["faultq", "-d", "2", "-n", "20", "-u", "3", "-c", "1", "-p", "0x20", "-r", "2", "-H", HELD]
SUCCESS, INVALID = 0, 1


def events(path: Path) -> list[Event]:
    rec = open_recording(path)
    try:
        return [Event.from_row(r) for i in range(len(rec.chunks)) for r in rec.chunk_rows(i)]
    finally:
        rec.close()


def footer(path: Path) -> dict:
    rec = open_recording(path)
    try:
        return rec.footer or {}
    finally:
        rec.close()


@pytest.fixture(scope="module")
def clean(lab_runner: LabRunner, tmp_path_factory: pytest.TempPathFactory):
    return lab_runner(CLEAN, tmp_path_factory.mktemp("clean") / "clean.pasidrec")


@pytest.fixture(scope="module")
def planted(lab_runner: LabRunner, tmp_path_factory: pytest.TempPathFactory):
    return lab_runner(PLANTED, tmp_path_factory.mktemp("planted") / "planted.pasidrec", stop_at=HELD)


def did(run) -> dict:  # type: ignore[no-untyped-def]
    """What faultq says it did (its one JSON line)."""
    assert run.status == 0, f"faultq failed in the guest: {run.command_output}"
    return json.loads(run.command_output.strip().splitlines()[-1])


def test_every_page_request_is_recorded_once_with_its_pasid_and_group(clean) -> None:  # type: ignore[no-untyped-def]
    work = did(clean)
    evs = events(clean.recording)
    requests = [e for e in evs if e.kind == "page_request"]
    assert Counter((e.pasid, e.get("prg")) for e in requests) == Counter(
        (f["pasid"], f["grpid"]) for f in work["faults"])
    assert len({e.device for e in requests}) == len(work["devices"])  # one mock device per faultq device
    assert all(e.get("last") for e in requests)  # TRIGGER_IOPF always sets LAST_PAGE
    assert clean.figures["lost"] == 0 and not [e for e in evs if e.kind == "lost"]


def test_every_answer_is_recorded_once_with_its_code_and_who_gave_it(clean) -> None:  # type: ignore[no-untyped-def]
    work = did(clean)
    responses = [e for e in events(clean.recording) if e.kind == "page_response"]
    expected = Counter()
    for f in work["faults"]:
        code = f["code"]
        expected[(f["pasid"], f["grpid"], code % 100, "kernel" if code >= 100 else "user")] += 1
    got = Counter((e.pasid, e.get("prg"), e.get("code"), e.get("by")) for e in responses)
    assert got == expected
    assert sum(1 for f in work["faults"] if f["code"] >= 100) == 6  # 2 pending on each closed device
    assert got[(0x10, 4, INVALID, "user")] == 1 and got[(0x10, 0, SUCCESS, "user")] == 1


def test_every_ioctl_is_recorded_and_decoded(clean) -> None:  # type: ignore[no-untyped-def]
    work = did(clean)
    calls = [e for e in events(clean.recording) if e.kind == "uapi" and e.comm == "faultq"]
    assert Counter(e.get("name") for e in calls) == Counter(work["ioctls"])
    triggers = [e.get("args") for e in calls if e.get("name") == "IOMMU_TEST_CMD"
                and e.get("args", {}).get("op") == "TRIGGER_IOPF"]
    assert Counter((a["pasid"], a["grpid"]) for a in triggers) == Counter(
        (f["pasid"], f["grpid"]) for f in work["faults"])
    assert all(e.get("ret") == 0 for e in calls)
    assert work["ioctls"]["IOMMU_OPTION"] == FLOOD and clean.figures["lost"] == 0  # the ring kept up

def test_kernel_side_counters_agree_with_the_recorded_events(clean) -> None:  # type: ignore[no-untyped-def]
    evs = events(clean.recording)
    counts = Counter()
    for entry in footer(clean.recording).get("kernel_counts", []):
        counts[entry["type"]] += entry["count"]
    recorded = Counter(e.kind for e in evs)
    assert counts["report_fault"] == recorded["page_request"] > 0
    assert counts["page_response"] == recorded["page_response"] > 0
    assert counts["ioctl"] == recorded["uapi"] > 0


# drivers/iommu/iommufd/fault.c (6.12) / eventq.c (7.3): iommufd_auto_response_faults() answers a detached
# device's pending groups INVALID. The mock's PASIDs have no attach handle of their own: io-pgfault.c
# find_fault_handler() sends them to the nested domain at the RID (user_pasid_table), so the model, having seen
# user space answer them, takes that kernel INVALID as the detach's answer, not as a fault on an unattached PASID.


def test_the_model_ends_where_the_kernel_does(clean, planted) -> None:  # type: ignore[no-untyped-def]
    idx = open_index(clean.recording)
    assert idx.sim.state.groups == {}  # faultq answered or closed every group; the kernel holds none
    assert idx.sim.state.pasids == {}  # the mock's PASIDs are the user's (a guest's): the host allocator gave none
    work = did(planted)
    held = sorted((f["pasid"], f["grpid"]) for f in work["faults"] if f["code"] == -1)
    assert len(held) == 3 and work["second_refused"] == 2  # the kernel refused both second responses
    pending = sorted((g.pasid, g.prg) for g in open_index(planted.recording).sim.state.groups.values())
    assert pending == held  # the model's open groups are the ones the kernel still held when the capture ended
    responses = [e for e in events(planted.recording) if e.kind == "page_response"]
    assert len(responses) == sum(1 for f in work["faults"] if f["code"] != -1)  # refused seconds left no trace


def test_check_finds_nothing_in_a_clean_run(clean) -> None:  # type: ignore[no-untyped-def]
    anomalies = open_index(clean.recording, stale_ns=TCG_STALE_NS).anomalies
    assert [(a.rule, a.explanation) for a in anomalies] == []


def test_check_finds_exactly_the_planted_unanswered_groups(planted) -> None:  # type: ignore[no-untyped-def]
    held = sorted(f["pasid"] for f in did(planted)["faults"] if f["code"] == -1)
    evs = events(planted.recording)  # (a group answered late under a loaded host's TCG is a latency finding)
    anomalies = [a for a in open_index(planted.recording).anomalies
                 if not any(evs[i].kind == "page_response" for i in a.evidence)]
    assert Counter(a.rule for a in anomalies) == Counter({"unanswered_group": 3})
    assert sorted(a.pasid for a in anomalies) == held
