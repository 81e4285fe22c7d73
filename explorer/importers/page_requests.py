"""The kernel's page-request path, where it prints: requests it refused, answered itself, or lost.

    VT-d (drivers/iommu/intel/prq.c from 6.13 and late 6.12.y, svm.c before):
      DMAR: IOMMU: dmar0: Page request in Privilege Mode          (or "Execution request not supported", then:)
      DMAR: dmar0: Invalid page request: 000000056a080101 0000000000007003   handle_bad_prq_event(): the two
            descriptor words; on the group's last request the kernel answers Invalid Request itself
      DMAR: IOMMU: dmar0: PRQ overflow detected                   requests were dropped (the hardware answers
            those that close a group, VT-d spec 7.4.1)
    AMD (drivers/iommu/amd/ppr.c, 6.10+):
      AMD-Vi: Invalid PASID : 0x5, device : 0x0     PASID 0 or beyond max_pasids: answered Response Failure
    core (drivers/iommu/io-pgfault.c):
      idxd 0000:6a:01.0: iopf (pasid 5) without domain attached or handler installed     (6.9-6.10)
      idxd 0000:6a:01.0: iopf with pasid 5 aborted      (6.11+): no handler took the group; the core answered it

A refused request becomes the page request and the kernel's own response, so the model sees the group closed and,
for Response Failure, the function's PRI disabled. Lines that name no group become faults saying what happened.
"""

from __future__ import annotations

import re

from ..events import Kind, ResponseCode
from ..pci import rid_to_pci
from .core import LogLine, Parser

_BAD = re.compile(r"(?P<iommu>dmar\d+): Invalid page request: (?P<qw0>[0-9a-fA-F]{1,16}) (?P<qw1>[0-9a-fA-F]{1,16})")
_WHY = re.compile(r"(?P<iommu>dmar\d+): (?P<why>Page request in Privilege Mode|Execution request not supported)")
_OVERFLOW = re.compile(r"(?P<iommu>dmar\d+): PRQ overflow detected")
_AMD_PASID = re.compile(r"Invalid PASID : 0x(?P<pasid>[0-9a-fA-F]+), device : 0x(?P<devid>[0-9a-fA-F]+)")
_IOPF = re.compile(r"(?:(?P<drv>[\w.\-]+) )?(?P<dev>[\w.:\-]+): iopf (?:\(pasid (?P<old>-?\d+)\) without domain "
                   r"attached or handler installed|with pasid (?P<new>-?\d+) aborted)")
_WHY_MEANS = {"Page request in Privilege Mode": "a privileged-mode request, which the kernel does not serve",
              "Execution request not supported": "an execute request, which the kernel does not serve"}


class PageRequests(Parser):
    vendor = "generic"
    RULES = (("Invalid page request", _BAD, "_vtd_bad"), ("Privilege Mode", _WHY, "_vtd_why"),
             ("Execution request", _WHY, "_vtd_why"),
             ("PRQ overflow", _OVERFLOW, "_vtd_overflow"), ("Invalid PASID", _AMD_PASID, "_amd_pasid"),
             ("iopf", _IOPF, "_iopf"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._why: str | None = None  # the reason VT-d printed just before its 'Invalid page request'

    def _vtd_why(self, line: LogLine, m: re.Match[str]) -> bool:
        self._why = _WHY_MEANS[m["why"]]
        return True

    def _vtd_bad(self, line: LogLine, m: re.Match[str]) -> bool:
        """handle_bad_prq_event(): struct page_req_dsc's two words; QI_RESP_INVALID on the group's last request."""
        qw0, qw1 = int(m["qw0"], 16), int(m["qw1"], 16)
        device = rid_to_pci(qw0 >> 16 & 0xFFFF)
        pasid = qw0 >> 32 & 0xFFFFF if qw0 >> 8 & 1 else None
        perm = (qw1 & 1) | (qw1 & 2) | (qw0 >> 52 & 1) << 2 | (qw0 >> 53 & 1) << 3
        prg, last = qw1 >> 3 & 0x1FF, bool(qw1 >> 2 & 1)
        self.sink.row(Kind.PAGE_REQUEST, line.ts, device, pasid,
                      {"prg": prg, "addr": qw1 & ~0xFFF, "perm": perm, "last": last})
        if last:
            self.sink.row(Kind.PAGE_RESPONSE, line.ts, device, pasid,
                          {"prg": prg, "code": int(ResponseCode.INVALID), "by": "kernel"})
        self.sink.emit(self.sink.fault_row(
            line, device, pasid, addr=qw1 & ~0xFFF, vendor="intel", access="unknown",
            reason=f"page request refused by {m['iommu']}: {self._why or 'a request the kernel cannot serve'} "
                   f"(non-canonical address, no PASID, privileged or execute); "
                   f"{'answered Invalid Request' if last else 'answered with its group'}"))
        self._why = None
        self.sink.device(device)
        return True

    def _vtd_overflow(self, line: LogLine, m: re.Match[str]) -> bool:
        self.sink.overflow(line, m["iommu"], "intel", "PRQ", "page request queue",
                           "page requests were dropped (the hardware answers those that close a group itself)")
        return True

    def _amd_pasid(self, line: LogLine, m: re.Match[str]) -> bool:
        pasid = int(m["pasid"], 16)
        self.sink.emit(self.sink.fault_row(
            line, None, pasid if 0 < pasid < 1 << 20 else None, vendor="amd", access="unknown",
            reason=f"page request (PPR) with PASID {pasid:#x} refused: 0 or beyond the device's max_pasids; the "
                   f"kernel answered Response Failure, which disables the function's PRI (ppr.c, 6.10+)"))
        return True

    def _iopf(self, line: LogLine, m: re.Match[str]) -> bool:
        old = m["old"] is not None
        pasid = int(m["old"] if old else m["new"])
        device = m["dev"]
        why = ("no domain attached or no fault handler (io-pgfault.c 6.9-6.10): the IOMMU driver answers it"
               if old else "no handler took the group, or its handler refused it: the core answered the group "
                           "itself (io-pgfault.c 6.11+)")
        self.sink.emit(self.sink.fault_row(line, device, pasid if 0 < pasid < 1 << 20 else None,
                                           vendor="generic", access="unknown", driver=m["drv"],
                                           reason=f"page request on PASID {pasid} not handled: {why}"))
        self.sink.device(device, m["drv"])
        return True
