"""The event panel's accounts: one describer per kind, in the kernel's terms for the version recorded."""

from __future__ import annotations

from explorer.events import Kind
from explorer.explain import _DESCRIBE, explain
from explorer.scenarios import bundled_scenarios, load_scenario


def _scenario(prefix: str):  # type: ignore[no-untyped-def]
    s = next(s for s in bundled_scenarios() if s.name.startswith(prefix))
    return load_scenario(s.yaml_path).index()


def test_every_kind_but_the_models_own_findings_has_a_describer() -> None:
    assert set(Kind) - set(_DESCRIBE) == {Kind.ANOMALY}


def test_a_vmms_pasid_is_explained_as_user_chosen_and_a_free_by_its_kernels_rule() -> None:
    idx = _scenario("03")  # 6.15+: the VMM attaches at the guest's own number
    attach = next(i for i in range(idx.n) if idx.event(i).kind == Kind.PASID_ATTACH and idx.event(i).pasid == 5)
    text = " ".join(explain(idx, attach).paragraphs)
    assert "did not come from the kernel's allocator" in text and "-EBUSY" in text
    old = _scenario("08")  # 5.15: freed at the last unbind
    free = next(i for i in range(old.n) if old.event(i).kind == Kind.PASID_FREE)
    assert "Before 5.18" in " ".join(explain(old, free).paragraphs)
    new = _scenario("12")  # 6.8: freed after the last mmdrop, late but not never
    free = next(i for i in range(new.n) if new.event(i).kind == Kind.PASID_FREE and new.event(i).pasid == 2)
    assert "__mmdrop()" in " ".join(explain(new, free).paragraphs)
