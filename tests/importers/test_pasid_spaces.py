"""amdgpu numbers its GPU VMs' PASIDs itself (amdgpu_pasid_alloc() in drivers/gpu/drm/amd/amdgpu/amdgpu_ids.c, an
IDA private to the driver, 4.19 to 6.x), so a GPU VM fault's PASID says nothing about the IOMMU's global space: the
model must neither call it unallocated nor let it stand for an IOMMU PASID of the same number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tui.conftest import drive

from explorer.explain import explain
from explorer.importers import import_log
from explorer.index import RecordingIndex
from explorer.loading import open_index
from explorer.recording import Recording
from explorer.tui.app import ExplorerApp
from explorer.tui.tracks import build_rows

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


def _imported(tmp_path: Path, log: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    src = tmp_path / "dmesg.txt"
    src.write_text(log)
    out = tmp_path / "out.pasidrec"
    import_log(str(src), out)
    return out


def test_info_lists_amdgpu_pasids_as_their_own_space_never_among_the_iommus(tmp_path: Path) -> None:
    out = _imported(tmp_path, LOG)
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "info", str(out), "--json"], capture_output=True,
                       text=True, timeout=120)
    info = json.loads(r.stdout)
    assert info["pasids"] == [0x8001]  # the IOMMU's: AMD-Vi's PASID only
    assert info["pasid_spaces"] == {"amdgpu": [{"device": "0000:c6:00.0", "pasid": 32769}]}
    text = subprocess.run([sys.executable, "-m", "explorer.cli.main", "info", str(out)], capture_output=True,
                          text=True, timeout=120).stdout
    assert "PASIDs seen: 32769\n" in text
    assert "amdgpu PASIDs (the driver's own numbering, not the IOMMU's global space): 32769 on 0000:c6:00.0" in text
    check = subprocess.run([sys.executable, "-m", "explorer.cli.main", "check", str(out), "--json"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and json.loads(check.stdout)["pasid_spaces"] == info["pasid_spaces"]


def test_the_explorer_rows_name_amdgpus_space_and_keep_it_out_of_the_allocators(tmp_path: Path) -> None:
    index = open_index(_imported(tmp_path, LOG))
    app = ExplorerApp(index, layout="compact")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("e")  # every group open
        rows = [(r.label, r.device, r.pasid) for r in app.session.rows]
        assert ("amdgpu PASID 32769", "0000:c6:00.0", 32769) in rows
        # the allocator (the IOMMU's global space) lists AMD-Vi's PASID 32769 only because AMD-Vi reported it on
        # another device; amdgpu's number is not one of its children
        assert [r for r in rows if r[1] is None and r[2] is not None] == [("PASID 32769", None, 32769)]
        assert ("PASID 32769", "0000:03:00.0", 32769) in rows

    drive(app, body)
    gpu_only = open_index(_imported(tmp_path / "gpu", LOG.split("[ 4779")[0]))
    rows = build_rows(gpu_only)
    assert rows[0].label == "allocator" and rows[0].children == []  # nothing of amdgpu's in the IOMMU's space
    assert [c.label for c in rows[1].children] == ["amdgpu PASID 32769"]
