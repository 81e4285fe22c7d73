"""The event panel's accounts: one describer per kind, in the kernel's terms for the version recorded."""

from __future__ import annotations

from pathlib import Path

from explorer.events import Kind, make
from explorer.explain import _DESCRIBE, explain
from explorer.loading import open_index
from explorer.recording import DeviceInfo, Header, write_events
from explorer.scenarios import bundled_scenarios, load_scenario


def _scenario(prefix: str):  # type: ignore[no-untyped-def]
    s = next(s for s in bundled_scenarios() if s.name.startswith(prefix))
    return load_scenario(s.yaml_path).index()


def test_every_kind_but_the_models_own_findings_has_a_describer() -> None:
    assert set(Kind) - set(_DESCRIBE) == {Kind.ANOMALY}


def test_a_vmms_pasid_is_explained_as_user_chosen_and_a_free_by_its_kernels_rule() -> None:
    idx = _scenario("03")  # 6.15+: the VMM attaches at the guest's own number
    attach = next(i for i in range(idx.n) if idx.event(i).kind == Kind.PASID_ATTACH and idx.event(i).pasid == 5)
    text = " ".join(explain(idx, attach).paragraphs)
    assert "did not come from the kernel's allocator" in text and "-EBUSY" in text
    old = _scenario("08")  # 5.15: freed at the last unbind, by ioasid_put() (drivers/iommu/ioasid.c, 5.15)
    free = next(i for i in range(old.n) if old.event(i).kind == Kind.PASID_FREE)
    assert "Before 5.18" in " ".join(explain(old, free).paragraphs)
    assert "went back to the ioasid allocator" in explain(old, free).paragraphs[0]
    new = _scenario("12")  # 6.8: freed after the last mmdrop, late but not never
    free = next(i for i in range(new.n) if new.event(i).kind == Kind.PASID_FREE and new.event(i).pasid == 2)
    assert "__mmdrop()" in " ".join(explain(new, free).paragraphs)


def test_a_vmms_pasid_is_user_chosen_even_where_a_driver_holds_the_same_global_number(tmp_path: Path) -> None:
    """6.15+: the host allocator never sees a number user space attaches through iommufd (VFIO_DEVICE_ATTACH_PASID;
    drivers/iommu/iommufd/device.c), whatever a driver took from iommu_alloc_global_pasid() (drivers/iommu/iommu.c)."""
    path = tmp_path / "vm.yaml"
    path.write_text("""title: t
kernel: "6.18"
devices:
  - {name: "0000:6a:01.0", width: 20, driver: idxd}
  - {name: "0000:b1:00.0", width: 20, driver: vfio-pci}
actors:
  idxd: {pid: 900, comm: kworker}
  qemu: {pid: 6100, comm: qemu-system-x86, vm: vm0}
script:
  - at: 1ms
    alloc: {actor: idxd, device: "0000:6a:01.0", as: kwq}
  - at: 2ms
    attach: {actor: qemu, device: "0000:b1:00.0", pasid: 1, domain: nested, guest_pasid: 1, fault_queue: 7}
""")
    idx = load_scenario(path).index()
    attach = next(i for i in range(idx.n) if idx.event(i).kind == Kind.PASID_ATTACH)
    text = " ".join(explain(idx, attach).paragraphs)
    assert "did not come from the kernel's allocator" in text and "via driver" not in text


def test_a_page_request_says_who_answers_its_group_whether_or_not_the_response_needs_its_pasid(
        tmp_path: Path) -> None:
    """The group is found under the key the model keeps it by: with its PASID, or, for a function whose responses
    need none, without it."""
    dev = "0000:00:01.0"
    events = [make(Kind.PASID_ATTACH, 1_000, device=dev, pasid=5, domain_type="paging", fault_queue=3),
              make(Kind.PAGE_REQUEST, 2_000, device=dev, pasid=5, prg=7, addr=0x1000, perm=1, last=True),
              make(Kind.PAGE_REQUEST, 3_000, device=dev, pasid=5, prg=8, addr=0x1000, perm=1, last=True,
                   needs_pasid=False)]
    path = tmp_path / "requests.pasidrec"
    write_events(path, Header(source="test", devices=[DeviceInfo(dev, pasid_width=20)]), events)
    idx = open_index(path)
    for i in (1, 2):
        assert "user space: the group is queued" in " ".join(explain(idx, i).paragraphs)


def test_a_refused_bind_is_explained_by_its_own_error_code() -> None:
    """Every failed bind was explained as -EOVERFLOW, -28 included. drivers/iommu/iommu-sva.c, 6.8
    iommu_alloc_mm_data(): an mm whose PASID is >= the device's max_pasids gets -EOVERFLOW (-75); a first bind
    for which iommu_alloc_global_pasid() finds no free PASID gets -ENOSPC (-28)."""
    idx = open_index(str(next(s for s in bundled_scenarios() if s.name.startswith("05")).recording_path))  # 6.18
    refused = {idx.event(i).get("error"): " ".join(explain(idx, i).paragraphs)
               for i in range(idx.n) if idx.event(i).kind == Kind.SVA_BIND and idx.event(i).get("error")}
    assert set(refused) == {-28, -75}
    assert "-28 (-ENOSPC): this was the mm's first bind and no PASID was free" in refused[-28]
    assert "EOVERFLOW" not in refused[-28]
    assert "-75 (-EOVERFLOW): the mm already has its PASID" in refused[-75] and "ENOSPC" not in refused[-75]
