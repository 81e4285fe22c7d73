"""A kernel hook is declared once (probes/hooks.py): its record, decoder, struct reads and return probe there, its
versions, arguments and kinds in the kernel facts table. The declaration is complete and consistent."""

from __future__ import annotations

import re

from explorer.kernel_facts import HOOK_FACTS
from probes import loader
from probes.decode import SECOND_SIGHTINGS, SIGHTINGS, Decoder
from probes.hooks import DRIVER_RESPONSE_OPS, HOOKS
from probes.kernel_funcs import OFFSETS


def test_every_recording_hook_has_a_decoder_and_every_function_reads_known_members() -> None:
    for h in HOOKS:
        if h.ev is not None and h.ev.name != "IOCTL":  # ioctls are decoded in bulk
            assert callable(getattr(Decoder, h.decoder, None)), h.name
            assert Decoder._handlers[int(h.ev)] is getattr(Decoder, h.decoder)
        assert all(r in OFFSETS for r in h.reads), h.name
        assert not (h.reads or h.returns) or h.function, h.name


def test_hooks_that_see_one_kernel_event_pair_up_as_the_facts_table_says() -> None:
    for h in HOOKS:
        second = HOOK_FACTS[h.name].sighting_of
        if second:  # a second sighting shares its event with the hook(s) it follows
            assert h.shares and int(h.ev) in SECOND_SIGHTINGS
            assert all(next(g for g in HOOKS if g.name == s).shares == h.shares for s in second)
    assert set(SIGHTINGS.values()) == {"free", "request", "response"}


def test_a_driver_response_record_names_its_op_as_the_bpf_program_numbers_it() -> None:
    text = (loader.PROBES_DIR / loader.KERNEL_FUNCS).read_text()
    numbered = dict(re.findall(r"^DRIVER_PAGE_RESPONSE\((\w+), (\d+)\)", text, re.M))
    assert {name: int(i) for name, i in numbered.items()} == {n: i for i, n in enumerate(DRIVER_RESPONSE_OPS)}
    assert all(HOOK_FACTS[n].sighting_of == ("iopf_group_response", "iommu_page_response") for n in numbered)
