"""The lab's teaching scenario is built on a real lab recording: the same requests, answers and calls, at the
same times, labelled with the kernel that made them."""

from __future__ import annotations

from explorer.recording import Recording
from explorer.scenarios import RECORDINGS, load_scenario
from explorer.uapi import IOMMU_TEST_OPS

REAL = RECORDINGS / "lab" / "6.12-fault-queue.pasidrec"
SCENARIO = RECORDINGS / "scenarios" / "09-lab-fault-queue.yaml"
KINDS = ("page_request", "page_response", "uapi")


def _op(name: str | None, op: int | str | None) -> int | str | None:
    """A scenario's args are integers: its IOMMU_TEST_CMD op is the number the capture decodes by name."""
    return IOMMU_TEST_OPS.get(op, op) if name == "IOMMU_TEST_CMD" and isinstance(op, int) else op


def _story(events: list) -> tuple[list[tuple], list[float]]:  # type: ignore[type-arg]
    """What happened, in order, and when (us after the first call)."""
    kept = [e for e in events if e.kind in KINDS]
    what = [(str(e.kind), e.device, e.pasid, e.get("prg"), e.get("code"), e.get("by"), e.get("name"),
             _op(e.get("name"), (e.get("args") or {}).get("op"))) for e in kept]
    return what, [(e.ts_ns - kept[0].ts_ns) / 1000 for e in kept]


def test_the_lab_scenario_retells_the_real_recording_at_its_times() -> None:
    real, real_us = _story(list(Recording(REAL).iter_events()))
    run = load_scenario(SCENARIO)
    told, told_us = _story(run.events)
    assert told == real
    assert max(abs(a - b) for a, b in zip(told_us, real_us, strict=True)) < 2  # the scenario's times are in us
    assert Recording(REAL).header.host["kernel"] == run.scenario.kernel == "6.12.118-pasidlab"
    assert Recording(REAL).header.source == "capture"
