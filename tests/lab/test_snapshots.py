"""A capture in the lab keeps the guest kernel's own PASID state at its start and end (explorer/snapshot).

The selftest's mock devices sit on their own mock IOMMU (iommufd_selftest_iommu in /sys/class/iommu), behind no
debugfs and no PCI config space, so the snapshot has no PASID table to set beside the model, says why, and finds
no disagreement. A real Intel debugfs, read by the same code, is tested in a boot with a scalable-mode VT-d
(test_intel_iommu.py): the lab's kernels are built with CONFIG_IOMMU_DEBUGFS and CONFIG_INTEL_IOMMU_DEBUGFS.
"""

from __future__ import annotations

import pytest

from explorer.index import RecordingIndex
from explorer.lab import session
from explorer.lab.kernels import LabKernel
from explorer.recording import Recording
from explorer.summary import check_report

pytestmark = [pytest.mark.lab, pytest.mark.slow]
WORK = ["faultq", "-d", "1", "-n", "4", "-p", "0x10"]


@pytest.fixture(scope="module")
def lab_run(lab_kernel: LabKernel, tmp_path_factory: pytest.TempPathFactory) -> session.LabRun:
    return session.run(lab_kernel.version, WORK, tmp_path_factory.mktemp("snap") / "snap.pasidrec")


def test_a_lab_capture_keeps_the_guest_kernels_state_at_its_start_and_end(lab_run: session.LabRun,
                                                                          lab_kernel: LabKernel) -> None:
    path = lab_run.recording
    with Recording(path) as rec:
        report = check_report(path, RecordingIndex.build(rec))
    snaps = report["snapshots"]
    assert len(snaps) == 2 and snaps[0]["taken_ns"] < snaps[1]["taken_ns"]
    for snap in snaps:
        assert snap["kernel"] == lab_kernel.release
        assert snap["unreadable"]["intel iommu debugfs"].startswith("no such driver: no Intel IOMMU on this host")
        assert snap["pci"] == {}  # the lab VM's functions have no PASID, PRI or ATS capability
    assert report["kernel_state"]["disagreements"] == [] and report["kernel_state"]["unusable"] == []
