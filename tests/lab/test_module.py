"""The lab module (explorer/lab/data/module/pasidlab.c) drives the IOMMU core's global PASID allocator, which no
selftest reaches: iommu_alloc_global_pasid() / iommu_free_global_pasid() (drivers/iommu/iommu.c, 6.6+: an IDA
from IOMMU_FIRST_GLOBAL_PASID up to the device's max_pasids) for a device of its own. It allocates N PASIDs, frees
the first M and reports what it did and still holds; the recording, the kernel-side counters and the model's end
state must all agree with it, and `check` must find nothing.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from explorer.lab import session, workloads
from explorer.lab.kernels import LabKernel
from explorer.loading import open_index

from .test_faultq import events, footer

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ALLOCS, FREES = 8, 5


@pytest.fixture(scope="module")
def module_run(lab_kernel: LabKernel, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workloads.build_workloads(lab_kernel)
    run = session.run(lab_kernel.version, workloads.module_command(lab_kernel, ALLOCS, FREES),
                      tmp_path_factory.mktemp("module") / "module.pasidrec")
    assert run.status == 0, run.command_output
    return run, json.loads(run.command_output.strip().splitlines()[-1])


def test_global_pasid_allocations_and_frees_are_recorded_once_each(module_run) -> None:  # type: ignore[no-untyped-def]
    run, state = module_run
    assert state["allocs"] == ALLOCS and state["frees"] == FREES
    evs = events(run.recording)
    allocs = [e for e in evs if e.kind == "pasid_alloc"]
    assert [(e.device, e.pasid) for e in allocs] == [(state["device"], p) for p in state["allocated"]]
    assert [e.pasid for e in evs if e.kind == "pasid_free"] == state["allocated"][:FREES]
    counts = Counter()
    for entry in footer(run.recording).get("kernel_counts", []):
        counts[(entry["type"], entry.get("pasid"))] += entry["count"]
    assert +Counter({k: v for k, v in counts.items() if k[0] in ("pasid_alloc", "pasid_free")}) == Counter(
        [("pasid_alloc", p) for p in state["allocated"]] + [("pasid_free", p) for p in state["allocated"][:FREES]])
    assert run.figures["lost"] == 0


def test_the_model_holds_the_pasids_the_module_still_holds(module_run) -> None:  # type: ignore[no-untyped-def]
    run, state = module_run
    idx = open_index(run.recording)
    assert sorted(idx.sim.state.pasids) == state["held"] == state["allocated"][FREES:]
    assert [(a.rule, a.explanation) for a in idx.anomalies] == []
