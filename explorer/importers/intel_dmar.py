"""Intel VT-d (DMAR) fault lines, in every form kernels have printed them.

    3.x  DMAR:[DMA Read] Request device [00:02.0] fault addr 1a45aa9000       (reason on the next line:)
         DMAR:[fault reason 12] non-zero reserved fields in PTE
         INTR-REMAP: Request device [[f0:1f.0] fault index 2 / INTR-REMAP:[fault reason 34] ...
    4.x  DMAR: [DMA Read] Request device [00:02.0] fault addr 7f5b8000 [fault reason 06] PTE Read access ...
    5.x  DMAR: [DMA Read] Request device [00:02.0] PASID ffffffff fault addr ... [fault reason 06] ...
    5.14 DMAR: [DMA Read NO_PASID] Request device [0x00:0x02.0] fault addr 0x... [fault reason 0x06] ...
    5.15+ DMAR: [DMA Write PASID 0x2] Request device [6a:01.0] fault addr 0x... [fault reason 0x3a] SM: ...
         DMAR: [INTR-REMAP] Request device [f0:1f.0] fault index 0x0 [fault reason 0x25] Blocked ...

Reasons printed as plain digits are decimal (the old %02d); with 0x, a trailing h or a hex letter, hexadecimal.
PASID ffffffff (and NO_PASID) mean the request carried no PASID. "DRHD: handling fault status reg N" precedes a
batch of faults; its overflow bit means the hardware dropped faults, which the next fault's reason says.
CONFIG_DMAR_DEBUG's page-table dump after a fault stays with that fault's raw text.
"""

from __future__ import annotations

import functools
import re

from ..events import R_FIELDS, R_TS, Row
from ..pci import normalize_pci
from .core import LogLine, PendingParser, append_raw, may_hold
from .vtd_tables import fault_reason, status_notes

_FAULT = re.compile(
    r"(?:\[(?P<type>DMA Read|DMA Write|INTR-REMAP)"
    r"(?: (?:NO_PASID|w/o PASID|(?:w/ )?PASID (?:0x)?(?P<pasid>[0-9a-fA-F]{1,16})))?\]"
    r"|(?P<ir>INTR-REMAP):) ?Request device \[\[?(?P<bdf>(?:0x)?[0-9a-fA-F]{1,2}:(?:0x)?[0-9a-fA-F]{1,2}\.[0-7])\]"
    r"(?: PASID (?P<pasid_old>[0-9a-fA-F]{1,16}))?"
    r" fault (?:addr (?:0x)?(?P<addr>[0-9a-fA-F]{1,16})|index (?:0x)?(?P<index>[0-9a-fA-F]{1,16}))"
    r"\s*(?:\[fault reason (?P<code>(?:0x)?[0-9a-fA-F]{1,16}h?)\]\s*(?P<text>.*))?$")
_REASON_LINE = re.compile(r"(?:DMAR|INTR-REMAP): ?\[fault reason (?P<code>(?:0x)?[0-9a-fA-F]{1,16}h?)\]"
                          r"\s*(?P<text>.*)$")
_STATUS = re.compile(r"DRHD: handling fault status reg (?P<status>[0-9a-fA-F]+)")
_DUMP = re.compile(r"(?:DMAR: )?(?:Dump \S+ table entries for IOVA|(?:scalable mode )?root entry|context entry|"
                   r"pasid dir entry|pasid table entry|pte level:|PTE not present at level|root table entry|"
                   r"Invalid (?:root|context|pasid) ?(?:dir|table)? ?entry|pasid dir entry|"
                   r"(?:legacy|scalable) mode)", re.IGNORECASE)
_DUMP_WORDS = ("entr", "pte ", " mode")  # see core.may_hold
NO_PASID = 0xFFFFFFFF
STATUS_SPAN_NS = 1_000_000_000  # a status line speaks for the batch of faults printed right after it


def reason_code(text: str) -> int:
    """'06', '12', '37' (the old %02d) are decimal; '0x06', '06h' (Xen's %02xh) and digits only hex has ('1f') are
    hexadecimal."""
    return int(text) if text.isdigit() else int(text.removesuffix("h"), 16)


class IntelDmar(PendingParser):
    vendor = "intel"
    RULES = (("Request device", _FAULT, "_fault"), ("fault status reg", _STATUS, "_status"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._status_note: str | None = None
        self._awaiting_reason = False
        self._index: int | None = None
        self._status_ts = 0

    def _status(self, line: LogLine, m: re.Match[str]) -> bool:
        self._status_note = _status_note(int(m["status"], 16))
        self._status_ts = line.ts
        return True

    def more(self, line: LogLine) -> bool:
        assert self.pending is not None
        msg = line.msg
        if "Request device" in msg:
            return False  # the next fault, not a detail of this one
        if self._awaiting_reason:
            m = _REASON_LINE.search(msg)
            if m is not None:
                self._awaiting_reason = False
                append_raw(self.pending, line)
                self._set_reason(self.pending, reason_code(m["code"]), m["text"])
                return True
        if may_hold(msg, _DUMP_WORDS) and (_DUMP.match(msg) or _DUMP.match(msg.partition(": ")[2])):
            append_raw(self.pending, line)
            return True
        return False

    def close(self) -> None:
        self._awaiting_reason = False
        super().close()

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        kind, pasid_text, ir, bdf, pasid_old, addr, index, code, text = m.group(
            "type", "pasid", "ir", "bdf", "pasid_old", "addr", "index", "code", "text")
        device = normalize_pci(bdf)
        pasid_text = pasid_text or pasid_old
        pasid = int(pasid_text, 16) if pasid_text else None
        if pasid == NO_PASID:
            pasid = None
        irq = kind == "INTR-REMAP" or ir is not None
        access = "unknown" if irq else ("read" if kind == "DMA Read" else "write")
        row = self.sink.fault_row(line, device, pasid, addr=None if addr is None else int(addr, 16),
                                  vendor=self.vendor, access=access)
        self._index = int(index, 16) if irq and index else None
        self.sink.device(device)
        self.hold(row)
        if code is not None:
            self._set_reason(row, reason_code(code), text)
        else:
            self._awaiting_reason = True  # 3.x printed the reason on a line of its own
            row[R_FIELDS]["reason"] = "reason on the next line (not seen)"
        return True

    def _set_reason(self, row: Row, code: int, printed: str) -> None:
        fields = row[R_FIELDS]
        reason, irq = _reason(code, printed.strip(), fields["access"], self._index)
        if irq:
            fields["access"] = "unknown"
        if self._status_note and row[R_TS] - self._status_ts <= STATUS_SPAN_NS:
            reason += f"; status register: {self._status_note}"
        fields["code"] = code
        fields["reason"] = reason


@functools.lru_cache(maxsize=256)
def _status_note(status: int) -> str | None:
    """What a fault status register value adds, in words (cached: a storm prints the same few values)."""
    return "; ".join(status_notes(status)) or None


@functools.lru_cache(maxsize=4096)
def _reason(code: int, printed: str, access: str, index: int | None) -> tuple[str, bool]:
    """A fault reason in words (cached: a storm repeats a handful of them)."""
    text, lesson, irq = fault_reason(code)
    reason = f"{text} (reason {code:#04x}): {lesson}"
    if irq:
        where = "" if index is None else f" {index:#x}"
        return f"interrupt remapping fault on interrupt index{where}: {reason}", True
    if printed and printed != text and not text.startswith("Unknown"):
        reason += f" [kernel printed: {printed}]"
    return f"DMA {access}: {reason}", False
