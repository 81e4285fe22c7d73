"""Lab-test helpers: a lab kernel (cached, else built: about 10 minutes) and one VM boot per workload run.

PASIDLAB_KERNELS (comma-separated, default "6.12,7.3") picks the kernels: CI builds both when cold (about 20
minutes of builds on an idle 2-core machine, estimated from 596 s for 6.12 and 7.3's 8% more compile units).
In CI a lab test that cannot run fails (tests/conftest.py), so a missing qemu, build tool or source package
is a failure there, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from explorer.lab import kernels, session, vm
from explorer.lab.kernels import LabError

KERNELS = [v for v in os.environ.get("PASIDLAB_KERNELS", "6.12,7.3").split(",") if v]
LabRunner = Callable[..., session.LabRun]


def lab_problem() -> str | None:
    if shutil.which(vm.QEMU) is None:
        return f"{vm.QEMU} is not installed (Debian: qemu-system-x86)"
    try:
        kernels.check_build_tools()
    except LabError as e:
        return str(e)
    return None


@pytest.fixture(scope="session", params=KERNELS)
def lab_kernel(request: pytest.FixtureRequest) -> kernels.LabKernel:
    problem = lab_problem()
    if problem:
        pytest.skip(f"the kernel lab cannot run here: {problem}")
    return session.kernel(request.param)


@pytest.fixture(scope="session")
def lab_runner(lab_kernel: kernels.LabKernel) -> LabRunner:
    def run(command: list[str], output: Path, stop_at: str | None = None) -> session.LabRun:
        return session.run(lab_kernel.version, command, output, stop_at=stop_at)
    return run
