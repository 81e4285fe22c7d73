"""Captures of a healthy kernel that the model once reported as bugs (review 30), and beside each the true finding
it must still make. Each recording is what `check` reads: a capture's header and rows as the probes write them.

A capture starts with the kernel already running (explorer/simulator/coverage.py `starts_midstream`): PASIDs, binds
and page-request groups from before its first event exist, unseen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.events import Event, make
from explorer.index import RecordingIndex
from explorer.recording import DeviceInfo, Header, Recording, write_events
from explorer.simulator.engine import DEFAULT_STALE_NS

DSA = "0000:6a:01.0"  # a VT-d device with PRI (idxd)
OTHER = "0000:6b:01.0"
SEC = "0000:b6:00.0"  # an SMMUv3 stall device: PASID capability, no PRI (HiSilicon SEC2, hisi_sec2)
T0 = 5_000_000_000  # a capture's clock (CLOCK_MONOTONIC) is far from 0
US = 1_000
Finding = tuple[str, str, int | None]


def _ev(kind: str, t_us: int, **fields: Any) -> Event:
    return make(kind, T0 + t_us * US, source=fields.pop("source", "fentry:test"), pid=100, comm="app", **fields)


def _check(tmp_path: Path, events: list[Event], kernel: str = "6.12.10",
           devices: tuple[DeviceInfo, ...] = (DeviceInfo(DSA, 20, True, True, "idxd"),)) -> list[Finding]:
    path = tmp_path / "capture.pasidrec"
    write_events(path, Header(source="capture", host={"kernel": kernel}, devices=list(devices)), events)
    with Recording(path) as rec:
        return [(a.rule, str(a.severity), a.pasid) for a in RecordingIndex.build(rec).anomalies]


def _bind(t_us: int, pasid: int, dev: str = DSA, alloc: bool = True, mm: int = 100) -> list[Event]:
    """iommu_sva_bind_device(): the mm's first bind allocates its PASID (iommu_alloc_global_pasid(), 6.6+), then
    attaches its SVA domain (iommu-sva.c)."""
    return [*([_ev("pasid_alloc", t_us, device=dev, pasid=pasid, path="sva", mm=mm)] if alloc else []),
            _ev("pasid_attach", t_us + 1, device=dev, pasid=pasid, domain=7, domain_type="sva"),
            _ev("sva_bind", t_us + 2, device=dev, pasid=pasid, mm=mm)]


def _fault(t_us: int, pasid: int, prg: int, code: int, dev: str = DSA, **response: Any) -> list[Event]:
    return [_ev("page_request", t_us, device=dev, pasid=pasid, prg=prg, addr=0x1000, perm=1, last=True),
            _ev("page_response", t_us + 5, device=dev, pasid=pasid, prg=prg, code=code,
                **({"by": "kernel"} | response))]


# -- 1. a group pending when the capture began ---------------------------------------------------------------------
def test_an_answer_to_a_group_requested_before_the_capture_is_uncertain_while_it_could_still_be_pending(
        tmp_path: Path) -> None:
    """drivers/iommu/io-pgfault.c (6.9+; 6.12 here): iopf_group_response() answers a group only while it is
    pending ('Only send response if there is a fault report pending'), so an answer seen with no request before it
    is a stray unless the request came before the capture did. On a PASID the capture never saw allocated, that
    explains an answer while the group could still be waiting: within the stale threshold of the capture's
    start. Later, that group would have stalled the device past it: the answer is then a WARNING, as a stalled
    device is (`unanswered_group`), since which of the two it is cannot be told. A PASID allocated in the capture
    had no group before it: a stray answer there is an ERROR at once."""
    late = DEFAULT_STALE_NS // US + 500
    assert _check(tmp_path, [
        _ev("page_response", 1, device=DSA, pasid=3, prg=5, code=0, by="kernel"),  # PRG 5: requested before
        *_bind(10, 1),
        _ev("page_response", 20, device=DSA, pasid=1, prg=6, code=0, by="kernel"),  # a stray in the window
        _ev("page_response", late, device=DSA, pasid=3, prg=7, code=0, by="kernel"),
    ]) == [("response_without_group", "uncertain", 3), ("response_without_group", "error", 1),
           ("response_without_group", "warning", 3)]


def test_a_stray_answer_past_the_window_says_a_group_from_before_the_capture_would_have_stalled(
        tmp_path: Path) -> None:
    late = 2 * DEFAULT_STALE_NS // US
    path = tmp_path / "capture.pasidrec"
    write_events(path, Header(source="capture", host={"kernel": "6.12.10"}, devices=[DeviceInfo(DSA, 20, True)]),
                 [*_bind(1, 1), _ev("page_response", late, device=DSA, pasid=3, prg=7, code=0, by="kernel")])
    with Recording(path) as rec:
        (found,) = RecordingIndex.build(rec).anomalies
    assert "had its request come before the capture began" in found.explanation
    assert "past the 100.000 ms threshold" in found.explanation


# -- 2. a bind made before the capture ------------------------------------------------------------------------------
def test_only_an_invalid_answer_vt_d_alone_saw_is_a_refused_request(tmp_path: Path) -> None:
    """drivers/iommu/intel/prq.c (6.13+; svm.c 5.14-6.12) handle_bad_prq_event() answers a request it refuses with
    QI_RESP_INVALID, and nothing else, through qi_submit_sync(): a Success seen by qi_submit alone is an answer the
    core's hooks missed (a capture attaches its kprobes after its tracepoints), not a refusal; and a refusal at the
    capture's start may answer a group the core took before the capture began (its answer then unseen but by
    VT-d's descriptor), so it is uncertain there, as any answer with no group."""
    vtd = {"by": "kernel", "source": "intel_iommu:qi_submit"}
    late = 2 * DEFAULT_STALE_NS // US
    assert _check(tmp_path, [
        _ev("page_response", 1, device=DSA, pasid=3, prg=5, code=0, **vtd),  # missed by the core's hook
        *_bind(10, 1),
        _ev("page_response", late, device=DSA, pasid=1, prg=6, code=0, **vtd),  # a stray: no refusal answers Success
        _ev("page_response", late + 10, device=DSA, pasid=1, prg=7, code=1, **vtd),  # refused
    ]) == [("response_without_group", "uncertain", 3), ("response_without_group", "error", 1),
           ("refused_request", "warning", 1)]


def test_an_invalid_answer_on_a_pasid_bound_before_the_capture_is_uncertain(tmp_path: Path) -> None:
    """drivers/iommu/iommu-sva.c iommu_sva_handle_mm() (6.8+; io-pgfault.c before): the SVA handler answers
    Invalid Request when vma_lookup() finds no mapping, on a PASID whose SVA domain is attached. A process that
    bound before the capture has that domain unseen: PASID 3 here, and PASID 4, whose bind of another device the
    capture saw (the mm's PASID then comes from before: only inferred). PASID 1, allocated, bound and unbound in
    the capture, truly had no domain (the kernel's own Invalid Request: iopf_error_response(), 6.11+)."""
    assert _check(tmp_path, [
        *_fault(1, 3, 6, code=1),
        *_bind(20, 4, dev=OTHER, alloc=False),
        *_fault(30, 4, 8, code=1),
        *_bind(40, 1, mm=200),
        _ev("sva_unbind", 50, device=DSA, pasid=1, mm=200),
        *_fault(60, 1, 9, code=1),
    ], devices=(DeviceInfo(DSA, 20, True), DeviceInfo(OTHER, 20, True))) == [
        ("fault_unattached", "uncertain", 3), ("fault_unattached", "uncertain", 4), ("fault_unattached", "warning", 1)]


# -- 3. Response Failure on a device without PRI --------------------------------------------------------------------
def test_a_failure_answer_disables_pri_only_on_a_device_with_pri_and_never_on_an_smmuv3_stall(
        tmp_path: Path) -> None:
    """PCIe 10.4.2.1: Response Failure disables the function's Page Request Interface. A function without PRI has
    none to disable: SMMUv3 stall devices (HiSilicon SEC2: the capture's device table says pri false) fault through
    the event queue, and drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c arm_smmu_page_response() (6.9+) turns Invalid
    and Failure alike into CMD_RESUME with ABORT: one stalled access ends, the next one stalls again; SMMUv3 gives
    the core no PRI request (arm_smmu_handle_ppr() denies them). On 6.9-6.10 the driver answers Failure itself for a
    stall no handler took ('Nobody cared, abort the access'). A device whose table entry is missing is judged SMMUv3
    by its answers' hook. A VT-d device with PRI sent Failure, then a request, is still found."""
    def failed_then_faults(dev: str, prg: int, **response: Any) -> list[Event]:
        return [*_fault(prg * 100, 1, prg, code=2, dev=dev, **response),
                *_fault(prg * 100 + 50, 1, prg + 1, code=0, dev=dev, **response)]

    table = (DeviceInfo(SEC, 16, False, False, "hisi_sec2"), DeviceInfo(DSA, 20, True, True, "idxd"))
    assert _check(tmp_path, [
        *_bind(1, 1, dev=SEC), *_bind(10, 1, dev=DSA, alloc=False), *_bind(20, 1, dev=OTHER, alloc=False),
        *failed_then_faults(SEC, 1, source="fentry:iopf_group_response"),
        *failed_then_faults(OTHER, 3, source="fentry:arm_smmu_page_response"),  # 6.9-6.10: 'Nobody cared'
        *failed_then_faults(OTHER, 5, source="fentry:iopf_group_response", seen_by=["fentry:arm_smmu_page_response"]),
        *failed_then_faults(DSA, 7, source="fentry:iopf_group_response",
                            seen_by=["fentry:intel_iommu_page_response", "intel_iommu:qi_submit"]),
    ], kernel="6.10.0", devices=table) == [("request_after_failure", "warning", 1)]


# -- 9. a device without PASIDs -------------------------------------------------------------------------------------
def test_a_failed_allocation_for_a_device_without_pasids_is_no_exhausted_space(tmp_path: Path) -> None:
    """drivers/iommu/iommu.c iommu_alloc_global_pasid() (6.6+): 'max_pasids == 0 means that the device does not
    support PASID': it returns IOMMU_PASID_INVALID at once, and a capability of width 0 leaves the range 1..0
    empty; the bind fails -ENOSPC (iommu-sva.c iommu_alloc_mm_data()) with nothing exhausted. A 4-bit device
    whose 15 PASIDs are all live is exhausted."""
    narrow = "0000:6c:00.0"
    table = (DeviceInfo("0000:00:02.0", 0, False, True, "i915"), DeviceInfo(narrow, 4, True, True, "idxd"))
    assert _check(tmp_path, [
        _ev("pasid_alloc", 1, device="0000:00:02.0", path="sva", mm=100, error=-28),
        *(_ev("pasid_alloc", 10 + p, device=narrow, pasid=p, path="driver") for p in range(1, 16)),
        _ev("pasid_alloc", 40, device=narrow, path="driver", error=-28),
    ], kernel="6.8.0", devices=table) == [("space_exhausted", "warning", None)]


def test_a_second_mm_binding_a_pasid_another_mm_holds_is_found_but_not_once_its_free_was_seen(
        tmp_path: Path) -> None:
    """iommu_sva_bind_device(): an mm's first bind allocates its own PASID (drivers/iommu/ioasid.c ioasid_alloc()
    5.5-6.3, whose row names no mm; iommu.c iommu_alloc_global_pasid() 6.6+), which goes back at the last unbind
    (up to 5.17) or the mm's drop (5.18+). Another mm binding it while the first still holds it, no free seen
    between, means the free went missing or the number was handed out twice; after a seen free and a new
    allocation it is the allocator's to give again."""
    def ioasid(t_us: int, pasid: int, kind: str = "pasid_alloc") -> Event:
        return _ev(kind, t_us, pasid=pasid, path="ioasid")

    def bind(t_us: int, mm: int, dev: str = DSA) -> list[Event]:
        return _bind(t_us, 1, dev, alloc=False, mm=mm)

    twice = [ioasid(1, 1), *bind(2, 100), *bind(20, 200, OTHER)]
    given_again = [ioasid(1, 1), *bind(2, 100), _ev("sva_unbind", 10, device=DSA, pasid=1, mm=100),
                   _ev("mm_exit", 11, mm=100), ioasid(12, 1, "pasid_free"), ioasid(20, 1), *bind(21, 200, OTHER)]
    devices = (DeviceInfo(DSA, 20, True, True, "idxd"), DeviceInfo(OTHER, 20, True, True, "idxd"))
    # (before 6.2 no probe names an unbind's mm: the lifecycle is uncertain from the start, and so the finding)
    assert _check(tmp_path, twice, "6.1.0", devices) == [("double_alloc", "uncertain", 1)]
    assert _check(tmp_path, given_again, "6.1.0", devices) == []
    assert _check(tmp_path, [*_bind(1, 1, mm=100), *bind(20, 200, OTHER)], "6.12.10", devices) == [
        ("double_alloc", "error", 1)]
