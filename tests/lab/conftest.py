"""Lab-test helpers: a lab kernel (cached, else built: 5-9 minutes) and one VM boot per workload run.

PASIDLAB_KERNELS (comma-separated, default "6.1,6.12,7.3") picks the kernels, and CI builds them all when cold, at
once. Measured cold under load on the 2-core machine kind: 6.12 588 s, 7.3 755 s and 6.1 646 s of CPU
(user+sys); `make -j2` on an idle 2-core machine turns that into 17-22 minutes for the three (README, "The kernel
lab"). 6.1 (no iommufd) runs only the module and claims tests.
In CI a lab test that cannot run fails (tests/conftest.py), so a missing qemu, build tool or source package
is a failure there, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from explorer.lab import claims, kernels, session, vm
from explorer.lab.kernels import LabError

KERNELS = [v for v in os.environ.get("PASIDLAB_KERNELS", "6.1,6.12,7.3").split(",") if v]
# The stale threshold a clean run is judged with: under TCG on a loaded host a workload's own answer to a page
# request can take longer than `check`'s default 100 ms (133 ms under CI's load on 2026-12-06), which the stale rule
# rightly reports as a stalled device: a finding about the responder's latency, not the kernel's. Every other rule
# is judged as `check` judges it.
TCG_STALE_NS = 10_000_000_000
LabRunner = Callable[..., session.LabRun]
# Every lab run of this session, per kernel: the hooks its capture attached and the hooks its recording proves
# fired (test_claims.py holds the lab's claims to them, after every other lab test).
ATTACHED: dict[str, set[str]] = defaultdict(set)
FIRED: dict[str, set[str]] = defaultdict(set)


@pytest.fixture(scope="session", autouse=True)
def hooks_fired() -> Iterator[None]:
    real = session.run

    def run(version: str, *args, **kwargs) -> session.LabRun:  # type: ignore[no-untyped-def]
        out = real(version, *args, **kwargs)
        ATTACHED[version] |= set(out.figures.get("hooks") or ())
        FIRED[version] |= claims.fired(out.run_dir / "recording.pasidrec")
        return out

    patch = pytest.MonkeyPatch()
    patch.setattr(session, "run", run)
    yield
    patch.undo()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The claims check runs after every lab run it is checked against."""
    items.sort(key=lambda item: item.path.name == "test_claims.py")


def lab_problem() -> str | None:
    if shutil.which(vm.QEMU) is None:
        return f"{vm.QEMU} is not installed (Debian: qemu-system-x86)"
    try:
        kernels.check_build_tools()
    except LabError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def lab_kernels() -> dict[str, kernels.LabKernel]:
    """Every kernel of KERNELS, cached or built. Cold, they build all at once: each `make -j2` leaves the CPUs idle
    in its serial steps (download, unpack, link, BTF, objtool), which the other builds fill."""
    problem = lab_problem()
    if problem:
        pytest.skip(f"the kernel lab cannot run here: {problem}")
    with ThreadPoolExecutor(len(KERNELS)) as pool:
        return dict(zip(KERNELS, pool.map(session.kernel, KERNELS), strict=True))


@pytest.fixture(scope="session", params=[v for v in KERNELS if kernels.source_for(v).iommufd])
def lab_kernel(request: pytest.FixtureRequest, lab_kernels: dict[str, kernels.LabKernel]) -> kernels.LabKernel:
    return lab_kernels[request.param]


@pytest.fixture(scope="session")
def lab_runner(lab_kernel: kernels.LabKernel) -> LabRunner:
    def run(command: list[str], output: Path, stop_at: str | None = None) -> session.LabRun:
        return session.run(lab_kernel.version, command, output, stop_at=stop_at)
    return run
