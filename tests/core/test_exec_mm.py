"""A process that execs while an SVA fd it opened (without O_CLOEXEC) stays open has two mms with a PASID each, and
that is healthy: exec_mmap() (fs/exec.c, 6.12) gives it a new mm_struct with no PASID, whose first bind allocates
one (iommu_sva_bind_device() -> iommu_alloc_mm_data(), drivers/iommu/iommu-sva.c 6.12), while the old mm lives on
held by the fd's bind (the SVA domain's mmgrab()) with its own PASID until __mmdrop() (kernel/fork.c) calls
mm_pasid_drop() (5.18+: an inline of sched/mm.h until 6.3, a function, which the probe sees, from 6.4).
The capture names the new mm by its pointer, not by the tgid the old one already has
(mm_key in probes/kernel_funcs.bpf.c), so the model sees two mms, each with one PASID. These are the rows such a
capture makes, through a recording; one mm named twice with two live PASIDs is still an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.events import make
from explorer.index import RecordingIndex
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter

DEV = "0000:6a:01.0"
TGID = 4100
NEW_MM = 0xFFFF_8881_04A3_C000  # the exec'd mm, named by its pointer: its tgid names the old mm


def _check(path: Path, rows: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    header = Header(source="capture", host={"kernel": "6.12.0", "hostname": "t"}, clock="monotonic", title="t",
                    devices=[DeviceInfo(name=DEV, pasid_width=20, pri=True, ats=True)])
    with RecordingWriter(path, header) as w:
        for ts, (kind, pasid, comm, fields) in enumerate(rows, 1):
            device = DEV if kind not in ("pasid_free", "mm_exit") else None
            w.append(make(kind, ts * 1_000_000, source="capture", device=device, pasid=pasid, pid=TGID, comm=comm,
                          **fields))
    return [(str(a.severity), a.rule) for a in RecordingIndex.build(Recording(path)).anomalies]


def _bind(pasid: int, comm: str, mm: int) -> list[tuple[Any, ...]]:
    """What one SVA bind of a fresh mm records (6.6+): the allocation in the bind, the attach, the bind."""
    return [("pasid_alloc", pasid, comm, {"path": "sva", "mm": mm, "owner": f"pid {TGID} ({comm})"}),
            ("pasid_attach", pasid, comm, {"domain": 16 + pasid, "domain_type": "sva"}),
            ("sva_bind", pasid, comm, {"mm": mm})]


def test_an_exec_keeping_an_sva_fd_gives_two_mms_one_pasid_each_and_no_finding(tmp_path: Path) -> None:
    rows = [*_bind(1, "launcher", TGID),  # before the exec: the process's own mm, named by its tgid
            *_bind(2, "worker", NEW_MM),  # after it: the new mm's first bind allocates its own PASID
            ("page_request", 2, "worker", {"prg": 1, "addr": 4096, "perm": 1, "last": True, "needs_pasid": True}),
            ("page_response", 2, "worker", {"prg": 1, "code": 0, "by": "kernel"}),
            ("mm_exit", None, "worker", {"mm": TGID}),  # sched_process_exit names the process (probes/decode.py)
            # exit_files(): both fds close; the old mm's bind goes, then its __mmdrop() frees PASID 1
            ("sva_unbind", 1, "worker", {"mm": TGID}),
            ("pasid_detach", 1, "worker", {"domain": 17, "domain_type": "sva"}),
            ("pasid_free", 1, "worker", {"path": "sva", "mm": TGID}),
            ("sva_unbind", 2, "worker", {"mm": NEW_MM}),
            ("pasid_detach", 2, "worker", {"domain": 18, "domain_type": "sva"}),
            ("pasid_free", 2, "worker", {"path": "sva", "mm": NEW_MM})]
    assert _check(tmp_path / "exec.pasidrec", rows) == []


def test_the_old_mm_binding_again_after_the_exec_reuses_its_pasid(tmp_path: Path) -> None:
    """The old mm's later bind (another device, through the kept fd's driver) carries its own PASID: no finding."""
    rows = [*_bind(1, "launcher", TGID), *_bind(2, "worker", NEW_MM),
            ("sva_bind", 1, "worker", {"mm": TGID}), ("sva_unbind", 1, "worker", {"mm": TGID}),
            ("sva_bind", 2, "worker", {"mm": NEW_MM})]
    assert _check(tmp_path / "again.pasidrec", rows) == []


def test_one_mm_with_a_second_live_sva_pasid_is_still_an_error(tmp_path: Path) -> None:
    rows = [*_bind(1, "launcher", TGID), *_bind(2, "launcher", TGID)]
    assert _check(tmp_path / "two.pasidrec", rows) == [("error", "second_sva_pasid")]
