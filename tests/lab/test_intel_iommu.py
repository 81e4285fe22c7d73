"""A separate boot on a q35 machine with a scalable-mode Intel IOMMU (QEMU's intel-iommu, x-scalable-mode=on),
whose virtio devices go through it (iommu_platform=on): real DMA mapping traffic from the 9p root filesystem,
seen by the iommu:map / iommu:unmap tracepoints (include/trace/events/iommu.h) and counted in the kernel; and the
VT-d driver's own debugfs (CONFIG_INTEL_IOMMU_DEBUGFS), read into the capture's snapshots.

What that debugfs can show here: the PASID table of every PCI function behind the emulated DMAR unit, each with
only its RID_PASID entry (PASID 0, the DMA API's domain): QEMU 7.2's VT-d has no first-stage tables or page
requests (ecap FLTS=0, PRS=0) and none of its devices has a PASID capability, so no PASID above 0 can be
attached. The selftest's mock devices never appear in it: they sit on their own bus behind the mock IOMMU driver
(drivers/iommu/iommufd/selftest.c), not behind VT-d, and they cannot be created in a boot that has a VT-d."""

from __future__ import annotations

from collections import Counter

import pytest

from explorer.index import RecordingIndex
from explorer.lab import session
from explorer.recording import Recording
from explorer.summary import check_report

from .test_faultq import events, footer

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def vtd_run(lab_kernel, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("vtd") / "vtd.pasidrec"
    return session.run(lab_kernel.version, ["sh", "-c", "cat /etc/os-release /etc/hostname; grep -l 0x1af4 "
                                            "/sys/bus/pci/devices/*/vendor"], out, intel_iommu=True)


def test_virtio_dma_through_a_scalable_mode_vtd_is_recorded_and_counted(vtd_run) -> None:  # type: ignore[no-untyped-def]
    assert vtd_run.status == 0, vtd_run.command_output
    assert "intel_iommu:qi_submit" in vtd_run.figures["hooks"]  # the VT-d driver's tracepoints exist here
    evs = events(vtd_run.recording)
    recorded = Counter(e.kind for e in evs)
    assert recorded["map"] > 0 and recorded["unmap"] > 0
    counts = Counter()
    for entry in footer(vtd_run.recording).get("kernel_counts", []):
        counts[entry["type"]] += entry["count"]
    assert vtd_run.figures["lost"] == 0
    assert (counts["map"], counts["unmap"]) == (recorded["map"], recorded["unmap"])


def test_a_real_scalable_mode_vtd_debugfs_is_kept_and_agrees_with_the_model(vtd_run) -> None:  # type: ignore[no-untyped-def]
    with Recording(vtd_run.recording) as rec:
        report = check_report(vtd_run.recording, RecordingIndex.build(rec))
    snaps = report["snapshots"]
    assert len(snaps) == 2
    for snap in snaps:
        assert "intel iommu debugfs" not in snap["unreadable"]
        intel = snap["intel"]
        assert intel["iommus"] == {"dmar0": {"enabled": True, "scalable": True}}
        devices = intel["devices"]
        assert len(devices) >= 3  # the host bridge, two virtio-9p functions, the q35 ICH9 functions
        for entry in devices.values():  # one RID_PASID entry each, on the DMA API's second-stage domain
            assert [(p["pasid"], p["pgtt"]) for p in entry["pasids"]] == [(0, "second-stage")]
        queue = intel["invalidation_queue"]["dmar0"]
        assert queue["head"] == queue["tail"]  # every invalidation the 9p traffic queued has been consumed
    assert report["kernel_state"]["disagreements"] == [] and report["kernel_state"]["unusable"] == []


def test_the_snapshots_hold_the_page_tables_of_the_virtio_devices_dma_domains(vtd_run) -> None:  # type: ignore[no-untyped-def]
    """Each virtio-9p function (vendor 0x1af4, as the guest's sysfs lists them) is in a DMA domain whose page table
    domain_translation_struct dumps (drivers/iommu/intel/debugfs.c, 6.7 on): its virtqueues stay mapped while the
    driver is bound, so the table is never empty. Functions the PASID table puts in one domain (one domain ID)
    print one page table, which the snapshot names instead of reading again."""
    virtio = sorted(line.split("/")[-2] for line in vtd_run.command_output.splitlines() if line.endswith("/vendor"))
    assert len(virtio) == 2, vtd_run.command_output
    with Recording(vtd_run.recording) as rec:
        snaps = [*rec.header.extra["snapshots"], *rec.footer["snapshots"]]
    for snap in snaps:
        intel = snap["intel"]
        dumps = intel["translations"]
        assert not any("page table" in what for what in snap["unreadable"]), snap["unreadable"]
        for dev in virtio:
            (own,) = dumps[dev]
            assert own["pasid"] == 0 and own["mappings"] >= 1 and own["pages"].get("4 KiB", 0) >= 1, own
        pgd_of_domain: dict[int, set[int]] = {}
        for dev, entry in intel["devices"].items():
            pgd_of_domain.setdefault(entry["pasids"][0]["domain_id"], set()).add(dumps[dev][0]["pgd"])
        assert all(len(pgds) == 1 for pgds in pgd_of_domain.values()), pgd_of_domain
        assert len({dumps[dev][0]["pgd"] for dev in virtio}) == 2  # each virtio function its own DMA domain
