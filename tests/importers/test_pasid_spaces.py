"""amdgpu numbers its GPU VMs' PASIDs itself (amdgpu_pasid_alloc() in drivers/gpu/drm/amd/amdgpu/amdgpu_ids.c, an
IDA private to the driver, 4.19 to 6.x), so a GPU VM fault's PASID says nothing about the IOMMU's global space: the
model must neither call it unallocated nor let it stand for an IOMMU PASID of the same number."""

from __future__ import annotations

from pathlib import Path

from explorer.explain import explain
from explorer.importers import import_log
from explorer.index import RecordingIndex
from explorer.recording import Recording

# PASID 32769 in both: a real amdgpu fault (ROCm/amdgpu#172) and an AMD-Vi fault that carried PASID 0x8001 (GN=1).
LOG = """\
[ 4778.915423] amdgpu 0000:c6:00.0: amdgpu: [gfxhub0] no-retry page fault (src_id:0 ring:24 vmid:3 pasid:32769)
[ 4778.916081] amdgpu 0000:c6:00.0: amdgpu:  for process pt_main_thread pid 12924 thread pt_main_thread pid 12924)
[ 4778.916571] amdgpu 0000:c6:00.0: amdgpu:   in page starting at address 0x0000ae8570611000 from IH client 0x1b (UTCL2)
[ 4779.000000] AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:03:00.0 domain=0x8001 address=0x7f0000004000 flags=0x0031]
"""  # noqa: E501 (kernel lines as printed)


def test_an_amdgpu_pasid_is_never_taken_for_an_iommu_pasid(tmp_path: Path) -> None:
    src = tmp_path / "dmesg.txt"
    src.write_text(LOG)
    out = tmp_path / "out.pasidrec"
    import_log(str(src), out)
    with Recording(out) as rec:
        idx = RecordingIndex.build(rec)
        events = list(rec.iter_events())
    gpu, iommu = events
    assert (gpu.pasid, gpu.get("pasid_space")) == (32769, "amdgpu")
    assert (iommu.pasid, iommu.get("pasid_space")) == (0x8001, None)
    # Neither accuses anyone: a fault is the kernel's own report, and an IOMMU PASID nobody was seen allocating
    # may be one user space chose for the device (iommufd/VFIO, 6.15+; kernel-review F6-F8).
    assert idx.anomalies == []
    # The event panel says whose PASID it is, and never calls the GPU's fault an IOMMU's.
    gpu_account, iommu_account = explain(idx, 0), explain(idx, 1)
    assert "amdgpu's PASID 32769" in gpu_account.paragraphs[0] and "GPU VM 3" in gpu_account.paragraphs[0]
    assert "not an entry of the IOMMU's global space" in gpu_account.paragraphs[1]
    assert not any("IOMMU blocked it" in p for p in gpu_account.paragraphs)
    assert "the IOMMU blocked the access" in iommu_account.paragraphs[1]
