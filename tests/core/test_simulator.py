"""The allocator model: kernel rules, invariant findings, and time travel that agrees with a straight replay."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.events import AllocPath, DomainType, Event, Kind, make
from explorer.index import CHECKPOINT_EVERY, RecordingIndex
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter, write_events
from explorer.simulator import SimState, Simulator
from explorer.simulator.checks import Severity
from explorer.workload import generate_rows, workload_header, write_workload

DSA, NARROW = "0000:6a:01.0", "0000:3b:00.0"
DEVICES = [DeviceInfo(DSA, 20, True, True, "idxd"), DeviceInfo(NARROW, 3, True, True, "tiny")]


def run(events: list[Event], kernel: str = "6.18") -> Simulator:
    sim = Simulator(DEVICES, kernel=kernel)
    sim.apply_all(events)
    if events:
        sim.advance(events[-1].ts_ns)
    return sim


def rules(sim: Simulator) -> list[str]:
    return [a.rule for a in sim.anomalies]


def sva_bind(t: int, pid: int, pasid: int, dev: str = DSA) -> list[Event]:
    return [make(Kind.PASID_ALLOC, t, device=dev, pasid=pasid, path=AllocPath.SVA, owner=f"pid {pid}", mm=pid),
            make(Kind.PASID_ATTACH, t + 1, device=dev, pasid=pasid, domain=pid, domain_type=DomainType.SVA),
            make(Kind.SVA_BIND, t + 2, device=dev, pasid=pasid, mm=pid, pid=pid)]


def test_a_clean_lifecycle_has_no_findings_and_ends_empty() -> None:
    evs = sva_bind(0, 10, 1) + [
        make(Kind.PAGE_REQUEST, 10, device=DSA, pasid=1, prg=5, addr=0x1000, last=False),
        make(Kind.PAGE_REQUEST, 11, device=DSA, pasid=1, prg=5, addr=0x2000, last=True),
        make(Kind.PAGE_RESPONSE, 12, device=DSA, pasid=1, prg=5, code=0),
        make(Kind.SVA_UNBIND, 20, device=DSA, pasid=1, mm=10),
        make(Kind.PASID_DETACH, 21, device=DSA, pasid=1, domain_type=DomainType.SVA),
        make(Kind.PASID_FREE, 30, pasid=1, path=AllocPath.SVA, mm=10),
        make(Kind.MM_EXIT, 31, mm=10, pid=10),
    ]
    sim = run(evs)
    assert rules(sim) == []
    st_ = sim.state
    assert not st_.pasids and not st_.binds and not st_.attachments and not st_.groups
    assert st_.high_water == 1 and st_.allocs == 1 and st_.frees == 1


def test_an_mm_keeps_its_pasid_after_the_last_unbind_on_current_kernels_but_not_before_5_18() -> None:
    evs = sva_bind(0, 10, 1) + [make(Kind.SVA_UNBIND, 10, device=DSA, pasid=1, mm=10)]
    assert run(evs, kernel="6.18.44").state.pasids.keys() == {1}
    assert run(evs, kernel="5.15.0").state.pasids == {}  # freed at the last unbind, by the old rule
    # ... and on a current kernel the exit of the mm frees it, even when the probe saw no free event.
    assert run(evs + [make(Kind.MM_EXIT, 20, mm=10)], kernel="6.18").state.pasids == {}


@pytest.mark.parametrize("kernel", ["5.15", "6.1", "5.14.0-427.13.1.el9_4.x86_64"])
def test_an_unbind_seen_after_the_exit_that_implied_it_is_evidence_before_6_2(kernel: str) -> None:
    """Before 6.2 no probe names an unbind's mm (iommu_sva_unbind_device(handle), drivers/iommu/iommu.c: the handle
    has no domain until 6.2), so the model drops an exiting mm's binds itself; the driver's unbind as its files
    close (exit_files() after exit_mm(), kernel/exit.c) may still be seen, from a scenario or an import. It is the
    same unbind, then its detach, then the free: at the last unbind up to 5.17 (iommu_sva_free_pasid(),
    drivers/iommu/iommu-sva-lib.c), at __mmdrop() from 5.18 (mm_pasid_drop(), kernel/fork.c)."""
    evs = sva_bind(0, 3000, 1) + [
        make(Kind.SVA_BIND, 10, device=DSA, pasid=1, mm=3000, pid=3000),  # a second reference on the handle
        make(Kind.MM_EXIT, 1_000_000, mm=3000, pid=3000),
        make(Kind.SVA_UNBIND, 1_200_000, device=DSA, pasid=1, mm=3000),
        make(Kind.SVA_UNBIND, 1_200_001, device=DSA, pasid=1, mm=3000),
        make(Kind.PASID_DETACH, 1_200_002, device=DSA, pasid=1, domain_type=DomainType.SVA),
        make(Kind.PASID_FREE, 1_200_003, pasid=1, path=AllocPath.SVA, mm=3000)]
    assert rules(run(evs, kernel)) == []
    # One unbind too many is still one without a bind
    assert rules(run(evs + [make(Kind.SVA_UNBIND, 1_300_000, device=DSA, pasid=1, mm=3000)], kernel)) == [
        "detach_unattached"]


def _captured(tmp_path: Path, kernel: str, events: list[Event]) -> RecordingIndex:
    """The index of `events` as a capture of `kernel` recorded them (its blind spots make its lifecycle uncertain)."""
    path = tmp_path / "capture.pasidrec"
    write_events(str(path), Header(source="capture", host={"kernel": kernel}, devices=DEVICES), events)
    return RecordingIndex.build(Recording(path))


def test_an_ioasid_allocation_is_the_mm_s_that_binds_it_and_goes_with_its_free(tmp_path: Path) -> None:
    """5.5-6.3 an mm's first bind takes its PASID with ioasid_alloc(set, min, max, private) and 5.11-5.17 the last
    unbind gives it back through ioasid_put() (drivers/iommu/ioasid.c, drivers/iommu/iommu-sva-lib.c 5.15): neither
    names a device or an mm, so a capture's rows carry neither (probes/decode.py). The bind that follows names the
    allocation's mm; once its free is seen the mm has no PASID, and its next bind's new one is no second PASID."""
    a, b = 0xFFFF_8881_0000_1000, 0xFFFF_8881_0000_2000  # two mms, as a capture names them
    events = [make(Kind.PASID_ALLOC, 0, pasid=1, path=AllocPath.IOASID, owner="pid 10 (a)", pid=10, comm="a"),
              make(Kind.SVA_BIND, 1, device=DSA, pasid=1, mm=a, pid=10, comm="a"),
              make(Kind.PASID_FREE, 10, pasid=1, path=AllocPath.IOASID, pid=10, comm="a"),  # a's last unbind
              make(Kind.PASID_ALLOC, 20, pasid=1, path=AllocPath.IOASID, owner="pid 11 (b)", pid=11, comm="b"),
              make(Kind.SVA_BIND, 21, device=DSA, pasid=1, mm=b, pid=11, comm="b"),
              make(Kind.PASID_ALLOC, 30, pasid=2, path=AllocPath.IOASID, owner="pid 10 (a)", pid=10, comm="a"),
              make(Kind.SVA_BIND, 31, device=DSA, pasid=2, mm=a, pid=10, comm="a"),
              make(Kind.PASID_FREE, 40, pasid=2, path=AllocPath.IOASID, pid=10, comm="a"),
              make(Kind.PASID_FREE, 41, pasid=1, path=AllocPath.IOASID, pid=11, comm="b"),
              make(Kind.MM_EXIT, 50, mm=a, pid=10), make(Kind.MM_EXIT, 51, mm=b, pid=11)]
    idx = _captured(tmp_path, "5.15", events)
    assert idx.anomalies == []
    mid = idx.state_at(31)
    assert (mid.pasids[1].mm, mid.pasids[1].owner) == (b, "pid 11 (b)") and mid.pasids[2].mm == a
    assert idx.state_at(51).pasids == {}


@pytest.mark.parametrize("kernel, found", [("6.5", []), ("6.8", ["use_after_free", "use_after_free"])])
def test_a_freed_sva_pasid_bound_again_is_a_new_allocation_only_where_no_hook_sees_allocations(
        tmp_path: Path, kernel: str, found: list[str]) -> None:
    """6.4-6.5 an mm's PASID comes from an IDA static to drivers/iommu/iommu-sva.c (iommu_sva_alloc_pasid(), 6.5),
    which no hook sees, and mm_pasid_drop() gives it back to the IDA, whose lowest free number the next mm gets: an
    SVA attach and bind of a number freed before are that unseen allocation. From 6.6 iommu_alloc_global_pasid()
    (drivers/iommu/iommu.c) shows every allocation, and the same rows mean a PASID bound after its free."""
    events: list[Event] = []
    for t, mm in ((0, 10), (100, 11)):
        events += [make(Kind.PASID_ATTACH, t, device=DSA, pasid=1, domain=mm, domain_type=DomainType.SVA),
                   make(Kind.SVA_BIND, t + 1, device=DSA, pasid=1, mm=mm, pid=mm),
                   make(Kind.SVA_UNBIND, t + 10, device=DSA, pasid=1, mm=mm),
                   make(Kind.PASID_DETACH, t + 11, device=DSA, pasid=1, domain=mm, domain_type=DomainType.SVA),
                   make(Kind.MM_EXIT, t + 20, mm=mm, pid=mm),
                   make(Kind.PASID_FREE, t + 21, pasid=1, path=AllocPath.SVA, mm=mm)]
    assert [a.rule for a in _captured(tmp_path, kernel, events).anomalies] == found


@pytest.mark.parametrize("events, expected", [
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.PASID_FREE, 5, pasid=1), make(Kind.PASID_FREE, 6, pasid=1)],
                 ["free_while_attached", "double_free"], id="double free"),
    pytest.param([make(Kind.PASID_ALLOC, 1, device=DSA, pasid=5, path="driver", pid=1, comm="a"),
                  make(Kind.PASID_ALLOC, 2, device=DSA, pasid=5, path="driver", pid=2, comm="b")],
                 ["double_alloc"], id="handed out twice (was titled 'PASID freed twice')"),
    pytest.param([make(Kind.PAGE_REQUEST, 1, device=DSA, pasid=9, prg=1, addr=0),
                  make(Kind.PAGE_RESPONSE, 2, device=DSA, pasid=9, prg=1, code=1, by="kernel")], ["fault_unattached"],
                 id="request on an unattached PASID, refused by the kernel"),
    pytest.param([make(Kind.PASID_ALLOC, 0, device=NARROW, pasid=12, path=AllocPath.DRIVER)], ["beyond_width"],
                 id="beyond width"),
    pytest.param([make(Kind.PASID_ALLOC, 0, device=NARROW, path=AllocPath.SVA, error=-28)], ["space_exhausted"],
                 id="exhausted"),
    pytest.param([make(Kind.PAGE_RESPONSE, 1, device=DSA, pasid=1, prg=3, code=0)], ["response_without_group"],
                 id="stray response"),
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.PAGE_REQUEST, 5, device=DSA, pasid=1, prg=3, addr=0),
                                       make(Kind.PAGE_RESPONSE, 6, device=DSA, pasid=1, prg=3, code=0),
                                       make(Kind.PAGE_RESPONSE, 7, device=DSA, pasid=1, prg=3, code=0)],
                 ["duplicate_response"], id="duplicate response"),
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.PAGE_REQUEST, 5, device=DSA, pasid=1, prg=3, addr=0),
                                       make(Kind.MARKER, 200_000_000, text="later")],
                 ["unanswered_group"], id="unanswered"),
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.PASID_ALLOC, 5, device=DSA, pasid=2, path=AllocPath.SVA, mm=10)],
                 ["second_sva_pasid"], id="two PASIDs for one mm"),
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.PASID_ATTACH, 5, device=DSA, pasid=1, domain_type="paging")],
                 ["attach_conflict"], id="attached twice"),
    pytest.param(sva_bind(0, 10, 1) + [make(Kind.MM_EXIT, 5, mm=10), make(Kind.MARKER, 300_000_000, text="x")],
                 ["mm_exit_with_binds"], id="exit holding binds"),
    pytest.param([make(Kind.PASID_ATTACH, 0, device=DSA, pasid=0, domain_type="paging")], ["reserved_pasid"],
                 id="PASID 0"),
    pytest.param([make(Kind.PASID_ALLOC, 0, pasid=1, path=AllocPath.IOMMUFD),
                  make(Kind.SVA_BIND, 5, device=DSA, pasid=7, mm=10, pid=10)], ["use_unallocated"],
                 id="bind of a PASID nobody allocated"),
    pytest.param(sva_bind(0, 10, 1) + [
        make(Kind.PAGE_REQUEST, 5, device=DSA, pasid=1, prg=3, addr=0, needs_pasid=True),
        make(Kind.PAGE_RESPONSE, 6, device=DSA, prg=3, code=0),
        make(Kind.MARKER, 200_000_000, text="later")],
        ["response_without_group", "unanswered_group"], id="response without the PASID its group needs"),
])
def test_each_broken_invariant_is_found_once_with_its_evidence(events: list[Event], expected: list[str]) -> None:
    sim = run(events)
    assert rules(sim) == expected
    for a in sim.anomalies:
        assert a.explanation and a.title != a.rule and a.lesson
        assert all(0 <= i < len(events) for i in a.evidence) and a.evidence


def test_a_pasid_past_the_20_bit_space_is_beyond_width_and_leaves_later_findings_certain() -> None:
    """The schema lets a recording's PASIDs up to 2^32 through (a hostile or corrupt file), and the model reports one
    past the device's width, as for any allocation beyond max_pasids (drivers/iommu/iommu.c
    iommu_alloc_global_pasid(), 6.6+: ida_alloc_range(..., dev->iommu->max_pasids - 1)). It must not read as an
    event the model cannot apply, which would leave every later finding uncertain."""
    sim = Simulator(kernel="6.18")
    for i, (kind, pasid) in enumerate([("pasid_alloc", 2_000_000), ("pasid_alloc", 7), ("pasid_free", 7),
                                       ("pasid_free", 7)]):
        sim.apply_row([i, kind, DSA, pasid, 0, 1, "a", "t", {"path": "driver"} if kind == "pasid_alloc" else {}], i)
    assert [(a.rule, a.severity) for a in sim.anomalies] == [("beyond_width", Severity.ERROR),
                                                              ("double_free", Severity.ERROR)]
    assert set(sim.state.pasids) == {2_000_000}


def test_user_chosen_pasids_are_attached_per_device_without_an_allocation() -> None:
    """iommufd/VFIO (6.15+): user space picks the PASID for a (device, PASID) attach; the global allocator never
    sees it, and requests routed to the user's fault queue (or to a nested domain at the RID, for drivers with a
    user-managed PASID table: io-pgfault.c find_fault_handler()) are answered by user space. Nothing to report.
    The same number on another device's SVA bind is a different slot of a different table."""
    evs = [make(Kind.PASID_ATTACH, 0, device=DSA, pasid=5, domain=7, domain_type=DomainType.NESTED, fault_queue=3),
           make(Kind.PAGE_REQUEST, 1, device=DSA, pasid=5, prg=1, addr=0),
           make(Kind.PAGE_RESPONSE, 2, device=DSA, pasid=5, prg=1, code=0, by="user"),
           make(Kind.PAGE_REQUEST, 3, device=DSA, pasid=9, prg=2, addr=0),  # the RID's nested domain takes it
           make(Kind.PAGE_RESPONSE, 4, device=DSA, pasid=9, prg=2, code=1, by="user"),
           *sva_bind(5, 10, 5, dev=NARROW)]
    sim = run(evs)
    assert rules(sim) == []
    atts = sim.state.attachments
    assert atts[(NARROW, 5)].global_pasid and not atts[(DSA, 5)].global_pasid
    sim = run(evs + [make(Kind.PASID_DETACH, 9, device=NARROW, pasid=5, domain_type=DomainType.SVA),
                     make(Kind.PASID_FREE, 10, pasid=5, path=AllocPath.SVA, mm=10)])
    assert rules(sim) == []  # DSA's user PASID 5 stays attached: not the allocator's number


def test_a_driver_freeing_its_pasid_says_nothing_of_a_vm_attach_at_the_same_number_on_another_device() -> None:
    """6.15+: a VMM attaches (device, PASID) at a number user space chose in that device's own table
    (VFIO_DEVICE_ATTACH_PASID, drivers/iommu/iommufd/device.c iommufd_device_attach(idev, pasid, ...) 6.15; the
    host allocator never sees it). A driver's global PASID of the same number (iommu_alloc_global_pasid(),
    drivers/iommu/iommu.c 6.6+) is another thing: its free leaves the VM's attach alone."""
    vfio = "0000:b1:00.0"
    evs = [make(Kind.PASID_ALLOC, 0, device=DSA, pasid=1, path=AllocPath.DRIVER, owner="idxd"),
           make(Kind.PASID_ATTACH, 1, device=DSA, pasid=1, domain=3, domain_type=DomainType.PAGING, dma_api=True),
           make(Kind.PASID_ATTACH, 2, device=vfio, pasid=1, domain=4, domain_type=DomainType.NESTED, guest_pasid=1,
                vm="vm0", fault_queue=7),
           make(Kind.PASID_DETACH, 3, device=DSA, pasid=1, domain_type=DomainType.PAGING),
           make(Kind.PASID_FREE, 4, pasid=1, path=AllocPath.DRIVER, owner="idxd"),
           make(Kind.PASID_DETACH, 5, device=vfio, pasid=1, domain_type=DomainType.NESTED)]
    assert rules(run(evs)) == []
    assert not run(evs[:3]).state.attachments[(vfio, 1)].global_pasid
    # The driver's own attach is of its global number: freeing under it is still found.
    assert rules(run(evs[:3] + evs[4:5])) == ["free_while_attached"]
    # Before 6.15 no user-chosen PASID could be attached: a nested attach was of an allocated (ioasid) number.
    assert rules(run(evs[:3] + evs[4:5], kernel="5.15")) == ["free_while_attached", "free_while_attached"]


@pytest.mark.parametrize("kernel", ["6.15", "6.18"])
def test_a_driver_freeing_its_pasid_says_nothing_of_a_user_paging_attach_at_the_same_number(kernel: str) -> None:
    """6.15+: a user-space driver (no VM, no fault queue) attaches its VFIO device's PASID 1 to a paging HWPT
    (VFIO_DEVICE_ATTACH_PASID, drivers/iommu/iommufd/device.c 6.15): an IOMMU_DOMAIN_UNMANAGED domain, the
    __IOMMU_DOMAIN_PAGING bit alone (include/linux/iommu.h), in the device's own table. A kernel driver's attach is
    of its DMA-API domain (IOMMU_DOMAIN_DMA/_DMA_FQ, with __IOMMU_DOMAIN_DMA_API), and only that one is of its
    global number (iommu_alloc_global_pasid(), drivers/iommu/iommu.c 6.6+)."""
    vfio = "0000:17:00.0"
    alloc = make(Kind.PASID_ALLOC, 0, device=DSA, pasid=1, path=AllocPath.DRIVER, owner="idxd")
    user = make(Kind.PASID_ATTACH, 2, device=vfio, pasid=1, domain=9, domain_type=DomainType.PAGING, dma_api=False)
    free = make(Kind.PASID_FREE, 4, pasid=1, path=AllocPath.DRIVER, owner="idxd")
    assert rules(run([alloc, user, free], kernel)) == []
    # The driver's own DMA-API attach freed under it is still found; one whose domain is not known is not
    driver = make(Kind.PASID_ATTACH, 1, device=DSA, pasid=1, domain=3, domain_type=DomainType.PAGING, dma_api=True)
    assert rules(run([alloc, driver, user, free], kernel)) == ["free_while_attached"]
    unknown = make(Kind.PASID_ATTACH, 1, device=DSA, pasid=1, domain=3, domain_type=DomainType.PAGING)
    assert rules(run([alloc, unknown, free], kernel)) == []
    assert rules(run([alloc, unknown, free], "6.14")) == ["free_while_attached"]  # no user PASIDs before 6.15
    # An identity domain is never user space's (iommufd makes none): a driver attaching its device's default domain
    # on a passthrough host (IOMMU_DOMAIN_IDENTITY, __IOMMU_DOMAIN_PT) is of its global number, and freed under it
    identity = make(Kind.PASID_ATTACH, 1, device=DSA, pasid=1, domain=3, domain_type=DomainType.IDENTITY)
    assert rules(run([alloc, identity, free], kernel)) == ["free_while_attached"]


def test_a_group_no_domain_of_its_own_takes_is_uncertain_unless_user_space_is_known_to_answer_them() -> None:
    """6.11+ io-pgfault.c find_fault_handler(): a PASID with no attach handle goes to the RID's nested domain where
    the driver keeps a user-managed PASID table (SMMUv3, the iommufd mock), else nowhere (the kernel answers
    Invalid itself, unseen off VT-d). Once user space answered one such group, later ones wait on it."""
    late = make(Kind.MARKER, 300_000_000, text="later")
    alone = run([make(Kind.PAGE_REQUEST, 1, device=DSA, pasid=16, prg=3, addr=0), late])
    assert [(a.rule, a.severity) for a in alone.anomalies] == [("unanswered_group", "uncertain")]
    known = run([make(Kind.PAGE_REQUEST, 1, device=DSA, pasid=16, prg=2, addr=0),
                 make(Kind.PAGE_RESPONSE, 2, device=DSA, pasid=16, prg=2, code=0, by="user"),
                 make(Kind.PAGE_REQUEST, 3, device=DSA, pasid=16, prg=3, addr=0), late])
    assert [(a.rule, a.severity) for a in known.anomalies] == [("unanswered_group", "warning")]


def test_a_group_answered_late_names_who_answered_and_how_late() -> None:
    """A group past the stale threshold that is then answered is reported with its answer, not as unseen. The
    first request on a PASID with no domain of its own goes to the kernel unless a nested domain at the RID takes
    it (6.11+ io-pgfault.c find_fault_handler()); the iommufd mock's fault queue (the lab's faultq, 6.12) is
    such a case, and on a loaded host its answer can come 133 ms later."""
    evs = [make(Kind.PAGE_REQUEST, 1_000, device=DSA, pasid=16, prg=2, addr=0),
           make(Kind.PAGE_RESPONSE, 133_001_000, device=DSA, pasid=16, prg=2, code=0, by="user")]
    [late] = run(evs).anomalies
    assert (late.rule, late.severity, late.evidence) == ("unanswered_group", "uncertain", (0, 1))
    assert "answered by user space 133.000 ms after its request with Last" in late.explanation
    assert "no answer was seen" not in late.explanation
    attached = sva_bind(0, 10, 1) + [make(Kind.PAGE_REQUEST, 1_000, device=DSA, pasid=1, prg=3, addr=0),
                                     make(Kind.PAGE_RESPONSE, 150_001_000, device=DSA, pasid=1, prg=3, code=0,
                                          by="kernel")]
    [slow] = run(attached).anomalies
    assert slow.severity == "warning" and "answered by the kernel 150.000 ms after" in slow.explanation


def test_a_response_matches_on_its_prg_alone_when_the_group_does_not_need_the_pasid() -> None:
    evs = sva_bind(0, 10, 1) + [
        make(Kind.PAGE_REQUEST, 5, device=DSA, pasid=1, prg=3, addr=0, needs_pasid=False),
        make(Kind.PAGE_RESPONSE, 6, device=DSA, prg=3, code=0),
        make(Kind.MARKER, 200_000_000, text="later")]
    sim = run(evs)
    assert rules(sim) == [] and not sim.state.groups


def test_after_lost_events_findings_a_loss_could_explain_are_uncertain() -> None:
    evs = [make(Kind.LOST, 0, count=5, cpu=1), make(Kind.PAGE_RESPONSE, 1, device=DSA, pasid=1, prg=3, code=0)]
    sim = run(evs)
    assert [(a.rule, a.severity) for a in sim.anomalies] == [("events_lost", "uncertain"),
                                                             ("response_without_group", "uncertain")]
    assert sim.state.uncertain and sim.state.lost == 5


def test_a_late_response_and_a_never_answered_group_are_both_reported_at_their_due_time() -> None:
    evs = sva_bind(0, 10, 1) + [make(Kind.PAGE_REQUEST, 1000, device=DSA, pasid=1, prg=1, addr=0),
                                make(Kind.PAGE_REQUEST, 2000, device=DSA, pasid=1, prg=2, addr=0),
                                make(Kind.PAGE_RESPONSE, 150_000_000, device=DSA, pasid=1, prg=1, code=0),
                                make(Kind.MARKER, 400_000_000, text="end")]
    one_by_one = run(evs)
    rows = [e.to_row() for e in evs]
    batched = Simulator(DEVICES, kernel="6.18")
    batched.apply_rows(rows, range(len(rows)), 0)
    for sim in (one_by_one, batched):
        assert sorted((a.rule, a.ts_ns) for a in sim.anomalies) == [("unanswered_group", 100_001_000),
                                                                   ("unanswered_group", 100_002_000)]


def _naive_state(events: list[list], upto: int, header: Header, t: int, lost_before: dict[int, list] | None = None
                 ) -> SimState:
    """One event at a time from the start, then time passes to `t`: what a seek to `t` must give. `lost_before`:
    a loss (a row, which is no event of the stream) that comes before event i."""
    sim = Simulator(header.devices, kernel=header.kernel)
    lost_before = lost_before or {}
    for i, row in enumerate(events[:upto]):
        if i in lost_before:
            sim.apply_row(lost_before[i], -1)
        sim.apply_row(row, i)
    if upto in lost_before:
        sim.apply_row(lost_before[upto], -1)
    sim.advance(t)
    return sim.state


# Left out: what only serves findings (checkpoints drop it, since a replay reports nothing) and the index of the
# last event applied (a batch counts only the events that change state), and the table of what packed records'
# numbers stand for (each model's own: the records are compared as they read back).
NOT_STATE = {"answered", "answered_before", "stale_queue", "exit_reported", "index", "atoms"}


def _comparable(s: SimState) -> dict:
    return {f.name: getattr(s, f.name) for f in fields(s) if f.name not in NOT_STATE and f.compare} | {
        "pasid_records": dict(s.pasids), "group_records": dict(s.groups)}


@pytest.mark.parametrize("between", [5, 20_000])
def test_a_seek_past_an_exit_before_6_2_equals_a_straight_replay_whatever_checkpoint_lies_between(
        tmp_path: Path, between: int) -> None:
    """Before 6.2 the model drops an exiting mm's binds itself and takes the unbind seen later as that same one
    (iommu_sva_unbind_device(handle) names no mm before 6.2, drivers/iommu/iommu.c), noting its detach as implied.
    A checkpoint between the exit and the unbind forgot the dropped binds, so a seek past it did not note it."""
    dev, path = "0000:00:01.0", tmp_path / "exit.pasidrec"
    header = Header(source="test", host={"kernel": "6.1.0"}, devices=[DeviceInfo(dev, 20, True, True, "t")])
    rows: list[list] = [[1000, "pasid_alloc", dev, 5, 0, 77, "p", "t", {"path": "sva", "mm": 77}],
                        [2000, "pasid_attach", dev, 5, 0, 77, "p", "t", {"domain": 1, "domain_type": "sva"}],
                        [3000, "sva_bind", dev, 5, 0, 77, "p", "t", {"mm": 77}],
                        [4000, "mm_exit", None, None, 0, 77, "p", "t", {"mm": 77}]]
    rows += [[5000 + 1000 * i, "map", None, None, 0, None, None, "t", {"iova": 0, "paddr": 0, "size": 4096}]
             for i in range(between)]
    t = rows[-1][0] + 1000
    rows += [[t, "sva_unbind", dev, 5, 0, 77, "p", "t", {"mm": 77}],
             [t + 1000, "map", None, None, 0, None, None, "t", {"iova": 0, "paddr": 0, "size": 4096}]]
    with RecordingWriter(path, header, chunk_events=50) as w:
        for row in rows:
            w.append_row(row)
    idx = RecordingIndex.build(Recording(path))
    assert not idx.anomalies
    seek = idx.state_at(t + 1)
    assert seek.implied_detach == {(dev, 5): len(rows) - 2}
    assert _comparable(seek) == _comparable(_naive_state(rows, len(rows) - 1, idx.header, t + 1))


def test_state_at_any_time_equals_a_straight_replay_up_to_that_time(tmp_path: Path) -> None:
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=3, slow_every=500, loss_every=200)
    rows = list(Recording(path).iter_rows())
    idx = RecordingIndex.build(Recording(path))
    rng = random.Random(5)
    for _ in range(25):
        t = rng.randrange(idx.start_ns, idx.end_ns)
        upto = idx.index_at(t)
        assert _comparable(idx.state_at(t)) == _comparable(_naive_state(rows, upto, idx.header, t))


def test_seeks_that_go_on_from_the_last_one_equal_a_straight_replay(tmp_path: Path) -> None:
    """A frame seeks the selected event's time and then the cursor's, and a cursor key moves on a little: a seek
    goes on from the last one's events (none between them, or a few) and must give the same state."""
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 30_000, seed=3, slow_every=500, loss_every=200)
    rows = list(Recording(path).iter_rows())
    idx = RecordingIndex.build(Recording(path))
    rng = random.Random(7)
    t = idx.start_ns
    for _ in range(30):
        t = min(max(t + rng.choice([0, 1, 700, 9_000, 400_000, -5_000]), idx.start_ns), idx.end_ns)
        assert _comparable(idx.state_at(t)) == _comparable(_naive_state(rows, idx.index_at(t), idx.header, t))


def test_a_big_batch_fed_live_gets_checkpoints_inside_it() -> None:
    rows = list(generate_rows(3 * CHECKPOINT_EVERY + 100, seed=4, slow_every=300))
    idx = RecordingIndex(workload_header(len(rows), 4))
    idx.add_rows(rows)
    idx.finish()
    assert len(idx._checkpoint_starts) >= 4  # noqa: SLF001 - the bound on replay is the behaviour under test
    for t in (idx.start_ns, int(idx.ts[len(rows) // 2]), int(idx.ts[-10])):
        assert _comparable(idx.state_at(t)) == _comparable(_naive_state(rows, idx.index_at(t), idx.header, t))


def test_the_workload_is_well_formed_apart_from_what_it_plants() -> None:
    rows = list(generate_rows(250_000, seed=11, slow_every=300))  # spans about 250 ms
    assert len(rows) == 250_000 and [r[0] for r in rows] == sorted(r[0] for r in rows)
    header = workload_header(250_000, 11)
    idx = RecordingIndex(header)
    idx.add_rows(rows)
    idx.finish()
    found = {a.rule for a in idx.anomalies}
    assert found == {"unanswered_group"}
    assert list(generate_rows(500, seed=11)) == rows[:500], "the same seed must give the same recording"


def test_the_workload_with_losses_gives_no_error_a_lifecycle_could_explain() -> None:
    """`generate --seed 7 --slow-every 200 --loss-every 500` unbound a device a step before the bind it undid (a
    process's exit right after it bound another device): a detach_unattached ERROR the generator never meant."""
    rows = list(generate_rows(80_000, seed=7, slow_every=200, loss_every=500))
    idx = RecordingIndex(workload_header(80_000, 7))
    idx.add_rows(rows)
    idx.finish()
    assert not [(a.rule, a.explanation) for a in idx.anomalies if a.severity == Severity.ERROR]


def _script_made_findings(steps: list) -> Counter[str]:
    """The findings a random script asks for itself, predicted from the script alone: an unbind of a device the
    actor holds no bind on (`detach_unattached`), a response when no group is open on that (device, PRG): to a
    group answered before (`duplicate_response`) or to one never asked (`response_without_group`). Exhaustion and
    unanswered groups cannot happen here (at most four mms; steps end long before a group goes stale)."""
    found: Counter[str] = Counter()
    refs: Counter[tuple[str, str]] = Counter()
    open_groups: set[tuple[str, int]] = set()
    answered: set[tuple[str, int]] = set()
    for step in steps:
        p = step.params
        if step.action == "bind":
            refs[p["actor"], p["device"]] += 1
        elif step.action == "unbind":
            if refs[p["actor"], p["device"]]:
                refs[p["actor"], p["device"]] -= 1
            else:
                found["detach_unattached"] += 1
        elif step.action == "request":
            open_groups.add((p["device"], p["prg"]))
        elif step.action == "respond":
            group = (p["device"], p["prg"])
            if group in open_groups:
                open_groups.remove(group)
                answered.add(group)
            else:
                found["duplicate_response" if group in answered else "response_without_group"] += 1
    return found


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["bind", "unbind", "exit", "request", "respond"]),
                          st.integers(1, 4), st.sampled_from([DSA, NARROW])), max_size=40))
def test_random_scenario_scripts_never_break_the_model_through_the_kernels_own_rules(
        tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, int, str]]) -> None:
    """Whatever order processes bind, unbind, exit and fault in, events made by the kernel's rules (the scenario
    runner) trip no invariant: every finding is one the script itself made (it unbinds what it never bound, or
    answers a group that is not outstanding), exactly as many as the script made, and the index agrees."""
    from explorer.scenarios.language import Actor, DeviceSpec, Scenario, Step
    from explorer.scenarios.play import ScenarioRun

    actors = {f"p{i}": Actor(f"p{i}", 100 + i, f"proc{i}") for i in range(1, 5)}
    steps, t, exited = [], 0, set()
    for action, who, dev in script:
        t += 1_000_000
        name = f"p{who}"
        if name in exited:
            continue
        if action == "exit":
            exited.add(name)
            steps.append(Step(1, t, "exit", {"actor": name}))
        elif action in ("bind", "unbind"):
            steps.append(Step(1, t, action, {"actor": name, "device": dev}))
        else:
            steps.append(Step(1, t, action, {"device": dev, "prg": who}))
    sc = Scenario("random.yaml", "random", "", "6.18", 100_000_000,
                  [DeviceSpec(DSA, 20), DeviceSpec(NARROW, 3)], actors, steps)
    run_ = ScenarioRun(sc)
    assert Counter(a.rule for a in run_.sim.anomalies) == _script_made_findings(steps)
    path = tmp_path_factory.mktemp("rand") / "r.pasidrec"
    write_events(path, run_.header, run_.events)
    with Recording(path) as rec:  # closed each time: a run of thousands of examples must not run out of fds
        idx = RecordingIndex.build(rec)
    assert [a.rule for a in idx.anomalies] == [a.rule for a in sorted(run_.sim.anomalies, key=lambda a: a.ts_ns)]


def _findings(idx: RecordingIndex) -> list[tuple]:
    return [(a.rule, a.ts_ns, a.device, a.pasid, a.evidence, a.severity) for a in idx.anomalies]


def test_a_recording_opened_from_its_columns_models_later_to_the_same_states_and_findings(tmp_path: Path) -> None:
    """What the explorer does with a big file: the timeline from the stored columns first, the model after, in
    steps. Each step gives the state a straight replay gives, a chunk damaged on disk counting as its events
    lost, and the findings end as those of a model run while indexing."""
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 40_000, seed=8, slow_every=450, loss_every=350)
    rec = Recording(path)
    hit = rec.chunks[len(rec.chunks) // 2]
    data = bytearray(path.read_bytes())
    data[hit.payload_offset + hit.length // 2] ^= 0x40
    path.write_bytes(bytes(data))
    rows = list(Recording(path).iter_rows())
    gap_at = sum(c.n for c in rec.chunks[:len(rec.chunks) // 2])
    loss = {gap_at: [hit.t0, "lost", None, None, None, None, None, "recording", {"count": hit.n}]}
    full = RecordingIndex.build(Recording(path))
    later = RecordingIndex.build(Recording(path), model=False)
    assert later.ts.tolist() == full.ts.tolist() and later.damage == full.damage
    assert later.modelled == 0 and not later.covers(later.start_ns) and later.anomalies == []
    rng = random.Random(2)
    times = [rng.randrange(full.start_ns, full.end_ns) for _ in range(6)] + [int(full.ts[gap_at - 1]), hit.t0 + 1]
    for t in sorted(times):
        assert later.run_model(through_ns=t) is False
        assert later.covers(t) and later.modelled < later.n
        upto = later.index_at(t)
        naive = _naive_state(rows, upto, later.header, t, loss if t >= hit.t0 else {})
        assert _comparable(later.state_at(t)) == _comparable(naive) == _comparable(full.state_at(t))
        assert (later.state_at(t).lost >= hit.n) == (t >= hit.t0)  # the last event before the loss: none yet
        so_far = _findings(later)
        assert so_far == [f for f in _findings(full) if f in so_far] and len(so_far) <= len(full.anomalies)
    with pytest.raises(ValueError, match="has not reached"):
        later.state_at(later.end_ns)  # past the model's reach a replay would miss the losses ahead
    assert later.run_model() is True and later.modelled == later.n and later.model_done
    assert _findings(later) == _findings(full) and later.damage == full.damage


def test_a_chunk_damaged_after_indexing_counts_as_lost_when_the_model_gets_there(tmp_path: Path) -> None:
    """The file changed under the explorer between its columns and its model (overwritten, a disk error): the
    model reads the damage, counts that chunk's events lost and goes on; seeks across it do not hang."""
    path = tmp_path / "w.pasidrec"
    write_workload(str(path), 20_000, seed=4, slow_every=300)
    later = RecordingIndex.build(Recording(path), model=False)
    hit = later.recording.chunks[2]
    with open(path, "r+b") as f:
        f.seek(hit.payload_offset + hit.length // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    assert later.run_model() is True
    assert any("checksum" in d for d in later.damage)
    after = later.state_at(int(later.ts[later._chunk_starts[3]]))  # noqa: SLF001
    assert after.uncertain and after.lost >= hit.n
    assert not later.state_at(int(later.ts[later._chunk_starts[2] - 1])).lost  # noqa: SLF001
    assert later.state_at(later.end_ns).lost >= hit.n
