"""The kernel facts table: every row names real hooks, version ranges do not overlap where they must not, and the
rules the simulator and the probes take from it follow the kernel's history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from explorer.cli.main import main
from explorer.kernel_facts import FACTS, HOOK_FACTS, NOT_HOOKED, blind_spots, facts_for, parse_version, rules_for
from probes.hooks import HOOKS

ROOT = Path(__file__).resolve().parents[2]


def test_every_fact_names_hooks_of_the_table_and_every_probe_hook_has_a_row() -> None:
    assert {h.name for h in HOOKS} == set(HOOK_FACTS)
    for f in FACTS:
        assert all(h in HOOK_FACTS for h in f.hooks), f.key
        # a fact's first hook is there from the range's first version; every hook is there somewhere in the range
        # (one IOMMU driver's op or tracepoint only where that driver has it: intel_iommu_page_response 6.13+)
        if f.hooks:
            assert HOOK_FACTS[f.hooks[0]].in_kernel(f.span.first), f.key
        last = f.span.last or (6, 18)
        versions = [(6, m) for m in range(19)] + [(5, m) for m in range(20)]
        for h in f.hooks:
            assert any(HOOK_FACTS[h].in_kernel(v) and f.span.first <= v <= last for v in versions) or \
                not HOOK_FACTS[h].spans, (f.key, h)
    for h in HOOK_FACTS.values():
        assert all(s in HOOK_FACTS for s in h.sighting_of), h.name
        assert bool(h.spans) != bool(h.vendor), f"{h.name}: mainline versions or a vendor label, not both"


def test_one_allocator_and_one_free_path_per_version() -> None:
    for minor in [(5, m) for m in range(2, 20)] + [(6, m) for m in range(0, 19)]:
        topics = [f.key for f in facts_for(minor) if f.key.startswith(("alloc.", "free.")) and f.key != "alloc.user"]
        assert sum(k.startswith("alloc.") for k in topics) == 1, (minor, topics)
        assert sum(k.startswith("free.") for k in topics) == 1, (minor, topics)


def test_blind_spots_follow_the_kernels_history() -> None:
    # 6.4-6.5: the PASID comes from an IDA private to iommu-sva.c, through a static function (F5)
    assert set(blind_spots((6, 5))) == {"pasid_alloc"}
    # 5.11-5.17: unbinds have no domain to name the mm by (F26); frees show at ioasid_put()'s return (F24)
    assert set(blind_spots((5, 15))) == {"sva_unbind"}
    assert blind_spots((6, 18)) == {}
    # every hook of a row the capture could not attach makes its kinds a blind spot too
    assert set(blind_spots((6, 18), {"iommu_alloc_global_pasid": "blocked by lockdown"})) == {"pasid_alloc"}
    assert blind_spots((6, 18), {"mm_pasid_drop": "blocked by lockdown"}) == {}  # iommu_free_global_pasid sees it


def test_rules_for_each_era() -> None:
    assert parse_version("6.18.44-fc") == (6, 18) and parse_version("weird") is None
    r = rules_for("5.15.0")
    assert (r.allocator, r.sva_free_at, r.needs_pasid_bit) == ("ioasid", "last_unbind", 1 << 3)
    r = rules_for("6.4")
    assert (r.allocator, r.sva_free_at, r.user_pasids) == ("sva-ida", "mmdrop", False)
    r = rules_for("6.10")  # NEEDS_PASID moved from bit 3 to bit 2 in 6.10, not 6.7 (F2)
    assert (r.allocator, r.needs_pasid_bit) == ("global-ida", 1 << 2)
    assert rules_for("6.9").needs_pasid_bit == 1 << 3 and rules_for(None).user_pasids


def test_every_versions_rules_line_reads_as_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    """`info` pasted each allocator's FACTS sentence after "come from": "PASIDs come from a static
    iommu_sva_alloc_pasid() takes the PASID ..." (6.4-6.5), "PASIDs come from each IOMMU driver hands out ..."
    (5.2-5.4). Each era's line is checked, and every version from 5.2 to 7.0 has one of these shapes."""
    assert main(["info", str(ROOT / "recordings" / "11-era-sva-ida.pasidrec")]) == 0
    assert ("rules: kernel 6.5: the kernel's PASIDs come from an IDA private to iommu-sva.c (iommu_sva_alloc_pasid(), "
            "which no hook sees); an mm's SVA PASID is freed after the mm's last mmdrop\n") in capsys.readouterr().out
    assert rules_for("5.4").describe() == ("kernel 5.4: the kernel's PASIDs come from each IOMMU driver's own IDR "
                                           "(Intel svm.c pasid_idr); an mm's SVA PASID is freed at its last unbind")
    assert rules_for("5.10").describe().startswith("kernel 5.10: the kernel's PASIDs come from the ioasid allocator "
                                                   "(ioasid_alloc()), the lowest free number first;")
    assert "come from the global IDA (iommu_alloc_global_pasid(dev)), the lowest free number in " \
        "1..max_pasids(dev)-1; user space chooses its own per device through iommufd/VFIO; an mm's" \
        in rules_for("6.15").describe()
    sources = "|".join(re.escape(s) for s in (
        "each IOMMU driver's own IDR (Intel svm.c pasid_idr)", "the ioasid allocator (ioasid_alloc()), the lowest "
        "free number first", "an IDA private to iommu-sva.c (iommu_sva_alloc_pasid(), which no hook sees)",
        "the global IDA (iommu_alloc_global_pasid(dev)), the lowest free number in 1..max_pasids(dev)-1"))
    shape = re.compile(rf"kernel (\d+\.\d+|unknown \(judged as 6\.18\)): the kernel's PASIDs come from ({sources})"
                       r"(; user space chooses its own per device through iommufd/VFIO)?"
                       r"; an mm's SVA PASID is freed (at its last unbind|after the mm's last mmdrop)")
    for release in [f"5.{m}" for m in range(2, 20)] + [f"6.{m}" for m in range(0, 20)] + ["7.0", None]:
        assert shape.fullmatch(rules_for(release).describe()), release


def test_places_not_probed_are_not_offered_and_each_says_why_with_its_source() -> None:
    # F25: intel/cache.c fires cache_tag_assign per tag and per reuse, not per attach; F11: ppr.c's own aborts
    for n in NOT_HOOKED:
        assert n.name not in HOOK_FACTS and n.why and n.source.startswith("drivers/"), n.name
