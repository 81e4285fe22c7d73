"""AMD-Vi event log lines, in the forms kernels have printed them.

    2.6.2x   AMD IOMMU: Event logged [IO_PAGE_FAULT device=00:12.0 domain=0x0007 address=0x00000000dff8c7c0 ...]
    2.6-4.x  AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 flags=0x0070]
             (the same, split by a broken printk continuation:)  AMD-Vi: Event logged [
                                                                 IO_PAGE_FAULT device=05:00.0 domain=0x0012 ...]
    5.x      iommu ivhd0: AMD-Vi: Event logged [IO_PAGE_FAULT device=0a:00.0 domain=0x0000 address=0x... flags=0x0050]
             nvme 0000:01:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0000 address=0xfc189000 flags=0x0000]
    6.x      AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:05:00.0 domain=0x0000 address=0x... flags=0x0000]
             iommu ivhd0: AMD-Vi: Event logged [INVALID_DEVICE_REQUEST device=0000:00:00.1 pasid=0x00000 ...]
             iommu ivhd0: PPR logged [Request ignored due to GN=0 (device=0000:03:00.0 pasid=0x00001 ...)]

When the device's driver is bound, the fault is printed by the driver's device ("nvme 0000:01:00.0: ...") with no
device= field; the driver name is kept. Events about the IOMMU itself (ILLEGAL_COMMAND_ERROR,
COMMAND_HARDWARE_ERROR) name no device: they go on the IOMMU's own ("ivhd0") where the line names it. For
IO_PAGE_FAULT with GN=1 the domain field holds the request's PASID (its low 16 bits: the kernel passes the PASID
through a 16-bit domain argument). "IOMMU event log overflow" (5.x-6.6), "IOMMU PPR log overflow" (6.7) and
"IOMMU Event/PPR/GA log restarting" (6.8 on, printed once an overflow stopped the log) mean entries were lost.
"""

from __future__ import annotations

import functools
import re

from ..events import R_DEVICE, Kind, ResponseCode
from ..pci import normalize_pci
from .amd_tables import EVENTS, FLAG_GN, page_fault_access, page_fault_reason, ppr_perm
from .core import RECORDABLE, LogLine, PendingParser, append_raw

_EVENT = re.compile(r"(?:Event|PPR) logged \[(?P<body>.*)$")
# The device that printed the line ("nvme 0000:01:00.0: "), or the IOMMU ("iommu ivhd0: "); never both.
_PREFIX = re.compile(r"(?:(?P<drv>[\w.\-]+) (?P<dev>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])|"
                     r"iommu (?P<iommu>[\w.\-]+)): ")
_LOG_LOST = re.compile(r"IOMMU (?P<log>[Ee]vent|Evt|PPR|GA) log (?:overflow|restarting)")
# What each log's overflow loses.
_LOST = {"event": "events (faults among them) were lost", "ppr": "page requests were lost: devices waiting on "
         "them may hang until they time out", "ga": "guest interrupt notifications were lost"}
_NAME = re.compile(r"(?P<name>[A-Z][A-Z_]+)\b(?P<rest>.*)$")
_CONTEXT = re.compile(r"(?:Control Reg :|DTE\[\d\]:|CMD\[\d\]:|\s*device=)")


def _fields(body: str) -> dict[str, str]:
    """'device=03:00.0 domain=0x000e address=0x... flags=0x0010]' as a dict (faster than a regex here)."""
    kv = {}
    for tok in body.replace(",", " ").split():
        if "=" in tok:
            k, _, v = tok.partition("=")
            kv[k.lstrip("([")] = v.rstrip(")]")
    return kv


def _int(v: str | None) -> int | None:
    """A printed number, or None when there is none or it is wider than 64 bits (no kernel prints one)."""
    if v is None:
        return None
    try:
        n = int(v, 16) if v[:2] == "0x" else int(v)
    except ValueError:
        return None
    return n if n in RECORDABLE else None


class AmdVi(PendingParser):
    vendor = "amd"
    RULES = (("logged [", _EVENT, "_logged"), (" log ", _LOG_LOST, "_log_lost"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._split: LogLine | None = None  # "Event logged [" whose event is on the next line
        self._prefix_dev: tuple[str | None, str | None] = (None, None)
        self._iommu: str | None = None  # the IOMMU that printed the line ("iommu ivhd0: "), when named

    def _logged(self, line: LogLine, m: re.Match[str]) -> bool:
        msg = line.msg
        p = _PREFIX.match(msg)
        dev, drv, self._iommu = p.group("dev", "drv", "iommu") if p else (None, None, None)
        self._prefix_dev = (dev, None if drv == "pci" else drv) if dev else (None, None)
        body = m["body"].strip()
        if not body:
            self._split = line
            self.open = self.greedy = True
            return True
        return self._event(line, body, ppr=msg[m.start():m.start() + 3] == "PPR")

    def more(self, line: LogLine) -> bool:
        if self._split is not None:
            first = self._split
            self._split = None
            self.open = self.greedy = False
            body = line.msg.strip()
            n = _NAME.match(body)
            if n is None or n["name"] not in EVENTS:
                return False
            joined = LogLine(f"{first.text.rstrip()}\n{line.text.rstrip()}", body, first.ts)
            return self._event(joined, body, ppr=False)
        if self.pending is not None and _CONTEXT.match(line.msg.partition("AMD-Vi: ")[2] or line.msg):
            append_raw(self.pending, line)
            self._context(line)
            return True
        return False

    def close(self) -> None:
        self._split = None
        self.greedy = False
        super().close()

    def _event(self, line: LogLine, body: str, ppr: bool) -> bool:
        kv = _fields(body)
        if ppr:
            return self._ppr(line, body, kv)
        if body.startswith("Device not attached"):  # (no event name: the driver's own words)
            row = self.sink.fault_row(line, self._prefix_dev[0], None, vendor=self.vendor, access="unknown",
                                      reason="Device not attached to domain properly: the IOMMU faulted a device "
                                             "whose driver state says it has no domain (see the next line's "
                                             "device and domain)")
            self.hold(row)
            return True
        n = _NAME.match(body)
        if n is None or (name := n["name"]) not in EVENTS:
            return False
        get = kv.get
        code, flags, pasid, access, reason = _decoded(name, get("flags"), get("pasid"), get("domain"),
                                                      get("event[1]"))
        device = normalize_pci(kv["device"]) if "device" in kv else self._prefix_dev[0] or self._iommu
        driver = self._prefix_dev[1]
        addr = _int(kv.get("address")) if "address" in kv else _int(kv.get("spa") or kv.get("gpa"))
        row = self.sink.fault_row(line, device, pasid, addr=addr, code=code, flags=flags, vendor=self.vendor,
                                  access=access, driver=driver, reason=reason)
        self.sink.device(device, driver)
        self.hold(row)
        return True

    def _ppr(self, line: LogLine, body: str, kv: dict[str, str]) -> bool:
        """ppr_is_valid() (ppr.c, 6.10+) refused a PPR-log entry: the request becomes a page request the kernel
        answered Response Failure itself ("Nobody cared, abort": amd_iommu_complete_ppr(..., FAILURE, tag)), which
        per PCIe disables the function's PRI; the line itself is kept as a fault saying so."""
        device = normalize_pci(kv["device"]) if "device" in kv else None
        flags = _int(kv.get("flags")) or 0
        tag = _int(kv.get("tag")) or 0
        why = body.split("(", 1)[0].strip()
        perm = ppr_perm(flags)
        meaning = ("GN=0 means the request carried no PASID, so no address space can serve it" if "GN=0" in why
                   else "the request is malformed (reserved bits set)")
        pasid = None if "GN=0" in why else _int(kv.get("pasid"))  # GN=0: the printed PASID field is not one
        addr = _int(kv.get("address"))
        self.sink.row(Kind.PAGE_REQUEST, line.ts, device, pasid,
                      {"prg": tag & 0x1FF, "addr": addr or 0, "perm": perm, "last": bool(tag & 0x200)})
        self.sink.row(Kind.PAGE_RESPONSE, line.ts, device, pasid,
                      {"prg": tag & 0x1FF, "code": int(ResponseCode.FAILURE), "by": "kernel"})
        reason = (f"page request (PPR) rejected: {why}: {meaning}; the kernel answered Response Failure, which "
                  f"disables the function's PRI [tag {tag:#x}, perm {perm:#x}]")
        row = self.sink.fault_row(line, device, pasid, addr=addr, code=0x9, flags=flags, vendor=self.vendor,
                                  access="unknown", reason=reason)
        self.sink.device(device)
        self.hold(row)
        return True

    def _log_lost(self, line: LogLine, m: re.Match[str]) -> bool:
        """A log overflow, shown like an SMMU queue overflow: a fault on the IOMMU saying what is missing."""
        log = m["log"].lower().replace("evt", "event")
        self.sink.overflow(line, _iommu_name(line.msg), self.vendor, f"{log} log", f"IOMMU's {log} log", _LOST[log])
        return True

    def _context(self, line: LogLine) -> None:
        """The 'device=... domain=...' line after 'Device not attached to domain properly' names the device."""
        assert self.pending is not None
        if self.pending[R_DEVICE] is None:
            kv = _fields(line.msg)
            if "device" in kv:
                self.pending[R_DEVICE] = normalize_pci(kv["device"])
                self.sink.device(self.pending[R_DEVICE])


def _iommu_name(msg: str) -> str | None:
    """'ivhd0' from a line the IOMMU's own device printed ("iommu ivhd0: AMD-Vi: ...")."""
    m = _PREFIX.match(msg)
    return None if m is None else m["iommu"]


@functools.lru_cache(maxsize=4096)
def _decoded(name: str, flags_text: str | None, pasid_text: str | None, domain_text: str | None,
             event1_text: str | None) -> tuple[int, int | None, int | None, str, str]:
    """An event's code, flags, PASID, access and reason, from its name and printed fields (cached: a storm repeats a
    few of them, with only the address changing)."""
    code, meaning = EVENTS[name]
    flags, pasid, domain = _int(flags_text), _int(pasid_text), _int(domain_text)
    access = "unknown"
    if name == "IO_PAGE_FAULT":
        flags = flags or 0
        if flags & FLAG_GN:
            pasid, domain = domain, None
        access = page_fault_access(flags)
        reason = page_fault_reason(flags, pasid if flags & FLAG_GN else domain)
    elif name == "UNKNOWN":
        code = (_int(event1_text) or 0) >> 28 & 0xF
        reason = f"UNKNOWN event type {code:#x}: {meaning}"
    else:
        extra = f" (flags {flags:#06x})" if flags is not None else ""
        reason = f"{name}: {meaning}{extra}"
    if pasid == 0 and name != "IO_PAGE_FAULT":
        pasid = None  # the kernel prints pasid=0x00000 for requests that carried none
    return code, flags, pasid, access, reason
