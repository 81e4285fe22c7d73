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
    return session.run(lab_kernel.version, ["sh", "-c", "cat /etc/os-release /etc/hostname"], out,
                       intel_iommu=True)


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
