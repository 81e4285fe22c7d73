"""Teaching scenarios: each one shows what it promises, the bundled recordings match their YAML, and mistakes
in a scenario file are named by file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from explorer.cli.main import main
from explorer.errors import ScenarioError
from explorer.export import export
from explorer.index import RecordingIndex
from explorer.recording import Recording
from explorer.scenarios import ACTIONS, bundled_scenarios, load_scenario
from explorer.scenarios.language import ACTOR_KEYS, DEVICE_KEYS, STEP_KEYS, TOP_KEYS, Scenario, Step
from explorer.scenarios.play import ScenarioRun

BUNDLED = bundled_scenarios()


def test_at_least_six_scenarios_ship_in_teaching_order_with_recordings() -> None:
    assert len(BUNDLED) >= 6
    assert [s.name for s in BUNDLED] == sorted(s.name for s in BUNDLED)
    assert all(s.recording_path.exists() for s in BUNDLED)


@pytest.mark.parametrize("scenario", BUNDLED, ids=lambda s: s.name)
def test_each_bundled_scenario_shows_exactly_its_anomalies_and_teaches_with_markers(scenario) -> None:
    run = load_scenario(scenario.yaml_path)
    idx = RecordingIndex.build(Recording(scenario.recording_path))
    assert sorted(a.rule for a in idx.anomalies) == sorted(run.scenario.expect)
    markers = [idx.event(int(i)) for i in range(idx.n) if idx.event(int(i)).kind == "marker"]
    assert len(markers) >= 3 and all(m.get("text") for m in markers)
    assert idx.header.title == run.scenario.title and idx.header.description


@pytest.mark.parametrize("scenario", BUNDLED, ids=lambda s: s.name)
def test_bundled_recordings_are_up_to_date_with_their_yaml(scenario) -> None:
    run = load_scenario(scenario.yaml_path)
    assert list(Recording(scenario.recording_path).iter_events()) == run.events, (
        "regenerate with: pasid-explorer scenarios --rebuild")


@pytest.mark.parametrize("kernel, kinds", [
    ("5.15", ["pasid_free"]), ("6.1", ["pasid_free"]), ("6.18", ["sva_unbind", "pasid_detach", "pasid_free"])])
def test_the_last_unbind_after_exit_writes_the_free_on_every_kernel(tmp_path: Path, kernel: str,
                                                                    kinds: list[str]) -> None:
    """The PASID's free follows the last unbind of an exited process: up to 5.17 the last unbind frees it
    (iommu_sva_free_pasid(), drivers/iommu/iommu-sva-lib.c), from 5.18 the mm's drop that the unbind allows
    (__mmdrop() -> mm_pasid_drop(), kernel/fork.c). The model's own inferences (before 6.2 it drops the binds at
    the exit) do not hide it, and nothing is reported. Before 6.2 the unbind and its detach show nothing."""
    path = _write(tmp_path, GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n") + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    exit: {actor: app}\n"
        "  - at: 1200us\n    unbind: {actor: app, device: d0}\n"))
    run = load_scenario(path)
    assert [e.kind for e in run.events if e.ts_ns >= 1_200_000] == kinds
    assert run.sim.anomalies == []


@pytest.mark.parametrize("kernel, kinds", [
    ("5.15", ["pasid_free", "mm_exit"]),
    ("6.18", ["sva_unbind", "pasid_detach", "mm_exit", "pasid_free"])])
def test_an_unbound_process_s_pasid_is_freed_after_its_exit_from_5_18(tmp_path: Path, kernel: str,
                                                                      kinds: list[str]) -> None:
    """From 5.18 __mmdrop() -> mm_pasid_drop() frees an mm's PASID (kernel/fork.c), and exit_mm() keeps a lazy-TLB
    reference to the mm past the exit (kernel/exit.c): the free follows sched_process_exit. Up to 5.17 the last
    unbind freed it (iommu_sva_free_pasid(), drivers/iommu/iommu-sva-lib.c), before the exit, the unbind itself
    unseen."""
    path = _write(tmp_path, GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n") + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    unbind: {actor: app, device: d0}\n"
        "  - at: 2ms\n    exit: {actor: app}\n"))
    run = load_scenario(path)
    assert [e.kind for e in run.events if e.ts_ns >= 1_000_000] == kinds
    assert run.sim.anomalies == [] and run.sim.state.pasids == {}


@pytest.mark.parametrize("scenario", [s for s in BUNDLED if s.name.startswith(("08-", "10-"))],
                         ids=lambda s: s.name)
def test_a_scenario_before_6_2_shows_only_what_a_capture_of_its_kernel_records(scenario) -> None:
    """Up to 6.1 an SVA bind attaches through the IOMMU driver's sva_bind op (iommu_sva_bind_device(),
    drivers/iommu/iommu.c; PASIDs from drivers/iommu/iommu-sva-lib.c): iommu_attach_device_pasid() and
    iommu_detach_device_pasid() come only in 6.2, and struct iommu_sva (include/linux/iommu.h, 5.2-6.1) holds only
    the device, no domain, so a probe on iommu_sva_unbind_device() cannot name the unbinding mm. A capture of
    such a kernel records no attach, detach or unbind: neither do the bundled recordings, whose markers still say
    each unbind, and whose model still follows it (the PASIDs are all freed, nothing is reported)."""
    rows = list(Recording(scenario.recording_path).iter_rows())
    kinds = {r[1] for r in rows}
    assert kinds.isdisjoint({"pasid_attach", "pasid_detach", "sva_unbind"})
    assert {"sva_bind", "pasid_alloc", "pasid_free"} <= kinds
    assert any("unbinds" in (r[8] or {}).get("text", "") for r in rows if r[1] == "marker")
    idx = RecordingIndex.build(Recording(scenario.recording_path))
    assert idx.anomalies == [] and idx.state_at(rows[-1][0]).pasids == {}


def test_from_6_2_a_scenario_shows_the_attach_detach_and_unbind(tmp_path: Path) -> None:
    """6.2 added iommu_attach_device_pasid()/iommu_detach_device_pasid() (drivers/iommu/iommu.c) and the SVA
    domain in struct iommu_sva (include/linux/iommu.h), which names the unbinding mm."""
    steps = "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    unbind: {actor: app, device: d0}\n"
    for kernel, shown in (("6.1", False), ("6.2", True)):
        run = load_scenario(_write(tmp_path, GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n")
                                   + steps))
        unbind = [e for e in run.events if e.kind == "sva_unbind"]
        assert bool(unbind) == shown and (not unbind or unbind[0].get("mm") == 10)
        assert any(e.kind == "pasid_attach" for e in run.events) == shown
        assert any(e.kind == "pasid_detach" for e in run.events) == shown


_SVA_ALLOC = ("d0", {"path": "sva", "owner": "pid 10 (app)", "mm": 10})
_IOASID_ALLOC = (None, {"path": "ioasid", "owner": "pid 10 (app)"})


@pytest.mark.parametrize("kernel, allocs, free", [
    ("5.15", [_IOASID_ALLOC], ("ioasid", None)), ("6.1", [_IOASID_ALLOC], ("ioasid", None)),
    ("6.3", [_IOASID_ALLOC], ("ioasid", None)), ("6.4", [], ("sva", 10)), ("6.5", [], ("sva", 10)),
    ("6.6", [_SVA_ALLOC], ("sva", 10))])
def test_a_scenario_writes_an_mm_s_allocation_and_free_as_a_capture_of_its_kernel_records_them(
        tmp_path: Path, kernel: str, allocs: list[tuple[str | None, dict[str, object]]],
        free: tuple[str, int | None]) -> None:
    """5.5-6.3 an mm's PASID comes from ioasid_alloc(set, min, max, private) and goes with ioasid_free(ioasid)
    (ioasid_put() 5.11-5.17; drivers/iommu/ioasid.c, 6.1), whose probes read neither a device nor an mm, nor, for
    the free, an owner (probes/decode.py _pasid_alloc, _pasid_free). 6.4-6.5 the static iommu_sva_alloc_pasid()'s
    IDA (drivers/iommu/iommu-sva.c, 6.5) has no hook, and mm_pasid_drop(mm) frees it. 6.6+
    iommu_alloc_global_pasid(dev) (drivers/iommu/iommu.c) allocates for the bind's device and mm. The model follows
    every one of them: PASID 1 is the mm's until its free, and nothing is reported."""
    path = _write(tmp_path, GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n") + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    unbind: {actor: app, device: d0}\n"
        "  - at: 2ms\n    exit: {actor: app}\n"))
    run = load_scenario(path)
    assert [(e.device, dict(e.fields)) for e in run.events if e.kind == "pasid_alloc"] == allocs
    frees = [e for e in run.events if e.kind == "pasid_free"]
    assert [(e.device, e.pasid, e.get("path"), e.get("mm")) for e in frees] == [(None, 1, *free)]
    assert free[0] != "ioasid" or dict(frees[0].fields) == {"path": "ioasid"}
    idx = run.index()
    bound = next(e.ts_ns for e in run.events if e.kind == "sva_bind")
    assert idx.anomalies == [] and idx.state_at(bound).pasids[1].mm == 10 and idx.state_at(2_000_000).pasids == {}


def test_an_mm_s_pasid_freed_on_6_5_goes_to_the_next_mm_without_a_finding(tmp_path: Path) -> None:
    """6.4-6.5 no hook sees the SVA IDA's allocation (drivers/iommu/iommu-sva.c, 6.5), and mm_pasid_drop() gives an
    exited mm's PASID back to it: the next mm's first bind gets the same number, which a capture shows first at the
    bind's iommu_attach_device_pasid(). It is a new allocation, not a use after free."""
    head = GOOD_HEAD.replace("title: t\n", "title: t\nkernel: \"6.5\"\n").replace(
        "script:", "  other: {pid: 11, comm: other}\nscript:")
    run = load_scenario(_write(tmp_path, head + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    unbind: {actor: app, device: d0}\n"
        "  - at: 2ms\n    exit: {actor: app}\n  - at: 3ms\n    bind: {actor: other, device: d0}\n")))
    assert [(e.kind, e.pasid) for e in run.events if e.kind in ("pasid_alloc", "pasid_attach", "pasid_free")] == [
        ("pasid_attach", 1), ("pasid_free", 1), ("pasid_attach", 1)]
    idx = run.index()
    assert idx.anomalies == [] and idx.state_at(run.events[-1].ts_ns).pasids[1].mm == 11


def test_an_exhausted_ioasid_allocation_is_found_without_a_range_its_row_does_not_carry(tmp_path: Path) -> None:
    """6.2-6.3 iommu_sva_bind_device() asks for 1..max_pasids-1 of the device (drivers/iommu/iommu-sva.c, 6.3), but
    ioasid_alloc(set, min, max, private) names no device and its probe reads no range: the exhaustion is found, and
    its text claims no range (it said the whole 20-bit space)."""
    head = GOOD_HEAD.replace("title: t\n", "title: t\nkernel: \"6.3\"\n").replace("width: 4", "width: 1").replace(
        "script:", "  other: {pid: 11, comm: other}\nscript:")
    run = load_scenario(_write(tmp_path, head + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    bind: {actor: other, device: d0}\n")))
    failed = [e for e in run.events if e.kind == "pasid_alloc" and e.get("error")]
    assert [(e.device, e.get("path")) for e in failed] == [(None, "ioasid")]
    [found] = run.index().anomalies
    assert found.rule == "space_exhausted" and "none left in the range it was asked for:" in found.explanation and (
        "1048575" not in found.explanation), found.explanation


def test_a_scenarios_times_read_as_its_author_wrote_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario whose first step is at 10ms shows it at 10ms, not at 0: its steps' `at` count from its own 0."""
    path = _write(tmp_path, GOOD_HEAD.replace("width: 4", "width: 20") + (
        "  - at: 10ms\n    bind: {actor: app, device: d0}\n  - at: 12ms\n    free: {pasid: app, via: sva}\n"))
    assert main(["check", str(path)]) == 1
    assert "ERROR        12.000 ms  PASID freed while still attached" in capsys.readouterr().out
    export(str(path), "chrome-json", str(tmp_path / "t.json"))
    trace = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert min(e["ts"] for e in trace if "ts" in e and e.get("ph") != "M") == 10_000.0  # µs
    assert load_scenario(path).index().start_ns == 0


def test_the_bundled_recording_of_one_process_on_two_devices_frees_its_pasid_after_the_last_unbind() -> None:
    with Recording(BUNDLED[1].recording_path) as rec:
        kinds = [e.kind for e in rec.iter_events()]
    assert kinds.count("pasid_alloc") == kinds.count("pasid_free") == 1
    assert kinds[kinds.index("pasid_free") - 2:kinds.index("pasid_free")] == ["sva_unbind", "pasid_detach"]


def test_the_first_bind_allocates_and_later_binds_share_one_pasid_per_mm() -> None:
    idx = load_scenario(BUNDLED[1].yaml_path).index()  # one process, two devices
    t_both = next(idx.event(i).ts_ns for i in range(idx.n) if idx.event(i).kind == "page_request")
    state = idx.state_at(t_both)
    assert len(state.pasids) == 1
    pasid = next(iter(state.pasids))
    assert sorted(d for (d, p) in state.attachments if p == pasid) == ["0000:6a:01.0", "0000:6a:02.0"]


def test_a_guests_page_requests_wait_on_the_guest_through_the_fault_queue_and_its_answer_closes_them() -> None:
    idx = load_scenario(BUNDLED[2].yaml_path).index()  # a guest PASID through iommufd
    gpu = "0000:17:00.0"
    during = idx.state_at(12_300_000)  # the guest has the request, not yet its answer
    att = during.attachments[(gpu, 5)]  # at the guest's own number, which nobody allocated (F6-F8)
    assert (att.domain_type, att.fault_queue, att.route, att.global_pasid) == ("nested", 4, "guest", False)
    assert 5 not in during.pasids
    (group, age), = during.outstanding()
    assert (group.device, group.pasid, group.prg, group.requests, group.closed) == (gpu, 5, 12, 2, True)
    assert group.route == "guest" and 12_000_000 <= group.first_ns < 12_300_000
    assert age == 12_300_000 - group.first_ns
    answer = next(e for e in idx.events(range(idx.n)) if e.kind == "page_response")
    assert (answer.device, answer.pasid, answer.get("prg"), answer.get("by")) == (gpu, 5, 12, "guest")
    assert not idx.state_at(answer.ts_ns).groups  # the guest's answer, through the queue, closed the group
    assert not idx.anomalies


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


TWO_DRIVERS = """title: t
kernel: "6.15"
devices:
  - {name: dsa, width: 20}
  - {name: vf, width: 20}
actors:
  drv: {pid: 2, comm: kworker}
  app: {pid: 300, comm: dpdk}
  qemu: {pid: 400, comm: qemu, vm: g0}
script:
  - at: 1ms
    alloc: {actor: drv, as: k, device: dsa}
  - attach: {actor: drv, device: dsa, pasid: k, via: driver}
  - attach: {actor: app, device: vf, pasid: 1, domain: paging}
"""


def test_a_kernel_drivers_global_pasid_is_not_a_user_space_drivers_own_number_on_6_15(tmp_path: Path) -> None:
    """A kernel driver attaches its global PASID (iommu_alloc_global_pasid(), drivers/iommu/iommu.c 6.6+) to its
    device's DMA-API domain (IOMMU_DOMAIN_DMA: __IOMMU_DOMAIN_DMA_API, include/linux/iommu.h); a user-space
    driver attaches a number of its own choosing on its VFIO device to a paging HWPT (IOMMU_DOMAIN_UNMANAGED,
    drivers/vfio/iommufd.c 6.15+). Freeing the global PASID after its own detach leaves the other alone."""
    healthy = load_scenario(_write(tmp_path, TWO_DRIVERS + (
        "  - detach: {actor: drv, device: dsa, pasid: k, via: driver}\n  - free: {actor: drv, pasid: k}\n"
        "  - detach: {actor: app, device: vf, pasid: 1}\n")))
    assert [e.get("dma_api") for e in healthy.events if e.kind == "pasid_attach"] == [True, None]
    assert healthy.sim.anomalies == []
    buggy = load_scenario(_write(tmp_path, TWO_DRIVERS + "  - free: {actor: drv, pasid: k}\n"))
    assert [(a.rule, a.device) for a in buggy.sim.anomalies] == [("free_while_attached", "dsa")]


def test_an_attach_no_actor_makes_is_a_drivers_and_a_detach_after_the_exit_makes_no_ioctl(tmp_path: Path) -> None:
    """An attach with no actor is a kernel driver's (no VFIO ioctl is played): its paging domain is its device's
    DMA-API one, so freeing the global PASID under it is found on 6.15+ too. After its exit an actor makes no
    ioctl: its VFIO device file closing (exit_files(), kernel/exit.c, after exit_mm()) detaches what it held."""
    driver = load_scenario(_write(tmp_path, TWO_DRIVERS.replace(
        "attach: {actor: drv, device: dsa, pasid: k, via: driver}", "attach: {device: dsa, pasid: k, domain: paging}")
        + "  - free: {actor: drv, pasid: k, via: driver}\n"))
    assert [(a.rule, a.device) for a in driver.sim.anomalies] == [("free_while_attached", "dsa")]
    gone = load_scenario(_write(tmp_path, TWO_DRIVERS + "  - exit: {actor: app}\n  - detach: {actor: app, device: vf, "
                                                       "pasid: 1}\n"))
    exit_at = next(e.ts_ns for e in gone.events if e.kind == "mm_exit")
    after = [e for e in gone.events if e.ts_ns > exit_at]
    assert [e.kind for e in after] == ["pasid_detach"]


def test_attaching_an_attached_pasid_through_iommufd_replaces_its_domain(tmp_path: Path) -> None:
    """VFIO_DEVICE_ATTACH_IOMMUFD_PT on a PASID iommufd already attached is a replace (drivers/vfio/iommufd.c
    vfio_iommufd_physical_pasid_attach_ioas(), 6.15+: iommufd_device_replace() -> iommu_replace_device_pasid()):
    a VMM re-pointing a guest PASID is no attach conflict."""
    run = load_scenario(_write(tmp_path, TWO_DRIVERS + (
        "  - attach: {actor: qemu, device: vf, pasid: 5, domain: nested, domain_id: 5, fault_queue: 3}\n"
        "  - attach: {actor: qemu, device: vf, pasid: 5, domain: nested, domain_id: 7, fault_queue: 3}\n"
        "  - detach: {actor: qemu, device: vf, pasid: 5}\n")))
    kinds = [(e.kind, e.get("name") or e.get("old_domain")) for e in run.events if e.pasid == 5]
    assert kinds == [("uapi", "VFIO_DEVICE_ATTACH_IOMMUFD_PT"), ("pasid_attach", None),
                     ("uapi", "VFIO_DEVICE_ATTACH_IOMMUFD_PT"), ("pasid_replace", 5),
                     ("uapi", "VFIO_DEVICE_DETACH_IOMMUFD_PT"), ("pasid_detach", None)]
    replaced = run.index().state_at(run.events[-3].ts_ns).attachments[("vf", 5)]
    assert (replaced.domain, replaced.route, replaced.global_pasid) == (7, "guest", False)
    assert run.sim.anomalies == []


# TWO_DRIVERS' devices and actors, a 4-bit device more, and no step yet
CLASH_HEAD = TWO_DRIVERS.split("  - at: 1ms")[0].replace(
    "  - {name: vf, width: 20}\n", "  - {name: vf, width: 20}\n  - {name: narrow, width: 4}\n") + "  - say: start\n"


@pytest.mark.parametrize("kernel, steps, refused", [
    # an SVA bind holds (vf, 1): the VMM's guest PASID 1 there is refused, and the other way round
    ("6.15", "  - bind: {actor: app, device: vf}\n  - attach: {actor: qemu, device: vf, pasid: 1, domain: nested}\n",
     [("pasid_attach", "nested", -16)]),
    # (from 6.11 the bind finds the slot taken before it tries an attach; before, its attach fails)
    ("6.15", "  - attach: {actor: qemu, device: vf, pasid: 1, domain: nested}\n  - bind: {actor: app, device: vf}\n",
     [("sva_bind", None, -16)]),
    ("6.8", "  - attach: {device: vf, pasid: 1, via: driver}\n  - bind: {actor: app, device: vf}\n",
     [("pasid_attach", "sva", -16), ("sva_bind", None, -16)]),
    # PASID 0 and one past a 4-bit device's 16: refused from 6.9, let through (a driver's bug to see) before
    ("6.15", "  - attach: {actor: qemu, device: narrow, pasid: 0, domain: nested}\n"
             "  - attach: {actor: qemu, device: narrow, pasid: 16, domain: nested}\n",
     [("pasid_attach", "nested", -22), ("pasid_attach", "nested", -22)]),
    ("6.8", "  - attach: {device: narrow, pasid: 0, via: driver}\n", []),
])
def test_an_attach_the_kernel_refuses_is_played_as_the_failed_call_a_capture_records(
        tmp_path: Path, kernel: str, steps: str, refused: list[tuple[str, str | None, int]]) -> None:
    """iommu_attach_device_pasid() refuses a (device, PASID) its group's pasid_array holds with -EBUSY
    (xa_cmpxchg, drivers/iommu/iommu.c 6.2+), and PASID 0 (IOMMU_NO_PASID) or one at or past the device's
    max_pasids with -EINVAL (6.9+, c404f55c26fc 'iommu: Validate the PASID in iommu_attach_device_pasid()'); an
    SVA bind fails with its attach (iommu_sva_bind_device(), iommu-sva.c), or from 6.11 before any attach, on
    finding the slot taken (iommu_attach_handle_get(..., IOMMU_DOMAIN_SVA)), and VFIO_DEVICE_ATTACH_IOMMUFD_PT
    returns the error (drivers/vfio/iommufd.c 6.15+). The player shows the failed calls, which the model passes
    by: no finding claims the kernel broke its own rule."""
    run = load_scenario(_write(tmp_path, CLASH_HEAD.replace("6.15", kernel) + steps))
    failed = [(e.kind, e.get("domain_type"), e.get("error")) for e in run.events if e.get("error")]
    assert failed == refused
    assert [e.get("ret") for e in run.events if e.kind == "uapi" and e.get("ret")] == [
        err for _, dtype, err in refused if dtype == "nested"]
    assert [a.rule for a in run.sim.anomalies] == ([] if refused or kernel != "6.8" else ["reserved_pasid"])


GOOD_HEAD = """title: t
devices:
  - {name: d0, width: 4}
actors:
  app: {pid: 10, comm: app}
script:
"""


def _on(kernel: str, step: str) -> str:
    return GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n") + "  - at: 1ms\n" + step


@pytest.mark.parametrize("body, line, words", [
    # VFIO_DEVICE_ATTACH_PASID: 6.15 (include/uapi/linux/vfio.h, drivers/vfio/iommufd.c)
    (_on("6.12", "    attach: {actor: app, device: d0, pasid: 5, domain: nested}\n"), "line 9",
     "a PASID attach through iommufd (VFIO_DEVICE_ATTACH_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID) is in kernels "
     "6.15+, not in this scenario's 6.12"),
    (_on("6.14", "    detach: {actor: app, device: d0, pasid: 5}\n"), "line 9", "is in kernels 6.15+"),
    # iommu_attach_device_pasid(): 6.2 (drivers/iommu/iommu.c)
    (_on("6.1", "    attach: {device: d0, pasid: 5, via: driver}\n"), "line 9",
     "a PASID attach (iommu_attach_device_pasid()) is in kernels 6.2+, not in this scenario's 6.1"),
    # iommu_alloc_global_pasid(): 6.6 (drivers/iommu/iommu.c)
    (_on("6.1", "    alloc: {actor: app, device: d0}\n"), "line 9",
     "a driver's PASID allocation (iommu_alloc_global_pasid()) is in kernels 6.6+, not in this scenario's 6.1"),
    # iommufd fault queues: IOMMU_FAULT_QUEUE_ALLOC and its fd's answers, 6.11 (drivers/iommu/iommufd/fault.c)
    (_on("6.8", "    respond: {device: d0, prg: 1, by: user}\n"), "line 9",
     "an answer through an iommufd fault queue (`by: user` or `guest`) is in kernels 6.11+, not in this "
     "scenario's 6.8"),
    (_on("6.10", "    uapi: {actor: app, name: IOMMU_FAULT_QUEUE_ALLOC}\n"), "line 9",
     "an iommufd fault queue (IOMMU_FAULT_QUEUE_ALLOC) is in kernels 6.11+"),
    (_on("6.10", "    attach: {device: d0, pasid: 5, via: driver, fault_queue: 3}\n"), "line 9",
     "an iommufd fault queue (`fault_queue`) is in kernels 6.11+"),
    # a nested domain's set_dev_pasid: VT-d 6.13 (drivers/iommu/intel/nested.c, 67f6f56b5912)
    (_on("6.8", "    attach: {device: d0, pasid: 5, via: driver, domain: nested}\n"), "line 9",
     "a nested domain on a PASID (IOMMU_DOMAIN_NESTED) is in kernels 6.13+, not in this scenario's 6.8"),
])
def test_an_action_the_scenarios_kernel_lacks_is_refused_at_its_line(tmp_path: Path, body: str, line: str,
                                                                     words: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line.removeprefix('line ')}") and words in msg and "\n" not in msg, msg


@pytest.mark.parametrize("kernel, step", [
    ("6.15", "    attach: {actor: app, device: d0, pasid: 5, domain: nested}\n"),
    ("6.14", "    attach: {device: d0, pasid: 5, via: driver}\n"),
    ("6.6", "    alloc: {actor: app, device: d0}\n"),
    ("6.11", "    uapi: {actor: app, name: IOMMU_FAULT_QUEUE_ALLOC}\n"),
    ("6.13", "    attach: {device: d0, pasid: 5, via: driver, domain: nested, fault_queue: 3}\n")])
def test_the_first_kernel_with_an_action_takes_it(tmp_path: Path, kernel: str, step: str) -> None:
    assert load_scenario(_write(tmp_path, _on(kernel, step))).events


@pytest.mark.parametrize("body, line, words", [
    ("title: [unclosed\n", "line 2", "opened at line 1"),
    ("- just\n- a list\n", "line 1", "must be a mapping"),
    (GOOD_HEAD + "  - at: 1ms\n    bnd: {actor: app, device: d0}\n", "line 8", "unknown action 'bnd'"),
    # an exited process binds no more (its mm is gone: do_exit() -> exit_mm(), kernel/exit.c), nor reuses its PASID
    (GOOD_HEAD + "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    exit: {actor: app}\n"
     "  - at: 2ms\n    bind: {actor: app, device: d0}\n", "line 12", "actor 'app' exited at line 10; after that only "
     "its unbind and detach steps may follow"),
    (GOOD_HEAD + "  - at: 0\n    exit: {actor: app}\n  - at: 2ms\n    uapi: {actor: app, name: IOMMU_IOAS_ALLOC}\n",
     "line 10", "actor 'app' exited at line 8"),
    (GOOD_HEAD.replace("script:", "  app2: {pid: 10}\nscript:"), "line 6", "pid 10 is actor 'app''s too"),
    (GOOD_HEAD + "  - at: 1ms\n    bind: {actor: nobody, device: d0}\n", "line 8", "unknown actor 'nobody'"),
    (GOOD_HEAD + "  - at: 5\n    bind: {actor: app, device: d0}\n", "line 7", "with a unit"),
    (GOOD_HEAD + "  - at: 1ms\n    bind: {actor: app}\n", "line 8", "needs `device`"),
    (GOOD_HEAD + "  - at: 2ms\n    say: a\n  - at: 1ms\n    say: b\n", "line 9", "goes back in time"),
    (GOOD_HEAD + "  - at: 1ms\n    free: {pasid: ghost}\n", "line 8", "unknown PASID 'ghost'"),
    (GOOD_HEAD + "  - after: -5ms\n    say: a\n", "line 7", "after -5ms is negative"),
    (GOOD_HEAD.replace("width: 4", "width: 40") + "  - say: hi\n", "line 3", "width must be 0..20"),
    (GOOD_HEAD + "  - at: 1ms\n", "line 7", "does nothing"),
    (GOOD_HEAD.replace("  - {name: d0, width: 4}\n", "  - {name: d0, width: 4}\n  - {name: d0, width: 3}\n")
     + "  - say: hi\n", "line 4", "device 'd0' is named twice"),
    # nesting deep enough to exhaust PyYAML's recursion, in its constructor (300) and in its scanner (600)
    *((f"title: t\nsummary: {'[' * depth}{']' * depth}\n", "", "nested too deeply") for depth in (300, 600)),
])
def test_mistakes_in_a_scenario_are_named_by_file_line_and_what_was_expected(tmp_path: Path, body: str,
                                                                             line: str, words: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line.removeprefix('line ')}") and words in msg and "\n" not in msg, msg


# The step under test starts at line 10; block-style parameters put each key on its own line after that.
BOUND = GOOD_HEAD + "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n"


@pytest.mark.parametrize("step, line, words", [
    ("    request: {device: d0, prg: abc}\n", 10, "`prg`: expected an integer 0..511, got str 'abc'"),
    ("    request: {device: d0, prg: 512}\n", 10, "`prg`: expected an integer 0..511, got int 512"),
    ("    request:\n      device: d0\n      prg: 1\n      pages: many\n", 13, "`pages`: expected an integer 1..512"),
    ("    request: {device: d0, prg: 1, pages: 100000000}\n", 10, "`pages`: expected an integer 1..512"),
    ("    request: {device: d0, prg: 1, addr: zero}\n", 10, "`addr`: expected an integer 0.."),
    ("    request: {device: d0, prg: 1, access: rq}\n", 10, "`access`: expected letters from r, w, x, p"),
    ("    request: {device: d0, prg: 1, spacing: 5}\n", 10, "`spacing`: expected a duration"),
    ("    request: {device: [d0], prg: 1}\n", 10, "`device`: expected a device's name, got a list"),
    ("    respond: {device: d0, prg: 1, code: maybe}\n", 10, "`code`: expected one of success, invalid, failure"),
    ("    lose: {count: lots}\n", 10, "`count`: expected an integer 1..2^32-1, got str 'lots'"),
    ("    lose: {count: 0}\n", 10, "`count`: expected an integer 1.."),
    ("    attach: {device: d0, pasid: 1, domain_id: abc}\n", 10, "`domain_id`: expected an integer 0..2^64-1"),
    ("    attach:\n      device: d0\n      pasid: 99999999\n", 12, "`pasid`: expected a PASID 0..2^20-1"),
    ("    attach: {device: d0, pasid: 1, guest_pasid: abc}\n", 10, "`guest_pasid`: expected an integer 0..2^20-1"),
    ("    attach: {device: d0, pasid: 1, fault_queue: [1]}\n", 10, "`fault_queue`: expected an integer"),
    ("    attach: {device: d0, pasid: 1, domain: shared}\n", 10, "`domain`: expected one of sva, paging"),
    ("    free: {pasid: -1}\n", 10, "`pasid`: expected a PASID 0..2^20-1, an actor's name"),
    ("    uapi:\n      actor: app\n      name: IOMMU_DESTROY\n      args: [1, 2]\n", 13,
     "`args`: expected a mapping"),
    ("    uapi: {args: [1, 2]}\n", 10, "`args`: expected a mapping"),  # a bad value outranks missing keys
    ("    uapi: {actor: app, name: IOMMU_DESTROY, ret: abc}\n", 10, "`ret`: expected an integer"),
    ("    uapi: {actor: app, name: IOMMU_TELEPORT}\n", 10, "`name`: expected an iommufd or VFIO ioctl name"),
    # `args` are the members of the command's struct in their C types (include/uapi/linux/iommufd.h), each at its line
    ("    uapi:\n      actor: app\n      name: IOMMU_HWPT_ALLOC\n      args:\n        flags: 1\n        nosuch: 3\n",
     15, "IOMMU_HWPT_ALLOC has no member 'nosuch' (its struct's: size, flags, dev_id, pt_id, out_hwpt_id"),
    ("    uapi: {actor: app, name: IOMMU_HWPT_ALLOC, args: {flags: -1}}\n", 10,
     "`args`: flags must be an integer 0..2^32-1, got -1"),
    ("    uapi: {actor: app, name: VFIO_GET_API_VERSION, args: {x: 1}}\n", 10, "none, it takes no struct"),
    ("    uapi: {actor: app, name: IOMMU_TEST_CMD, args: {op: 10, pt_id: 7, out_hwpt_id: 1}}\n", 10,
     "IOMMU_TEST_CMD has no member 'out_hwpt_id' (its struct's: size, op, id, pt_id)"),
    ("    map: {domain: abc}\n", 10, "`domain`: expected an integer 0..2^64-1, got str 'abc'"),
    ("    map: {count: 100000000}\n", 10, "`count`: expected an integer 1..512"),
])
def test_bad_parameter_values_are_exit_2_with_one_line_naming_the_parameters_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str, line: int, words: str) -> None:
    path = _write(tmp_path, BOUND + step)
    assert main(["simulate", str(path), "-o", str(tmp_path / "out.pasidrec")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pasid-explorer: {path}:{line}: ") and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize("value, words", [
    ("6.10", 'expected a quoted release, got float 6.1'),
    ("6", "expected a quoted release, got int 6"),
    ('"latest"', 'expected a release such as "6.18"'),
    ('"6.1O"', 'expected a release such as "6.18"'),  # a letter O: not 6.1's rules
    ('"6.18 "', 'expected a release such as "6.18"'),
])
def test_a_kernel_release_must_be_a_quoted_string_not_a_number_yaml_rounds(tmp_path: Path, value: str,
                                                                          words: str) -> None:
    path = _write(tmp_path, f"title: t\nkernel: {value}\n" + GOOD_HEAD.removeprefix("title: t\n") + "  - say: a\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.where == "line 2" and words in err.value.what, err.value
    if value == "6.10":
        assert 'kernel: "6.10"' in err.value.what


@pytest.mark.parametrize("kernel, refused", [("5.4", True), ("4.19", True), ("5.5", False)])
def test_a_scenario_starts_at_5_5_where_a_capture_sees_an_mm_s_pasid_freed(tmp_path: Path, kernel: str,
                                                                             refused: bool) -> None:
    """Up to 5.4 intel-svm.c hands an mm's PASID out of its own pasid_idr and removes it at the last unbind, where
    no hook sees either (drivers/iommu/intel-svm.c, 5.4); 5.5 moved it to ioasid_alloc()/ioasid_free()
    (drivers/iommu/ioasid.c). The player takes a bind's PASID from the model, which on 5.4 would never learn that
    the number came free: it refuses such a kernel rather than number the next bind wrongly."""
    path = _write(tmp_path, GOOD_HEAD.replace("title: t\n", f"title: t\nkernel: \"{kernel}\"\n") + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n"))
    if not refused:
        assert [e.kind for e in load_scenario(path).events] == ["pasid_alloc", "sva_bind"]
        return
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.where == "line 2" and "scenarios start at 5.5" in err.value.what, err.value


def test_a_value_that_bypasses_the_parser_is_still_a_scenario_error_at_its_steps_line() -> None:
    scenario = Scenario("direct.yaml", "t", "", "6.18", 100_000_000, [], {},
                        [Step(7, 0, "lose", {"count": "lots"})])
    with pytest.raises(ScenarioError) as err:
        ScenarioRun(scenario)
    assert err.value.where == "line 7" and "expected an integer" in err.value.what


def test_a_device_without_pri_sends_its_stalls_as_page_requests_and_a_failure_disables_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An SMMUv3 stall device has no PRI: its faults come through the event queue as page requests
    (arm_smmu_handle_evt() -> iommu_report_device_fault()) and arm_smmu_page_response() resumes or aborts each
    (INVALID and FAILURE both CMDQ_RESUME_0_RESP_ABORT, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c 6.9): the help
    says what `pri: false` means, and the next stall after an abort is no finding."""
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    found = re.search(r"^  pri  (.*?)^  ats", capsys.readouterr().out, re.M | re.S)
    pri = " ".join(found.group(1).split()) if found else ""
    assert "SMMUv3 stall device" in pri and "sends page requests" in pri, pri
    run = load_scenario(_write(tmp_path, GOOD_HEAD.replace("title: t\n", 'title: t\nkernel: "6.9"\n').replace(
        "width: 4}", "width: 4, pri: false, ats: false}") + (
        "  - at: 0\n    bind: {actor: app, device: d0}\n"
        "  - request: {device: d0, pasid: app, prg: 0}\n  - respond: {device: d0, pasid: app, prg: 0, code: failure}\n"
        "  - request: {device: d0, pasid: app, prg: 1}\n  - respond: {device: d0, pasid: app, prg: 1}\n")))
    assert [e.kind for e in run.events].count("page_request") == 2 and run.sim.anomalies == []


def test_simulate_help_documents_every_key_and_every_actions_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for keys in (TOP_KEYS, DEVICE_KEYS, ACTOR_KEYS, STEP_KEYS):
        assert all(re.search(rf"^  {key}  ", out, re.M) for key in keys), keys
    assert "a duration is a number with a unit" in out.lower()
    blocks = re.split(r"\n  (?=\S)", out.split("\nActions")[1])  # one block per action, parameters under it
    by_action = {block.split()[0]: " ".join(block.split()) for block in blocks[1:]}
    for name, action in ACTIONS.items():
        assert name in by_action, name
        for key, param in action.params.items():
            marker = f"{key}*" if key in action.required else key
            assert f" {marker} {param.text}: {param.doc}" in by_action[name], (name, key)
