"""ftrace text: /sys/kernel/tracing/trace and trace_pipe, `trace-cmd report`, and `perf script`, for the iommu
and intel_iommu tracepoints and for PASID Explorer's own events printed into a trace.

    irq/24-AMD-Vi-48    [002] ....   978.554289: io_page_fault: IOMMU:nvme 0000:05:00.0 iova=0x... flags=0x0000
    qemu-kvm-4575       [008] .......   438.308514: map: IOMMU: iova=0x0 - 0xc0000 paddr=0x1a6800000 size=786432
    bash-6058  [000] 11260.097664: print:  tracing_mark_write: pasid_explorer: {"kind": "marker", ...}
    qemu 4575 [008] 438.308514: iommu:map: IOMMU: iova=...                               (perf script)

Decoded: io_page_fault (fault), map, unmap, add/remove_device_to/from_group, attach_device_to_domain, the
vendor-tree dev_fault (fault or page request) and dev_page_response (openEuler and HiSilicon kernels carry them;
mainline never merged them), intel_iommu:prq_report (page requests) and the
page-group-response descriptors among intel_iommu:qi_submit (page responses). A line whose message is
`pasid_explorer: {json}` (a marker written to trace_marker, or a probe's bpf_trace_printk) becomes that event.
trace_pipe prints the same lines as trace, without its header. Kernel log lines pasted among the trace lines go
to the kernel-log importer (see core.TextImporter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from ..events import KINDS, Kind, make
from ..pci import rid_to_pci
from ..sightings import Sightings, tier
from .core import ImportStats, Sink, TextImporter, recordable
from .kernel_log import IOMMU_ANCHORS as LOG_ANCHORS
from .scan import keyword_pattern
from .vtd_tables import QI_PGRP_RESP_TYPE, decode_page_group_response

ANCHORS = (b"IOMMU:", b"prq_report", b"qi_submit", b"pasid_explorer")
KEYWORDS = keyword_pattern(ANCHORS)
_WORDS = tuple(a.decode() for a in ANCHORS)
TRACE_LINE = re.compile(  # after a mail's quote markers, if any, and a trace-cmd instance's name
    r"^(?:\s*[|>](?=\s))*(?:[\w.\-]+: )?\s*(?P<comm>.+?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:\S{4,8}\s+)?(?P<sec>\d+)\.(?P<frac>\d+):\s+(?P<event>[\w:]+):\s*(?P<msg>.*)$")
PERF_LINE = re.compile(
    r"^\s*(?P<comm>\S.*?)\s+(?P<pid>\d+)(?:/\d+)?\s+\[(?P<cpu>\d+)\]\s+(?P<sec>\d+)\.(?P<frac>\d+):\s+"
    r"(?:\d+\s+)?(?P<event>[\w:]+):\s*(?P<msg>.*)$")
# A tracepoint line quoted without its task, CPU and time (commit messages, mails): "| prq_report: dmar0/..."
TRACEPOINTS = ("io_page_fault", "map", "unmap", "add_device_to_group", "remove_device_from_group",
               "attach_device_to_domain", "dev_fault", "dev_page_response", "prq_report", "qi_submit")
BARE_LINE = re.compile(rf"^\s*(?:[|>]\s*)*(?P<event>{'|'.join(TRACEPOINTS)}): (?P<msg>.*)$")
BARE_STEP_NS = 1_000  # bare lines have no time: each is a microsecond after the one before
_HEX = r"0x([0-9a-fA-F]+)"
_FAULT = re.compile(rf"IOMMU:(?P<driver>\S*) (?P<dev>\S+) iova={_HEX} flags={_HEX}")
_MAP = re.compile(rf"IOMMU: (?:dev=(?P<dev>\S+) )?iova={_HEX}(?: - 0x[0-9a-fA-F]+)? paddr={_HEX} size=(\d+)")
_UNMAP = re.compile(rf"IOMMU: (?:dev=(?P<dev>\S+) )?iova={_HEX}(?: - 0x[0-9a-fA-F]+)? size=(\d+) unmapped_size=(\d+)")
_GROUP = re.compile(r"IOMMU: groupID=(-?\d+) device=(\S+)")
_ATTACH = re.compile(r"IOMMU: device=(\S+)")
_KV = re.compile(r"(\w+)=(0x[0-9a-fA-F]+|-?\d+|\S+)")
_PRQ = re.compile(r"(?P<iommu>\w+)/(?P<dev>\S+) seq# \d+: rid=0x(?P<rid>[0-9a-fA-F]+) addr=0x(?P<addr>[0-9a-fA-F]+) "
                  r"(?P<perm>[r-][w-][x-][p-][l-]) pasid=0x(?P<pasid>[0-9a-fA-F]+) index=0x(?P<index>[0-9a-fA-F]+)")
_QI = re.compile(rf"(?P<type>\w+) (?P<iommu>\w+): {_HEX} {_HEX} {_HEX} {_HEX}")
_OWN = re.compile(r"pasid_explorer: (?P<json>\{.*\})\s*$")
Where = tuple[int | None, int | None, str | None]  # cpu, pid, comm of the traced task
IOMMU_FAULT_WRITE = 0x1
IOMMU_FAULT_DMA_UNRECOV, IOMMU_FAULT_PAGE_REQ = 1, 2
PAGE_REQUEST_LAST = 1 << 1


def _int(v: str) -> int:
    return int(v, 16) if v.startswith(("0x", "-0x")) else int(v)


class FtraceImporter(TextImporter):
    """Feeds blocks of trace text through the tracepoint decoders."""

    format = "ftrace"
    ANCHORS = ANCHORS
    GUEST_ANCHORS = LOG_ANCHORS  # without "fault": a paste's prose around a trace mentions faults

    def __init__(self, sink: Sink, stats: ImportStats) -> None:
        super().__init__(sink, stats)
        self.last_ts = 0
        self._sightings = Sightings()
        self._decoders: dict[str, Callable[[str, int, Where], bool | None]] = {
            "io_page_fault": self._io_page_fault, "map": self._map, "unmap": self._unmap,
            "add_device_to_group": lambda msg, ts, where: self._group(msg, ts, where, Kind.GROUP_ADD),
            "remove_device_from_group": lambda msg, ts, where: self._group(msg, ts, where, Kind.GROUP_REMOVE),
            "attach_device_to_domain": self._attach, "dev_fault": self._dev_fault,
            "dev_page_response": self._dev_page_response, "prq_report": self._prq_report,
            "qi_submit": self._qi_submit,
        }
        assert set(self._decoders) == set(TRACEPOINTS)

    def owns(self, text: str) -> bool:
        """A trace line of one of the events read here."""
        for w in _WORDS:  # noqa: SIM110 - quicker than any(): every unread kernel log line is asked
            if w in text:
                return trace_match(text) is not None
        return False

    def line(self, block: bytes, start: int, end: int, candidate: bool) -> bool:
        text = block[start:end].decode("utf-8", "replace").rstrip("\r\n")
        m = trace_match(text)
        if m is None:
            if (follow := self.hand_over(block, start, end, candidate, text)) is not None:
                return follow
            self.stats.not_understood(partial(self.scanner.line_no, start), text)
            return False
        where: Where
        if m.re is BARE_LINE:
            ts, where = self.last_ts + BARE_STEP_NS, (None, None, None)
        else:
            sec = m["sec"]
            if len(sec) > 12:  # more seconds than a kernel runs (and than int() reads past 4300 digits)
                self.stats.not_understood(partial(self.scanner.line_no, start), text)
                return False
            ts = int(sec) * 1_000_000_000 + int(m["frac"].ljust(9, "0")[:9])
            where = (int(m["cpu"]), int(m["pid"]), m["comm"].strip())
        self._event(m, ts, where, start, text)
        return False

    def _event(self, m: re.Match[str], ts: int, where: Where, start: int, text: str) -> None:
        """Decode one trace line's event (`m` is its match) into a row, or count it as not understood."""
        self.last_ts = ts
        event = m["event"].rsplit(":", 1)[-1]
        msg = m["msg"]
        try:
            if "pasid_explorer: " in msg:
                ok = self._own(msg, ts, where)
            else:
                decoder = self._decoders.get(event)
                ok = decoder(msg, ts, where) if decoder is not None else None
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # RecursionError: nested JSON
            ok = False
        if ok is None:
            return  # an event we read but do not model (iotlb invalidations, cache tags, ...): ignored
        if ok:
            self.stats.parsed += 1
        else:
            self.stats.not_understood(partial(self.scanner.line_no, start), text)

    def _emit(self, kind: str, ts: int, where: Where, device: str | None, pasid: int | None,
              fields: dict[str, Any], vendor: str | None = None, hook: str | None = None) -> bool:
        """Write the event a line shows; from a tracepoint (`hook`) that sees a page request or response another
        may have shown first, a deeper sighting of it is evidence on that event (`seen_by`), as a live capture
        folds them (explorer/sightings.py: a vendor tree's dev_page_response, then VT-d's qi_submit)."""
        if hook is not None and not self._sightings.fold(kind, tier(hook), ts, where[1],
                                                         [ts, kind, device, pasid, *where, hook, fields], hook):
            return True
        self.sink.row(kind, ts, device, pasid, fields, *where)
        self.sink.device(device, fields.get("driver"))
        if vendor is not None:
            self.stats.by_vendor[vendor] = self.stats.by_vendor.get(vendor, 0) + 1
        return True

    # -- iommu: -------------------------------------------------------------------------------------------------
    def _io_page_fault(self, msg: str, ts: int, where: Where) -> bool:
        m = _FAULT.search(msg)
        if m is None:
            return False
        flags = int(m[4], 16)
        access = "write" if flags & IOMMU_FAULT_WRITE else "read"
        driver = m["driver"].strip("[]") or None
        fields = {"addr": int(m[3], 16), "flags": flags, "vendor": "generic", "access": access, "raw": msg,
                  "reason": f"I/O page fault reported through report_iommu_fault(): a DMA {access} of an address "
                            f"the device's domain does not map (or not for {access}s)"}
        if driver:
            fields["driver"] = driver
        return self._emit(Kind.FAULT, ts, where, m["dev"], None, fields)

    def _map(self, msg: str, ts: int, where: Where) -> bool:
        m = _MAP.search(msg)
        if m is None:
            return False
        return self._emit(Kind.MAP, ts, where, m["dev"], None,
                          {"iova": int(m[2], 16), "paddr": int(m[3], 16), "size": int(m[4])})

    def _unmap(self, msg: str, ts: int, where: Where) -> bool:
        m = _UNMAP.search(msg)
        if m is None:
            return False
        return self._emit(Kind.UNMAP, ts, where, m["dev"], None,
                          {"iova": int(m[2], 16), "size": int(m[3]), "unmapped": int(m[4])})

    def _group(self, msg: str, ts: int, where: Where, kind: str) -> bool:
        m = _GROUP.search(msg)
        if m is None:
            return False
        return self._emit(kind, ts, where, m[2], None, {"group": int(m[1])})

    def _attach(self, msg: str, ts: int, where: Where) -> bool:
        m = _ATTACH.search(msg)
        if m is None:
            return False
        return self._emit(Kind.DOMAIN_ATTACH, ts, where, m[1], None, {})

    def _dev_fault(self, msg: str, ts: int, where: Where) -> bool:
        dev, _, rest = msg.partition("IOMMU:")[2].partition(" ")
        kv = {k: _int(v) for k, v in _KV.findall(rest) if k != "flags"} | \
            {k: int(v, 16) for k, v in _KV.findall(rest) if k == "flags"}
        pasid = kv.get("pasid")
        if kv.get("type") == IOMMU_FAULT_PAGE_REQ:
            last = bool(kv.get("last", kv.get("flags", 0) & PAGE_REQUEST_LAST))
            return self._emit(Kind.PAGE_REQUEST, ts, where, dev, pasid,
                              {"prg": kv["group"] & 0x1FF, "addr": kv["addr"], "perm": kv.get("prot", 0),
                               "last": last}, hook="iommu:dev_fault")
        return self._emit(Kind.FAULT, ts, where, dev, pasid, {
            "addr": kv.get("addr"), "code": kv.get("reason"), "vendor": "generic", "access": "unknown", "raw": msg,
            "reason": f"unrecoverable fault reported to the IOMMU core (reason {kv.get('reason')})"})

    def _dev_page_response(self, msg: str, ts: int, where: Where) -> bool:
        dev, _, rest = msg.partition("IOMMU:")[2].partition(" ")
        kv = {k: _int(v) for k, v in _KV.findall(rest)}
        return self._emit(Kind.PAGE_RESPONSE, ts, where, dev, kv.get("pasid"),
                          {"prg": kv["group"] & 0x1FF, "code": kv["code"], "by": "kernel"},
                          hook="iommu:dev_page_response")

    # -- intel_iommu: -------------------------------------------------------------------------------------------
    def _prq_report(self, msg: str, ts: int, where: Where) -> bool:
        m = _PRQ.search(msg)
        if m is None:
            return False
        flags = m["perm"]
        perm = (1 if flags[0] == "r" else 0) | (2 if flags[1] == "w" else 0) | (4 if flags[2] == "x" else 0) | \
            (8 if flags[3] == "p" else 0)
        pasid = int(m["pasid"], 16)
        return self._emit(Kind.PAGE_REQUEST, ts, where, m["dev"], pasid or None,
                          {"prg": int(m["index"], 16) & 0x1FF, "addr": int(m["addr"], 16) << 12, "perm": perm,
                           "last": flags[4] == "l"}, vendor="intel", hook="intel_iommu:prq_report")

    def _qi_submit(self, msg: str, ts: int, where: Where) -> bool | None:
        m = _QI.search(msg)
        if m is None:
            return False
        qw0, qw1 = int(m[3], 16), int(m[4], 16)
        if qw0 & 0xF != QI_PGRP_RESP_TYPE:
            return None  # cache invalidations: real, but not part of the PASID model
        d = decode_page_group_response(qw0, qw1)
        pasid = int(d["pasid"]) if d["pasid_present"] else None
        return self._emit(Kind.PAGE_RESPONSE, ts, where, rid_to_pci(int(d["rid"])), pasid,
                          {"prg": int(d["prg"]), "code": int(d["code"]), "by": "kernel"}, vendor="intel",
                          hook="intel_iommu:qi_submit")

    # -- PASID Explorer's own events ----------------------------------------------------------------------------
    def _own(self, msg: str, ts: int, where: Where) -> bool:
        m = _OWN.search(msg)
        if m is None:
            return False
        d = json.loads(m["json"])
        if not isinstance(d, dict) or d.get("kind") not in KINDS:
            return False
        kind = d.pop("kind")
        for k in ("ts_ns", "source"):
            d.pop(k, None)
        common = {k: d.pop(k) for k in ("device", "pasid", "cpu", "pid", "comm") if k in d}
        task = {"cpu": where[0], "pid": where[1], "comm": where[2], **common}
        ev = make(kind, ts, source=self.sink.source, **task, **d)
        self.sink.emit(recordable(ev.to_row()))
        return True


def trace_match(text: str) -> re.Match[str] | None:
    """A trace line in any of the printed forms (trace-cmd report, tracefs, perf script)."""
    return TRACE_LINE.match(text) or PERF_LINE.match(text) or BARE_LINE.match(text)
