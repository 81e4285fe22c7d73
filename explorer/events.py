"""The event model: the one contract between probes, importers, scenarios, recordings, simulator and UI.

Every event is one `Event`: a common header (time, CPU, pid, comm, source, device, PASID) plus the fields of
its kind. `KINDS` is the schema of each kind's fields; kinds and fields this version does not know (written by a
newer one) are carried through untouched, so nothing a recording holds is dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PASID_BITS = 20
PASID_SPACE = 1 << PASID_BITS
IOMMU_NO_PASID = 0
IOMMU_PASID_INVALID = 0xFFFFFFFF


class Kind(enum.StrEnum):
    """Every event kind this version knows; recordings may hold others, kept as plain strings."""

    PASID_ALLOC = "pasid_alloc"
    PASID_FREE = "pasid_free"
    SVA_BIND = "sva_bind"
    SVA_UNBIND = "sva_unbind"
    MM_EXIT = "mm_exit"
    PASID_ATTACH = "pasid_attach"
    PASID_DETACH = "pasid_detach"
    PASID_REPLACE = "pasid_replace"
    PAGE_REQUEST = "page_request"
    PAGE_RESPONSE = "page_response"
    FAULT = "fault"
    MAP = "map"
    UNMAP = "unmap"
    GROUP_ADD = "group_add"
    GROUP_REMOVE = "group_remove"
    DOMAIN_ATTACH = "domain_attach"
    UAPI = "uapi"
    LOST = "lost"
    MARKER = "marker"
    ANOMALY = "anomaly"


class AllocPath(enum.StrEnum):
    """Who asked for a PASID: the two legitimate ways, plus what older kernels and buggy drivers do."""

    SVA = "sva"  # from an mm: the first SVA bind of a process allocates its one global PASID
    IOMMUFD = "iommufd"  # the user interface (iommufd, once "/dev/sva"), for processes and VMs
    DRIVER = "driver"  # a kernel driver calling iommu_alloc_global_pasid() for itself
    IOASID = "ioasid"  # the 5.x ioasid allocator


class DomainType(enum.StrEnum):
    """What a (device, PASID) is attached to."""

    SVA = "sva"  # shares a process's CPU page table
    PAGING = "paging"  # an IOVA page table owned by the kernel or by user space through iommufd
    NESTED = "nested"  # a guest's stage-1 table nested on a host stage-2: a VM's PASID
    IDENTITY = "identity"
    BLOCKED = "blocked"


class ResponseCode(enum.IntEnum):
    """PRG response codes, as `enum iommu_page_response_code` numbers them."""

    SUCCESS = 0
    INVALID = 1
    FAILURE = 2


class Perm(enum.IntFlag):
    """Access bits of a page request or fault (IOMMU_FAULT_PERM_*)."""

    READ = 1
    WRITE = 2
    EXEC = 4
    PRIV = 8


def perm_text(bits: int) -> str:
    """'rw-p' style rendering of permission bits, as a reader of fault logs expects."""
    return "".join(ch if bits & flag else "-" for ch, flag in (("r", 1), ("w", 2), ("x", 4), ("p", 8)))


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of one kind: its name, Python type, whether it must be present, and what it means."""

    name: str
    type: type | tuple[type, ...]
    doc: str
    required: bool = False


def _f(name: str, typ: type | tuple[type, ...], doc: str, required: bool = False) -> FieldSpec:
    return FieldSpec(name, typ, doc, required)


_INT = int
_OPT_INT = (int, type(None))
_ERR = _f("error", int, "negative errno when the kernel call failed, 0 or absent on success")
_OWNER = _f("owner", str, "who holds it: 'pid 1234 (qemu)', 'iommufd obj 7', 'vm guest0'")
_MM = _f("mm", int, "the address space: the tgid of the process it belongs to, or its mm pointer when the probe saw "
         "it outside that process or the tgid already names another live mm (one the process had before an exec)")
_DOMAIN = _f("domain", int, "domain id (kernel pointer or iommufd object id)")
_DOMAIN_TYPE = _f("domain_type", str, "sva, paging, nested, identity or blocked (DomainType)")
_ATTACHED = (  # what an attach, or a replace (the same attach on an attached PASID), says of the new domain
    _f("guest_pasid", int, "the guest's own number for this PASID, where a VMM told us"),
    _f("vm", str, "the virtual machine owning a nested domain"),
    _f("fault_queue", int, "iommufd fault queue id receiving this PASID's page requests"),
    _f("dma_api", bool, "a paging domain is the DMA API's (a kernel driver's IOMMU_DOMAIN_DMA or _DMA_FQ: the "
                        "__IOMMU_DOMAIN_DMA_API bit), not one user space made (iommufd); absent when not known"),
)
_SEEN_BY = _f("seen_by", list, "other hooks that saw this same kernel event: evidence on it, not events of their own")
_SAME_AS = _f("same_as", list, "in a merged recording, this group's event on another machine, as a VMM passed it "
                               "between host and guest: [time on the merged timeline, machine number, device]")

KINDS: dict[str, tuple[FieldSpec, ...]] = {
    Kind.PASID_ALLOC: (
        _f("path", str, "who asked: sva, iommufd, driver or ioasid (AllocPath)", True),
        _OWNER, _MM, _ERR,
        _f("vm", str, "the virtual machine this PASID serves, for the iommufd path"),
    ),
    Kind.PASID_FREE: (_f("path", str, "the path that allocated it, when known"), _OWNER, _MM, _SEEN_BY),
    Kind.SVA_BIND: (_MM, _f("handle", int, "the bind handle (struct iommu_sva *)"), _ERR),
    Kind.SVA_UNBIND: (_MM, _f("handle", int, "the bind handle (struct iommu_sva *)")),
    Kind.MM_EXIT: (_MM,),
    Kind.PASID_ATTACH: (_DOMAIN, _DOMAIN_TYPE, _ERR, *_ATTACHED),
    Kind.PASID_DETACH: (_DOMAIN, _DOMAIN_TYPE),
    Kind.PASID_REPLACE: (_DOMAIN, _DOMAIN_TYPE, _f("old_domain", int, "the domain it replaced"), _ERR, *_ATTACHED),
    Kind.PAGE_REQUEST: (
        _f("prg", int, "9-bit page request group index", True),
        _f("addr", int, "page address requested", True),
        _f("perm", int, "access bits: 1 read, 2 write, 4 exec, 8 privileged (Perm)"),
        _f("last", bool, "this request closes its group (Last flag)"),
        _f("needs_pasid", bool, "the response must carry the PASID"),
        _SEEN_BY, _SAME_AS,
    ),
    Kind.PAGE_RESPONSE: (
        _f("prg", int, "page request group index answered", True),
        _f("code", int, "0 success, 1 invalid request, 2 response failure (ResponseCode)", True),
        _f("by", str, "who answered: kernel (iopf handler), user (iommufd fault fd), guest (a VM)"),
        _SEEN_BY, _SAME_AS,
    ),
    Kind.FAULT: (
        _f("addr", int, "faulting address"),
        _f("reason", str, "the reason in words"),
        _f("code", int, "vendor reason code (Intel fault reason, AMD event code, SMMU event id)"),
        _f("flags", int, "raw flags word as the kernel printed or passed it"),
        _f("vendor", str, "intel, amd, arm-smmu-v3, arm-smmu, amdgpu, mediatek, rockchip, exynos, ipmmu, apple-dart, "
                              "msm-gpu, xen-vtd or generic"),
        _f("access", str, "read, write, exec or unknown"),
        _f("driver", str, "driver bound to the device"),
        _f("raw", str, "the original text line(s), for imported faults"),
        _f("suppressed", int, "faults the kernel folded into a 'callbacks suppressed' count"),
        _f("pasid_space", str, "whose numbering the PASID is in when it is not the IOMMU's global space: "
                               "'amdgpu' (the GPU driver's own, amdgpu_ids.c)"),
        _f("vmid", int, "the GPU VM the fault hit (amdgpu)"),
        _f("client", str, "the engine or port that faulted (amdgpu UTCL2 client, MediaTek larb/port, ...)"),
        _f("thread", str, "the faulting thread, as the driver named it"),
    ),
    Kind.MAP: (_DOMAIN, _f("iova", int, "I/O virtual address"), _f("paddr", int, "physical address"),
               _f("size", int, "bytes mapped")),
    Kind.UNMAP: (_DOMAIN, _f("iova", int, "I/O virtual address"), _f("size", int, "bytes asked to unmap"),
                 _f("unmapped", int, "bytes actually unmapped")),
    Kind.GROUP_ADD: (_f("group", int, "IOMMU group id"),),
    Kind.GROUP_REMOVE: (_f("group", int, "IOMMU group id"),),
    Kind.DOMAIN_ATTACH: (_DOMAIN, _DOMAIN_TYPE),
    Kind.UAPI: (
        _f("cmd", int, "ioctl command number", True),
        _f("name", str, "decoded command name (IOMMU_HWPT_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT, ...)", True),
        _f("fd", int, "file descriptor the call was made on"),
        _f("args", dict, "decoded argument struct fields"),
        _f("ret", _OPT_INT, "return value (negative errno), absent when not seen"),
        _f("vm", str, "the VM the calling VMM runs, when known"),
    ),
    Kind.LOST: (_f("count", int, "events the capture dropped on this CPU", True),
                _f("why", str, "how they were lost, when it is not the ring buffer running full")),
    Kind.MARKER: (
        _f("text", str, "what the marker says", True),
        _f("title", str, "a short heading"),
        _f("step", int, "teaching step number"),
    ),
    Kind.ANOMALY: (
        _f("rule", str, "the invariant that broke (simulator check name)", True),
        _f("explanation", str, "plain-language account of what went wrong", True),
        _f("evidence", list, "indices of the events that prove it"),
        _f("severity", str, "error, warning or uncertain"),
    ),
}

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, at `ts_ns` nanoseconds on the host's monotonic clock."""

    ts_ns: int
    kind: str
    device: str | None = None
    pasid: int | None = None
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    source: str = ""
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    machine: int = 0  # its machine's number in the recording's machine table (explorer/machines.py)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    @property
    def known_kind(self) -> bool:
        return self.kind in KINDS

    def to_row(self) -> Row:
        """The recording's compact row: a positional header plus the kind's field map (and its machine's number,
        when it is not the first machine's)."""
        row = [self.ts_ns, str(self.kind), self.device, self.pasid, self.cpu, self.pid, self.comm,
               self.source, dict(self.fields)]
        if self.machine:
            row.append(self.machine)
        return row

    @classmethod
    def from_row(cls, row: Row) -> Event:
        """Inverse of `to_row`; extra trailing row items from newer writers land in fields['_extra']."""
        ts, kind, device, pasid, cpu, pid, comm, source, fields = row[:9]
        fields = dict(fields) if isinstance(fields, dict) else {} if fields is None else {"_fields": fields}
        if len(row) > R_MACHINE + 1:
            fields["_extra"] = list(row[R_MACHINE + 1:])
        return cls(ts, kind, device, pasid, cpu, pid, comm, source or "", MappingProxyType(fields), machine_of(row))

    def brief(self) -> str:
        """One line for lists and logs: kind, where, and the fields that tell this event apart."""
        where = " ".join(x for x in (self.device, None if self.pasid is None else f"PASID {self.pasid}") if x)
        f = self.fields
        bits: list[str] = []
        if "prg" in f:
            bits.append(f"PRG {f['prg']}")
        if isinstance(f.get("addr"), int):  # (nil where the log did not give it)
            bits.append(f"addr {f['addr']:#x}")
        if isinstance(f.get("perm"), int):
            bits.append(perm_text(f["perm"]))
        if f.get("last"):
            bits.append("last")
        if "code" in f and self.kind == Kind.PAGE_RESPONSE:
            code = f["code"]
            bits.append(ResponseCode(code).name.lower() if code in (0, 1, 2) else f"code {code}")
        for key in ("path", "owner", "domain_type", "name", "reason", "text", "rule", "count"):
            if f.get(key) not in (None, ""):
                bits.append(str(f[key]))
        if f.get("error"):
            bits.append(f"error {f['error']}")
        if "ret" in f and f["ret"] is not None and f["ret"] < 0:
            bits.append(f"ret {f['ret']}")
        return " ".join(x for x in (str(self.kind), where, *bits) if x)

    def as_dict(self) -> dict[str, Any]:
        """Every field named, for JSON export and scripts."""
        out: dict[str, Any] = {
            "ts_ns": self.ts_ns, "kind": str(self.kind), "device": self.device, "pasid": self.pasid,
            "cpu": self.cpu, "pid": self.pid, "comm": self.comm, "source": self.source,
        }
        clash = {}
        for k, v in self.fields.items():  # a field must not override a common one: it goes to `extra`, as in CSV
            if k in out or k == "extra":
                clash[k] = v
            else:
                out[k] = v
        if clash:
            out["extra"] = clash
        if self.machine:  # a merged recording's: its number in the header's machine table
            out["machine"] = self.machine
        return out


Row = list[Any]
"""An event as recordings store it and every fast path reads it: `[ts_ns, kind, device, pasid, cpu, pid, comm,
source, fields]` (`Event.to_row`), plus `machine` in a merged recording's rows of any machine but the first. A
list rather than an object because millions are decoded per second; read its items only through the R_*
positions below."""

# Row positions, shared by the recording, the index, the simulator, the bars, the probes and the importers.
R_TS, R_KIND, R_DEVICE, R_PASID, R_CPU, R_PID, R_COMM, R_SOURCE, R_FIELDS = range(9)
R_MACHINE = 9  # optional: the machine's number in the header's machine table; absent means 0
COMMON_FIELDS = ("ts_ns", "kind", "device", "pasid", "cpu", "pid", "comm", "source")


def machine_of(row: Row) -> int:
    """The number of the machine a row happened on (0 when it names none)."""
    return row[R_MACHINE] if len(row) > R_MACHINE else 0


def make(kind: str, ts_ns: int, *, device: str | None = None, pasid: int | None = None,
         cpu: int | None = None, pid: int | None = None, comm: str | None = None, source: str = "",
         **fields: Any) -> Event:
    """Build an event, checking the kind's schema so producers fail early rather than write bad data."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name: f for f in spec}
    for f in spec:
        if f.required and f.name not in fields:
            raise ValueError(f"{kind}: missing field {f.name!r}")
    for name, value in fields.items():
        f = names.get(name)
        if f is None:
            raise ValueError(f"{kind}: unknown field {name!r} (known: {', '.join(names)})")
        if value is not None and not isinstance(value, f.type):
            raise ValueError(f"{kind}.{name}: expected {f.type}, got {type(value).__name__}")
    clean = {k: v for k, v in fields.items() if v is not None}
    event = Event(ts_ns, Kind(kind), device, pasid, cpu, pid, comm, source, MappingProxyType(clean))
    from .schema import row_problem  # (the schema is built from KINDS, above)

    problem = row_problem(event.to_row())
    if problem is not None:
        raise ValueError(f"{kind}: {problem}")
    return event


def owner_of(pid: int | None, comm: str | None) -> str:
    """The conventional owner text for a process."""
    if pid is None:
        return comm or "unknown"
    return f"pid {pid} ({comm})" if comm else f"pid {pid}"
