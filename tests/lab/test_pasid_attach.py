"""PASID attach, replace and detach on a real kernel (6.15+: the selftest mock device takes PASIDs).

faultq -A puts each mock device's RID on a PASID-compatible paging domain and attaches one PASID to a nested,
fault-capable domain (IOMMU_TEST_OP_PASID_ATTACH -> iommufd_device_attach(idev, pasid) ->
iommu_attach_device_pasid), makes page faults on that PASID (routed by its attach handle to the fault queue,
io-pgfault.c find_fault_handler()), then replaces the domain (iommu_replace_device_pasid) and detaches it
(iommu_detach_device_pasid). The recording must hold each of these once, on the right PASID.
"""

from __future__ import annotations

from collections import Counter

import pytest

from explorer.lab import kernels
from explorer.loading import open_index

from .conftest import KERNELS, TCG_STALE_NS
from .test_faultq import did, events

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ATTACH = ["faultq", "-A", "-d", "2", "-n", "10", "-i", "4", "-p", "0x30"]


@pytest.fixture(scope="module", params=[v for v in KERNELS if kernels.source_for(v).pasid_mock])
def attach_run(request: pytest.FixtureRequest, lab_kernels, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from explorer.lab import session

    return session.run(request.param, ATTACH, tmp_path_factory.mktemp("attach") / "attach.pasidrec")


def test_attach_replace_and_detach_are_recorded_once_per_pasid(attach_run) -> None:  # type: ignore[no-untyped-def]
    work = did(attach_run)
    assert work["pasid_attach"] is True
    evs = events(attach_run.recording)
    pasids = sorted({f["pasid"] for f in work["faults"]})
    assert pasids == [0x30, 0x31]
    for kind in ("pasid_attach", "pasid_replace", "pasid_detach"):
        got = [e for e in evs if e.kind == kind]
        assert sorted(e.pasid for e in got) == pasids, kind
        assert all(e.get("error") in (None, 0) for e in got)
    requests = [e for e in evs if e.kind == "page_request"]
    assert Counter((e.pasid, e.get("prg")) for e in requests) == Counter(
        (f["pasid"], f["grpid"]) for f in work["faults"])
    calls = [e for e in evs if e.kind == "uapi" and e.comm == "faultq"]
    assert Counter(e.get("name") for e in calls) == Counter(work["ioctls"])
    ops = Counter(e.get("args", {}).get("op") for e in calls if e.get("name") == "IOMMU_TEST_CMD")
    assert ops["PASID_ATTACH"] == ops["PASID_REPLACE"] == ops["PASID_DETACH"] == 2
    assert attach_run.figures["lost"] == 0


def test_the_model_ends_with_the_pasids_detached_and_every_group_answered(attach_run) -> None:  # type: ignore[no-untyped-def]
    idx = open_index(attach_run.recording, stale_ns=TCG_STALE_NS)
    assert [k for k in idx.sim.state.attachments if k[1] in (0x30, 0x31)] == []
    assert idx.sim.state.groups == {}
    assert [(a.rule, a.explanation) for a in idx.anomalies] == []
