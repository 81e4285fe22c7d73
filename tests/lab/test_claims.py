"""Every hook the lab claims for a lab kernel fired in a lab test, and every other hook it attaches there is
explained (explorer/lab/claims.py, shown by `pasid-explorer lab status`): SVA bind and unbind above all, which no
lab IOMMU can take."""

from __future__ import annotations

import pytest

from explorer.kernel_facts import HOOK_FACTS, parse_version
from explorer.lab import claims

from .conftest import ATTACHED, FIRED, KERNELS


@pytest.mark.parametrize("version", list(claims.FIRES))
def test_the_claims_cover_every_hook_the_kernel_has(version: str) -> None:
    present = claims.present(version)
    assert all(HOOK_FACTS[h].in_kernel(parse_version(version)) for h in claims.FIRES[version])
    assert set(claims.FIRES[version]) <= set(present)
    assert [h for h, why in claims.cannot(version, present).items() if why == "unexplained"] == []


def test_sva_is_never_claimed() -> None:
    for version, hooks in claims.FIRES.items():
        assert not {"iommu_sva_bind_device", "iommu_sva_unbind_device", "mm_pasid_drop"} & set(hooks), version
    assert "SVA domain" in claims.CANNOT["iommu_sva_bind_device"]


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.parametrize("version", KERNELS)
def test_every_claimed_hook_fired_in_a_lab_test(version: str) -> None:
    assert ATTACHED[version], f"no lab test booted {version} in this session: run the claims with tests/lab"
    assert sorted(set(claims.FIRES[version]) - ATTACHED[version]) == []
    assert sorted(set(claims.FIRES[version]) - FIRED[version]) == []
    assert [h for h, why in claims.cannot(version, ATTACHED[version]).items() if why == "unexplained"] == []
