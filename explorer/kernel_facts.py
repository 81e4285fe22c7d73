"""What the kernel does with PASIDs, by version range: the one table the probes and the simulator read.

`HOOKS` lists every place a capture can listen, with the mainline versions that have it, the arguments the probe
reads, and, where a second hook sees the same kernel event, which one it is a sighting of (the first sighting is
the recorded event, the second is kept as evidence on it). `FACTS` gives, per version range, how PASIDs are
allocated, freed, bound, attached, requested and answered, and which hooks see each; a row with no hook is a
blind spot: the kernel does it but no capture can see it, so findings it could explain are uncertain.

Versions are the merge window of the commit that changed the behaviour. Sources are torvalds/linux files; the
verified reference the rows follow is kept beside the project (kernel-hooks.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .events import Kind

Version = tuple[int, int]


def parse_version(release: str | None) -> Version | None:
    """(major, minor) of a release string such as '6.18.44-fc', or None."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True, slots=True)
class Span:
    """Kernel versions first..last, both included; `last` None means 'and every later one'."""

    first: Version
    last: Version | None = None

    def __contains__(self, v: object) -> bool:
        return isinstance(v, tuple) and self.first <= v and (self.last is None or v <= self.last)

    def __str__(self) -> str:
        a = f"{self.first[0]}.{self.first[1]}"
        if self.last is None:
            return f"{a}+"
        return a if self.last == self.first else f"{a}–{self.last[0]}.{self.last[1]}"


def _s(first: str, last: str | None = None) -> Span:
    f, la = parse_version(first), parse_version(last) if last else None
    assert f is not None
    return Span(f, la)


@dataclass(frozen=True, slots=True)
class HookFact:
    """A kernel hook: where mainline has it, the events it shows, and what the probe reads from it."""

    name: str  # "system:event" for a tracepoint, the function's name for a kernel function
    spans: tuple[Span, ...]  # mainline versions that have it; () for a hook only vendor trees carry
    kinds: tuple[str, ...]
    args: str  # the argument layout the probe reads
    source: str  # the kernel file that defines or calls it
    sighting_of: tuple[str, ...] = ()  # hooks that see the same kernel event first: this one is evidence on it
    vendor: str = ""  # for a non-mainline hook: the trees that carry it

    def in_kernel(self, version: Version | None) -> bool | None:
        """Does mainline `version` have this hook? None when the version is unknown."""
        if version is None:
            return None
        return any(version in s for s in self.spans)

    @property
    def versions(self) -> str:
        return ", ".join(map(str, self.spans)) if self.spans else f"not mainline ({self.vendor})"


def _h(name: str, spans: tuple[Span, ...], kinds: tuple[str, ...], args: str, source: str,
       sighting_of: tuple[str, ...] = (), vendor: str = "") -> HookFact:
    return HookFact(name, spans, kinds, args, source, sighting_of, vendor)


ALWAYS = (_s("3.0"),)
# The IOMMU drivers' page_response ops in the shape every driver has had since 6.9 ("iommu: Prepare to deliver page
# faults to user space"): (struct device *, struct iopf_fault *, struct iommu_page_response *). Every response the
# IOMMU sends goes through one: the core's (iopf_group_response), and the ones the core sends itself without it
# (iopf_queue_remove_device(), 6.11+ iopf_error_response()). Older shapes took a struct iommu_fault_event * and are
# not probed: up to 6.8 the exported iommu_page_response() saw every response that reached a driver op.
_DRIVER_OP = ("(dev, struct iopf_fault *evt, struct iommu_page_response *msg): msg.{pasid, grpid, code}, "
              "evt->fault.prm.flags (PASID_VALID)")
_CORE_RESPONSES = ("iopf_group_response", "iommu_page_response")
_DRIVER_RESPONSES = ("intel_svm_page_response", "intel_iommu_page_response", "amd_iommu_page_response",
                     "arm_smmu_page_response", "mock_domain_page_response")
_RESPONSES = _CORE_RESPONSES + _DRIVER_RESPONSES
HOOKS: tuple[HookFact, ...] = (
    _h("syscalls:sys_enter_ioctl", ALWAYS, (Kind.UAPI,), "fd, cmd, arg", "syscall tracepoints"),
    _h("syscalls:sys_exit_ioctl", ALWAYS, (Kind.UAPI,), "ret", "syscall tracepoints"),
    _h("sched:sched_process_exit", ALWAYS, (Kind.MM_EXIT,), "pid", "kernel/exit.c (after exit_mm, before "
       "exit_files)"),
    _h("syscalls:sys_enter_read", ALWAYS, (Kind.PAGE_REQUEST,), "fd, buf", "iommufd/eventq.c (fault.c ≤6.14)"),
    _h("syscalls:sys_exit_read", ALWAYS, (Kind.PAGE_REQUEST,), "ret", "iommufd/eventq.c"),
    _h("syscalls:sys_enter_write", ALWAYS, (Kind.PAGE_RESPONSE,), "fd, buf", "iommufd/eventq.c"),
    _h("syscalls:sys_exit_write", ALWAYS, (Kind.PAGE_RESPONSE,), "ret", "iommufd/eventq.c"),
    _h("syscalls:sys_enter_close", ALWAYS, (), "fd", "syscall tracepoints"),
    _h("iommu:io_page_fault", (_s("3.13"),), (Kind.FAULT,), "device, driver, iova, flags (1 = write)",
       "include/trace/events/iommu.h; only report_iommu_fault() fires it (never VT-d)"),
    _h("iommu:map", (_s("3.13"),), (Kind.MAP,), "iova, paddr, size", "include/trace/events/iommu.h"),
    _h("iommu:unmap", (_s("3.13"),), (Kind.UNMAP,), "iova, size, unmapped_size", "include/trace/events/iommu.h"),
    _h("iommu:add_device_to_group", (_s("3.13"),), (Kind.GROUP_ADD,), "gid, device", "include/trace/events/iommu.h"),
    _h("iommu:remove_device_from_group", (_s("3.13"),), (Kind.GROUP_REMOVE,), "gid, device",
       "include/trace/events/iommu.h"),
    _h("iommu:attach_device_to_domain", (_s("3.13"),), (Kind.DOMAIN_ATTACH,), "device (RID attach only)",
       "include/trace/events/iommu.h"),
    _h("iommu:dev_fault", (), (Kind.PAGE_REQUEST, Kind.FAULT),
       "device, type, reason, addr, pasid, grpid, flags, prot", "'trace/iommu: Add sva trace events' (never merged): "
       "traced at the end of iommu_report_device_fault() (drivers/iommu/iommu.c)",
       sighting_of=("iommu_report_device_fault",), vendor="openEuler OLK-5.10, HiSilicon UADK trees"),
    _h("iommu:dev_page_response", (), (Kind.PAGE_RESPONSE,), "device, code, pasid, grpid",
       "'trace/iommu: Add sva trace events' (never merged): traced in iommu_page_response() (drivers/iommu/iommu.c), "
       "before the driver's ops->page_response (a later version of the patch: after it)",
       sighting_of=("iommu_page_response",), vendor="openEuler OLK-5.10, HiSilicon UADK trees"),
    _h("intel_iommu:prq_report", (_s("5.14"),), (Kind.PAGE_REQUEST,),
       "dev, dw0 (type, pasid_present[8], rid, pasid[51:32], exe, priv), dw1 (rd, wr, lpig, prg_index[11:3], addr)",
       "drivers/iommu/intel/prq.c (svm.c up to 6.12 mainline): traced after intel_prq_report() -> "
       "iommu_report_device_fault() (which a vendor tree's iommu:dev_fault ends)",
       sighting_of=("iommu_report_device_fault", "iommu:dev_fault")),
    _h("intel_iommu:qi_submit", (_s("5.12"),), (Kind.PAGE_RESPONSE,),
       "iommu, qw0 (type 9: code[15:12], rid[31:16], pasid[51:32], pasid_p[4]), qw1 (prg[11:3], lpig[2])",
       "drivers/iommu/intel/dmar.c qi_submit_sync(), called by ops->page_response (intel_iommu_page_response)",
       sighting_of=_RESPONSES),
    _h("iommu_alloc_global_pasid", (_s("6.6"),), (Kind.PASID_ALLOC,), "(struct device *dev) -> ioasid_t",
       "drivers/iommu/iommu.c"),
    _h("iommu_free_global_pasid", (_s("6.6"),), (Kind.PASID_FREE,), "(ioasid_t pasid)",
       "drivers/iommu/iommu.c; mm_pasid_drop() calls it for an mm's PASID", sighting_of=("mm_pasid_drop",)),
    _h("iommu_sva_bind_device", (_s("5.2"),), (Kind.SVA_BIND,),
       "(dev, mm[, drvdata ≤6.1]) -> struct iommu_sva *; PASID mm->pasid (5.10–6.7), mm->iommu_mm->pasid (6.8+)",
       "drivers/iommu/iommu-sva.c (iommu.c ≤6.1)"),
    _h("iommu_sva_unbind_device", (_s("6.2"),), (Kind.SVA_UNBIND,),
       "(struct iommu_sva *h): h->dev, h->domain (6.2–6.10) / h->handle.domain (6.11+), domain->mm",
       "drivers/iommu/iommu-sva.c; before 6.2 the handle has no domain, so the mm cannot be read"),
    _h("iommu_attach_device_pasid", (_s("6.2"),), (Kind.PASID_ATTACH,),
       "(domain, dev, pasid[, handle 6.11+]) -> int; domain->type", "drivers/iommu/iommu.c"),
    _h("iommu_detach_device_pasid", (_s("6.2"),), (Kind.PASID_DETACH,), "(domain, dev, pasid)",
       "drivers/iommu/iommu.c"),
    _h("iommu_replace_device_pasid", (_s("6.15"),), (Kind.PASID_REPLACE,), "(domain, dev, pasid, handle) -> int",
       "drivers/iommu/iommu.c (IOMMUFD_INTERNAL)"),
    _h("iommu_report_device_fault", (_s("5.3"),), (Kind.PAGE_REQUEST,),
       "(dev, evt): struct iommu_fault_event * ≤6.8, struct iopf_fault * 6.9+; evt->fault.prm.{flags, pasid, "
       "grpid, perm, addr}", "drivers/iommu/iommu.c ≤6.8, io-pgfault.c 6.9+"),
    _h("iopf_group_response", (_s("6.9"),), (Kind.PAGE_RESPONSE,),
       "(struct iopf_group *, code): last_fault.fault.prm.{flags, pasid, grpid}, fault_param->dev; pending_node "
       "where the kernel checks it (6.9 until iopf_group_dequeue() came): empty, the call sends nothing",
       "drivers/iommu/io-pgfault.c ('Only send response if there is a fault report pending')"),
    _h("intel_svm_page_response", (_s("6.9", "6.12"),), (Kind.PAGE_RESPONSE,), _DRIVER_OP,
       "drivers/iommu/intel/svm.c, intel_iommu_ops.page_response (renamed with the move to prq.c)",
       sighting_of=_CORE_RESPONSES),
    _h("intel_iommu_page_response", (_s("6.12"),), (Kind.PAGE_RESPONSE,), _DRIVER_OP,
       "drivers/iommu/intel/prq.c ('iommu/vt-d: Separate page request queue from SVM', 6.13; 6.12.y took it too, "
       "as Debian's 6.12.118 shows): a 6.12 kernel has this or intel_svm_page_response",
       sighting_of=_CORE_RESPONSES),
    _h("amd_iommu_page_response", (_s("6.10"),), (Kind.PAGE_RESPONSE,), _DRIVER_OP,
       "drivers/iommu/amd/ppr.c -> amd_iommu_complete_ppr(); PPRs it rejects before reporting (GN=0, bad PASID) "
       "are answered FAILURE by amd_iommu_complete_ppr() directly, which is not probed: no hook saw their "
       "request, and the log line says it (importers/page_requests.py)", sighting_of=_CORE_RESPONSES),
    _h("arm_smmu_page_response", (_s("6.9"),), (Kind.PAGE_RESPONSE,), _DRIVER_OP,
       "drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c (CMD_RESUME for a stalled event; 6.9-6.10 also its own "
       "abort when no handler took the stall)", sighting_of=_CORE_RESPONSES),
    _h("mock_domain_page_response", (_s("6.11"),), (Kind.PAGE_RESPONSE,), _DRIVER_OP,
       "drivers/iommu/iommufd/selftest.c (CONFIG_IOMMUFD_TEST only; sends nothing)", sighting_of=_CORE_RESPONSES),
    _h("iommu_page_response", (Span((5, 3), (6, 8)),), (Kind.PAGE_RESPONSE,),
       "(dev, struct iommu_page_response *msg): msg.{pasid, grpid, code}; 6.9 has a static (group, msg) "
       "function of that name, which is not probed", "drivers/iommu/iommu.c"),
    _h("mm_pasid_drop", (_s("6.4"),), (Kind.PASID_FREE,), "(struct mm_struct *mm): the mm's PASID",
       "drivers/iommu/iommu-sva.c, called from __mmdrop() (a static inline in sched/mm.h 5.18–6.3)"),
    _h("ioasid_alloc", (Span((5, 5), (6, 3)),), (Kind.PASID_ALLOC,), "(set, min, max, private) -> ioasid_t",
       "drivers/iommu/ioasid.c (removed in 6.4)"),
    _h("ioasid_free", (Span((5, 5), (5, 10)), Span((5, 18), (6, 3))), (Kind.PASID_FREE,), "(ioasid_t)",
       "drivers/iommu/ioasid.c (5.11-5.17 free through ioasid_put())"),
    _h("ioasid_put", (Span((5, 11), (5, 17)),), (Kind.PASID_FREE,), "(ioasid_t) -> bool, true when it freed",
       "drivers/iommu/ioasid.c ('iommu/ioasid: Add reference couting functions', 5.11; gone in 5.18)"),
)
HOOK_FACTS = {h.name: h for h in HOOKS}


@dataclass(frozen=True, slots=True)
class NotHooked:
    """A place that looks like a hook for PASID events but is not offered: why a probe there would mislead."""

    name: str
    span: Span
    why: str
    source: str


NOT_HOOKED: tuple[NotHooked, ...] = (
    NotHooked("intel_iommu:cache_tag_assign/unassign", _s("6.10"),
              "not an attach: one fires per cache tag (IOTLB, DEVTLB with ATS, NESTING_* on a nested domain's "
              "parent), again on every reuse of a tag (users++), also for RID attaches (PASID 0) and for an "
              "assignment a failed attach undoes; an IOTLB tag names the IOMMU, not the device, and is shared by "
              "every device behind it at that domain ID and PASID (all SVA domains use FLPT_DEFAULT_DID). A device "
              "without ATS has no tag of its own, so its attaches would go unseen and be reported as missing",
              "drivers/iommu/intel/cache.c cache_tag_assign(), cache_tage_match(); drivers/iommu/intel/trace.h"),
    NotHooked("amd_iommu_complete_ppr", _s("6.10"),
              "besides amd_iommu_page_response() (probed), ppr.c calls it to answer FAILURE to PPRs it rejects "
              "before any report (GN=0, reserved flags, PASID 0 or beyond the device's width): a response to a "
              "request no hook saw, a false stray response; the kernel's log line says it instead (F13)",
              "drivers/iommu/amd/ppr.c iommu_call_iopf_notifier()"),
    NotHooked("iopf_error_response", _s("6.11"),
              "static in io-pgfault.c (may be inlined); its INVALID goes through ops->page_response, where the "
              "drivers' page_response hooks see it", "drivers/iommu/io-pgfault.c"),
    NotHooked("page_response ops before 6.9", _s("5.3", "6.8"),
              "took a struct iommu_fault_event *; the responses they sent came through the exported "
              "iommu_page_response() (probed), except SMMUv3's own FAILURE for a stall no handler took "
              "(arm_smmu_handle_evt, 5.13-6.8), which no probe sees",
              "drivers/iommu/iommu.c, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c"),
)


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing the kernel does in one version range, and the hooks that see it (first = authoritative)."""

    key: str
    topic: str  # allocate, free, bind, unbind, attach, request, response
    span: Span
    text: str
    hooks: tuple[str, ...]  # () is a blind spot: the kernel does it, no capture sees it
    source: str
    hides: tuple[str, ...] = ()  # event kinds a blind spot hides

    @property
    def blind(self) -> bool:
        return not self.hooks and bool(self.hides)


_ALLOC, _FREE = (Kind.PASID_ALLOC,), (Kind.PASID_FREE,)
FACTS: tuple[Fact, ...] = (
    Fact("alloc.driver", "allocate", _s("5.2", "5.4"),
         "each IOMMU driver hands out SVA PASIDs from its own IDR (Intel svm.c pasid_idr)", (),
         "drivers/iommu/intel-svm.c", _ALLOC),
    Fact("alloc.ioasid", "allocate", _s("5.5", "6.3"), "the ioasid allocator (ioasid_alloc), lowest free first",
         ("ioasid_alloc",), "drivers/iommu/ioasid.c"),
    Fact("alloc.sva-ida", "allocate", _s("6.4", "6.5"),
         "a static iommu_sva_alloc_pasid() takes the PASID from an IDA private to iommu-sva.c; no hook sees it, "
         "the PASID shows first at the bind's attach (iommu_attach_device_pasid()) and return", (),
         "drivers/iommu/iommu-sva.c ('iommu: Remove ioasid infrastructure')", _ALLOC),
    Fact("alloc.global-ida", "allocate", _s("6.6"),
         "iommu_alloc_global_pasid(dev): the global IDA, lowest free in 1..max_pasids(dev)-1",
         ("iommu_alloc_global_pasid",), "drivers/iommu/iommu.c, iommu-sva.c iommu_alloc_mm_data()"),
    Fact("alloc.user", "allocate", _s("6.15"),
         "iommufd/VFIO PASIDs are chosen by user space per device (VFIO_DEVICE_ATTACH_PASID): no allocation; "
         "they share the device's PASID table with SVA and clash with -EBUSY", ("iommu_attach_device_pasid",),
         "drivers/iommu/iommufd/device.c, include/uapi/linux/vfio.h"),
    Fact("free.driver", "free", _s("5.2", "5.4"), "the driver frees its IDR PASID at the mm's last unbind", (),
         "drivers/iommu/intel-svm.c", _FREE),
    Fact("free.ioasid", "free", _s("5.5", "5.10"), "ioasid_free() at the mm's last unbind", ("ioasid_free",),
         "drivers/iommu/intel/svm.c, ioasid.c"),
    Fact("free.ioasid-put", "free", _s("5.11", "5.17"),
         "ioasid_put() drops the last reference at the mm's last unbind and returns true when it freed the PASID",
         ("ioasid_put",), "drivers/iommu/ioasid.c, iommu-sva-lib.c iommu_sva_free_pasid()"),
    Fact("free.ioasid-mm", "free", _s("5.18", "6.3"),
         "mm_pasid_drop() (inline in sched/mm.h) calls ioasid_free() from __mmdrop()", ("ioasid_free",),
         "include/linux/sched/mm.h, kernel/fork.c"),
    Fact("free.mm-drop", "free", _s("6.4", "6.5"), "mm_pasid_drop() frees the mm's PASID to the SVA IDA",
         ("mm_pasid_drop",), "drivers/iommu/iommu-sva.c"),
    Fact("free.global", "free", _s("6.6"),
         "iommu_free_global_pasid(); for an mm's PASID it is called by mm_pasid_drop(), one free seen twice",
         ("mm_pasid_drop", "iommu_free_global_pasid"), "drivers/iommu/iommu-sva.c mm_pasid_drop()"),
    Fact("sva.free-last-unbind", "free", _s("5.2", "5.17"), "an mm's SVA PASID is freed at its last unbind", (),
         "'x86/mmu: Allocate/free a PASID' (5.10)"),
    Fact("sva.free-mmdrop", "free", _s("5.18"),
         "an mm's SVA PASID lives as long as the mm: freed by mm_pasid_drop() in __mmdrop(), after the process "
         "exits and after the last SVA domain drops its mmgrab (late, never 'not at all')", (),
         "kernel/fork.c __mmdrop(), 'mm: Fix PASID use-after-free issue'"),
    Fact("bind.sva", "bind", _s("5.2"), "iommu_sva_bind_device(): the first bind of an mm allocates, later binds "
         "(any device) reuse it, -EOVERFLOW when the PASID is beyond the device's max_pasids",
         ("iommu_sva_bind_device",), "drivers/iommu/iommu-sva.c"),
    Fact("bind.slot-checked", "bind", _s("6.11"),
         "iommu_sva_bind_device() looks up the (device, PASID) slot first (iommu_attach_handle_get(..., "
         "IOMMU_DOMAIN_SVA)): another domain there, or another mm's SVA domain, fails the bind with -EBUSY before "
         "any iommu_attach_device_pasid()", ("iommu_sva_bind_device",),
         "drivers/iommu/iommu-sva.c ('iommu: Replace sva_iommu with iommu_attach_handle', 6.11)"),
    Fact("unbind.blind", "unbind", _s("5.2", "6.1"),
         "iommu_sva_unbind_device() runs, but the handle has no domain: the probe cannot tell which mm", (),
         "include/linux/iommu.h struct iommu_sva", (Kind.SVA_UNBIND,)),
    Fact("unbind.sva", "unbind", _s("6.2"), "iommu_sva_unbind_device(): the last unbind detaches the SVA domain",
         ("iommu_sva_unbind_device",), "drivers/iommu/iommu-sva.c"),
    Fact("attach.pasid", "attach", _s("6.2"),
         "iommu_attach_device_pasid()/detach: -EBUSY when the (device, PASID) is taken in the group's pasid_array "
         "(xa_cmpxchg)", ("iommu_attach_device_pasid", "iommu_detach_device_pasid"), "drivers/iommu/iommu.c"),
    Fact("attach.pasid-checked", "attach", _s("6.9"),
         "iommu_attach_device_pasid() refuses PASID 0 (IOMMU_NO_PASID) and a PASID ≥ the device's max_pasids with "
         "-EINVAL", ("iommu_attach_device_pasid",),
         "drivers/iommu/iommu.c, c404f55c26fc 'iommu: Validate the PASID in iommu_attach_device_pasid()' (6.9-rc2)"),
    Fact("attach.nested", "attach", _s("6.13"),
         "a nested domain (IOMMU_DOMAIN_NESTED, 6.7+) attaches to a PASID: VT-d's nested domain gains set_dev_pasid "
         "(before it iommu_attach_device_pasid() returns -EOPNOTSUPP; SMMUv3 nests the guest's whole CD table on "
         "the RID instead)", ("iommu_attach_device_pasid",),
         "drivers/iommu/intel/nested.c, 67f6f56b5912 'iommu/vt-d: Add set_dev_pasid callback for nested domain' "
         "(6.13); 54d606816b32 'iommu: Add IOMMU_DOMAIN_NESTED' (6.7)"),
    Fact("attach.replace", "attach", _s("6.15"), "iommu_replace_device_pasid() switches an attached PASID",
         ("iommu_replace_device_pasid",), "drivers/iommu/iommu.c"),
    Fact("request.vtd-svm", "request", _s("5.2", "5.13"),
         "VT-d's svm.c answers page requests itself, without reporting them: only the response (qi_submit, 5.12+) "
         "shows", (), "drivers/iommu/intel/svm.c prq_event_thread()", (Kind.PAGE_REQUEST,)),
    Fact("request.report", "request", _s("5.14"),
         "iommu_report_device_fault() for each page request; VT-d traces prq_report for the same descriptor "
         "after it", ("iommu_report_device_fault", "intel_iommu:prq_report"),
         "drivers/iommu/intel/prq.c intel_prq_report()"),
    Fact("request.needs-pasid-bit3", "request", _s("5.3", "6.9"), "IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID is 1 << 3",
         ("iommu_report_device_fault",), "include/linux/iommu.h"),
    Fact("request.needs-pasid-bit2", "request", _s("6.10"),
         "IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID is 1 << 2 (PRIV_DATA flag removed; private_data[] kept)",
         ("iommu_report_device_fault",), "include/linux/iommu.h, 'iommu/vt-d: Remove private data use in fault "
         "message'"),
    Fact("response.page-response", "response", _s("5.3", "6.8"),
         "iommu_page_response(dev, msg) matches the group by PRG index, and by PASID when NEEDS_PASID; unmatched "
         "responses are dropped", ("iommu_page_response", "intel_iommu:qi_submit"), "drivers/iommu/iommu.c"),
    Fact("response.group", "response", _s("6.9"),
         "iopf_group_response(group, code) answers a group through the driver's page_response op; kernels from "
         "before iopf_group_dequeue() (which Debian's 6.12.118 has) send nothing for a group no longer pending; "
         "VT-d's qi_submit shows the descriptor sent",
         ("iopf_group_response", *_DRIVER_RESPONSES, "intel_iommu:qi_submit"), "drivers/iommu/io-pgfault.c"),
    Fact("response.automatic", "response", _s("6.9"),
         "the kernel answers groups itself through the driver's page_response op, never through "
         "iopf_group_response: queue removal answers every pending group INVALID (iopf_queue_remove_device), no "
         "handler -> INVALID (iopf_error_response, 6.11+; 6.9-6.10 SMMUv3 answered FAILURE itself)",
         (*_DRIVER_RESPONSES, "intel_iommu:qi_submit"), "drivers/iommu/io-pgfault.c"),
    Fact("response.iommufd", "response", _s("6.11"),
         "a fault-queue write answers by cookie with SUCCESS or INVALID only; detach, replace and queue destroy "
         "answer pending groups INVALID", ("syscalls:sys_exit_write",), "drivers/iommu/iommufd/eventq.c"),
)
FACT_KEYS = {f.key: f for f in FACTS}


def facts_for(version: Version | None) -> list[Fact]:
    """The rows that hold for `version` (unknown: the current kernel's)."""
    v = version or CURRENT
    return [f for f in FACTS if v in f.span]


CURRENT: Version = (6, 18)


def applied_facts(probes: dict[str, object] | None, release: str | None) -> list[Fact]:
    """The rows a recording's header says applied (a capture stores them), else those of its kernel's version."""
    stored = (probes or {}).get("kernel_facts")
    if isinstance(stored, list):
        return [FACT_KEYS[k] for k in stored if isinstance(k, str) and k in FACT_KEYS]
    return facts_for(parse_version(release))


def blind_spots(version: Version | None, unavailable: dict[str, str] | None = None) -> dict[str, str]:
    """Event kinds this kernel produces that a capture cannot see, with why: a row with no hook, or one whose
    every hook the capture could not attach (`unavailable`: hook -> why, from the recording's header)."""
    out: dict[str, str] = {}
    for f in facts_for(version):
        if f.blind:
            for kind in f.hides:
                out.setdefault(str(kind), f"{f.text} ({f.key}, {f.span})")
        elif unavailable is not None and f.hooks and all(h in unavailable for h in f.hooks):
            for kind in HOOK_FACTS[f.hooks[0]].kinds:
                out.setdefault(str(kind), "; ".join(f"{h}: {unavailable[h]}" for h in f.hooks))
    return out


_SOURCES = {  # Rules.describe()'s words for each allocator (the FACTS rows say more, in sentences of their own)
    "driver": "each IOMMU driver's own IDR (Intel svm.c pasid_idr)",
    "ioasid": "the ioasid allocator (ioasid_alloc()), the lowest free number first",
    "sva-ida": "an IDA private to iommu-sva.c (iommu_sva_alloc_pasid(), which no hook sees)",
    "global-ida": "the global IDA (iommu_alloc_global_pasid(dev)), the lowest free number in 1..max_pasids(dev)-1",
}


@dataclass(frozen=True, slots=True)
class Rules:
    """The semantics the simulator applies for one kernel version."""

    version: Version | None
    allocator: str  # driver, ioasid, sva-ida or global-ida
    sva_free_at: str  # last_unbind (≤5.17) or mmdrop (5.18+)
    needs_pasid_bit: int  # IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID in this kernel's flags
    user_pasids: bool  # user space chooses PASIDs per device through iommufd/VFIO: 6.15+
    unbind_visible: bool  # a probe can name an unbind's mm (6.2+; before, an unbind shows only by its effects)
    requests_visible: bool  # page requests reach a hook (VT-d's svm.c answered them unreported up to 5.13)
    allocs_visible: bool  # an mm's SVA allocation reaches a hook (none does 5.2-5.4 and 6.4-6.5: shown first in use)

    def describe(self) -> str:
        """One line, in words: where this kernel's PASIDs come from and when an mm's goes back."""
        v = "{}.{}".format(*(self.version or CURRENT))
        kernel = f"kernel {v}" if self.version else f"kernel unknown (judged as {v})"
        when = "at its last unbind" if self.sva_free_at == "last_unbind" else "after the mm's last mmdrop"
        user = "; user space chooses its own per device through iommufd/VFIO" if self.user_pasids else ""
        return (f"{kernel}: the kernel's PASIDs come from {_SOURCES[self.allocator]}{user}; an mm's SVA PASID is "
                f"freed {when}")


def rules_for(release: str | None) -> Rules:
    version = parse_version(release)
    v = version or CURRENT
    allocator = ("driver" if v < (5, 5) else "ioasid" if v < (6, 4) else "sva-ida" if v < (6, 6) else "global-ida")
    blind = blind_spots(v)
    return Rules(version, allocator, "last_unbind" if v < (5, 18) else "mmdrop",
                 1 << 3 if v < (6, 10) else 1 << 2, v >= (6, 15), Kind.SVA_UNBIND not in blind,
                 Kind.PAGE_REQUEST not in blind, Kind.PASID_ALLOC not in blind)
