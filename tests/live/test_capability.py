"""The capability rules: from host facts to a verdict per hook, the kinds left invisible, and preflight errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.errors import CaptureError
from probes.capability import (
    FORMAT_DIFFERS,
    LOCKDOWN,
    MISSING,
    MISSING_SYMBOL,
    NEEDS_ROOT,
    NO_KPROBES,
    NOT_TRACEABLE,
    WILL_ATTACH,
    HostFacts,
    coverage,
    header_probes,
    plan,
)
from probes.capture import preflight
from probes.hooks import BY_NAME, HOOKS

from .test_btf import synthetic_btf

ALL_FIELDS = {h.name: frozenset(h.fields) for h in HOOKS if not h.function}


def facts(**kw: object) -> HostFacts:
    base = dict(kernel="6.18.0", root=True, tracefs=Path("/sys/kernel/tracing"), lockdown="none", kprobes=True,
                btf=synthetic_btf(), symbols=frozenset(h.name for h in HOOKS if h.function), traceable=None,
                fentry_error=None, formats=dict(ALL_FIELDS))
    base.update(kw)
    return HostFacts(**base)  # type: ignore[arg-type]


def verdict(f: HostFacts, name: str):  # type: ignore[no-untyped-def]
    return next(v for v in plan(f) if v.hook.name == name)


def test_a_permissive_host_attaches_tracepoints_and_fentry() -> None:
    f = facts()
    v = verdict(f, "iommu:io_page_fault")
    assert (v.status, v.method, v.cflags) == (WILL_ATTACH, "tracepoint", ("-DHAVE_TP_iommu__io_page_fault",))
    v = verdict(f, "iommu_alloc_global_pasid")
    assert (v.status, v.method) == (WILL_ATTACH, "fentry")
    assert "-DOFF_DEV_NAME=16" in v.cflags and "-DNARGS_iommu_alloc_global_pasid=1" in v.cflags


def test_lockdown_confidentiality_refuses_even_tracepoints_as_they_read_kernel_memory() -> None:
    """F23: under confidentiality LOCKDOWN_BPF_READ_KERNEL withholds bpf_probe_read_kernel from tracing programs
    (kernel/trace/bpf_trace.c), and every tracepoint program here reads kernel strings with it."""
    v = verdict(facts(lockdown="confidentiality"), "iommu:io_page_fault")
    assert v.status == LOCKDOWN and "bpf_probe_read_kernel" in v.reason
    assert verdict(facts(lockdown="integrity"), "iommu:io_page_fault").status == WILL_ATTACH


def test_without_fentry_kprobes_take_over_unless_lockdown_refuses_them() -> None:
    assert verdict(facts(fentry_error="unsupported"), "iommu_alloc_global_pasid").method == "kprobe"
    # Lockdown "integrity" refuses fentry here, but not kprobes: the kernel refuses those only under
    # "confidentiality" (LOCKDOWN_KPROBES comes after LOCKDOWN_INTEGRITY_MAX).
    v = verdict(facts(fentry_error="blocked by lockdown (integrity)", lockdown="integrity"),
                "iommu_alloc_global_pasid")
    assert v.method == "kprobe" and v.planned
    v = verdict(facts(fentry_error="blocked by lockdown (confidentiality)", lockdown="confidentiality"),
                "iommu_alloc_global_pasid")
    assert v.status == LOCKDOWN and "kprobes: refused under lockdown=confidentiality" in v.reason
    v = verdict(facts(fentry_error="blocked by lockdown (integrity)", lockdown="integrity", kprobes=False),
                "iommu_alloc_global_pasid")
    assert v.status == LOCKDOWN and "not built into this kernel" in v.reason
    assert verdict(facts(fentry_error="unsupported", kprobes=False), "iommu_alloc_global_pasid").status == NO_KPROBES


def test_missing_symbols_tracepoints_formats_and_root() -> None:
    assert verdict(facts(symbols=frozenset()), "mm_pasid_drop").status == MISSING_SYMBOL
    assert verdict(facts(traceable=frozenset()), "mm_pasid_drop").status == NOT_TRACEABLE
    assert verdict(facts(formats={}), "intel_iommu:prq_report").status == MISSING
    odd = dict(ALL_FIELDS, **{"iommu:map": frozenset({"iova", "size"})})
    v = verdict(facts(formats=odd), "iommu:map")
    assert v.status == FORMAT_DIFFERS and "paddr" in v.reason
    assert {v.status for v in plan(facts(root=False))} == {NEEDS_ROOT}


def test_a_struct_member_the_kernel_lacks_makes_the_hook_unavailable_not_guessed() -> None:
    v = verdict(facts(), "iommu_sva_unbind_device")  # the synthetic BTF has no struct iommu_sva
    assert v.status == FORMAT_DIFFERS and "iommu_sva.dev" in v.reason


def test_coverage_separates_partial_from_invisible() -> None:
    locked = facts(fentry_error="blocked by lockdown (integrity)", lockdown="integrity", kprobes=False,
                   formats={k: v for k, v in ALL_FIELDS.items() if not k.startswith(("intel", "iommu:dev_"))})
    verdicts = plan(locked)
    cov = coverage(verdicts)
    assert "uapi" in cov.visible and "lost" in cov.visible and "mm_exit" in cov.visible
    assert set(cov.partial) == {"page_request", "page_response"}
    assert "iommu_alloc_global_pasid: blocked by lockdown" in cov.invisible["pasid_alloc"]
    assert "marker" not in cov.invisible and "anomaly" not in cov.invisible
    probes = header_probes(verdicts)
    assert probes["attached"] == []  # nothing attached yet: planned only
    assert set(probes["unavailable"]) == {h.name for h in HOOKS}
    assert BY_NAME["syscalls:sys_enter_ioctl"].fields == ("fd", "cmd", "arg")


def test_preflight_names_the_fix() -> None:
    with pytest.raises(CaptureError, match="needs root"):
        preflight(facts(root=False), Path("/"))
    with pytest.raises(CaptureError, match="mount -t tracefs nodev /sys/kernel/tracing"):
        preflight(facts(tracefs=None), Path("/"))
    with pytest.raises(CaptureError, match="linux-headers-6.18.0.*kernel-devel"):
        preflight(facts(), None)
