"""A separate boot on a q35 machine with a scalable-mode Intel IOMMU (QEMU's intel-iommu, x-scalable-mode=on),
whose virtio devices go through it (iommu_platform=on): real DMA mapping traffic from the 9p root filesystem,
seen by the iommu:map / iommu:unmap tracepoints (include/trace/events/iommu.h) and counted in the kernel."""

from __future__ import annotations

from collections import Counter

import pytest

from explorer.lab import session

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
