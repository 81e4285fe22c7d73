"""Arm SMMU fault lines: SMMUv3 event queue dumps and PRI reports, SMMUv2 context faults.

SMMUv3 (every kernel since 4.8) dumps each event as a header and the record's four 64-bit words:

    arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:
    arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000010000000010
    ... (three more words)

and recent kernels add a decoded pair ("event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0x0 iova: ..."
and "unpriv data write s1 ..."). The words are decoded here whichever the kernel printed: event id, StreamID,
SubstreamID (the PASID, when SSV is set), address and access. The device is the client the kernel names, else
the SMMU and StreamID ("arm-smmu-v3.0.auto/sid=0x100").

SMMUv2: "arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x..., fsynr=0x..., cbfrsynra=0x800,
cb=7", with newer kernels adding FSR/FSYNR0 decode lines. The device is the SMMU and the StreamID from cbfrsynra.
"""

from __future__ import annotations

import re

from ..events import Kind
from .core import LogLine, PendingParser, append_raw
from .smmu_tables import V3Event, fsr_text, fsynr0_text, v3_event

_V3_HEADER = re.compile(r"(?:arm-smmu-v3 )?(?P<smmu>[\w.\-]+): event 0x(?P<id>[0-9a-fA-F]{1,2}) received:")
_WORD = re.compile(r"(?:(?:arm-smmu-v3 )?[\w.\-]+:)?\s*0x(?P<w>[0-9a-fA-F]{16})\s*$")
_WORD_TAIL = re.compile(r"(?P<w>[0-9a-fA-F]{16})\s*$")  # after the raw line's last "0x", prefixes and all
_DECODED = re.compile(r"event: (?P<name>\S+) client: (?P<client>\(unassigned sid\)|\S+) sid: 0x(?P<sid>[0-9a-fA-F]+)")
_DECODED2 = re.compile(r"(?:un)?priv (?:inst|data) (?:read|write) s[12] ")
_PRI_HEADER = re.compile(r"(?P<smmu>[\w.\-]+): unexpected PRI request received:")
_PRI = re.compile(r"sid 0x(?P<sid>[0-9a-fA-F]+)\.0x(?P<ssid>[0-9a-fA-F]{1,16}): \[(?P<grp>\d+)(?P<last>L?)\] "
                  r"(?P<un>(?:un)?)privileged (?P<rwx>[RWX]*) access at iova 0x(?P<iova>[0-9a-fA-F]{1,16})")
_OVERFLOW = re.compile(r"(?P<smmu>[\w.\-]+): (?P<q>EVTQ|PRIQ) overflow detected -- (?:events|requests) lost")
_V2 = re.compile(r"(?P<smmu>[\w.\-]+): Unhandled context fault: fsr=0x(?P<fsr>[0-9a-fA-F]{1,16}), "
                 r"iova=0x(?P<iova>[0-9a-fA-F]{1,16}), fsynr=0x(?P<fsynr>[0-9a-fA-F]{1,16})"
                 r"(?:, cbfrsynra=0x(?P<cbfrsynra>[0-9a-fA-F]+))?, cb=(?P<cb>\d+)")
_V2_CONTEXT = re.compile(r"(?:^|: )(?:FSR\s+=|FSYNR0\s+=|soft iova-to-phys|hard iova-to-phys|"
                         r"Stack trace:|FAR\s+=|CBFRSYNRA)")
_PCI_NAME = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def stream_device(smmu: str, sid: int) -> str:
    """A device known only by its StreamID on one SMMU."""
    return f"{smmu}/sid={sid:#x}"


class ArmSmmu(PendingParser):
    vendor = "arm-smmu-v3"
    RULES = (("received:", _V3_HEADER, "_v3_header"), ("received:", _PRI_HEADER, "_pri_header"),
             ("context fault", _V2, "_v2"), ("overflow detected", _OVERFLOW, "_overflow"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._v3: tuple[LogLine, str, int] | None = None  # header line, SMMU name, event id
        self._words: list[int] = []
        self._client: str | None = None
        self._extra: list[str] = []  # the record's other lines, for its raw text
        self._pri_smmu: str | None = None

    def _v3_header(self, line: LogLine, m: re.Match[str]) -> bool:
        self._v3 = (line, m["smmu"], int(m["id"], 16))
        self.open = self.greedy = True
        return True

    def _pri_header(self, line: LogLine, m: re.Match[str]) -> bool:
        self._pri_smmu = m["smmu"]
        self.open = self.greedy = True
        return True

    def _overflow(self, line: LogLine, m: re.Match[str]) -> bool:
        queue = "event" if m["q"] == "EVTQ" else "page request"
        self.sink.emit(self.sink.fault_row(line, m["smmu"], None, vendor=self.vendor, access="unknown",
                                           reason=f"{m['q']} overflow: the SMMU's {queue} queue filled up and "
                                                  f"{queue}s were lost; what follows is incomplete"))
        return True

    def more(self, line: LogLine) -> bool:
        msg = line.msg
        if self._v3 is not None:
            if len(self._words) < 4 and (m := _WORD.match(msg)) is not None:
                self._word(line.text, m["w"])
                return True
            if (m := _DECODED.search(msg)) is not None:
                client = m["client"]
                self._client = None if client.startswith("(") else client
                self._extra.append(line.text.rstrip())
                return True
            if "priv " in msg and _DECODED2.search(msg):
                self._extra.append(line.text.rstrip())
                return True
            return False
        if self._pri_smmu is not None:
            m = _PRI.search(msg)
            if m is not None:
                self._pri(line, m)
            self._pri_smmu = None
            self.open = self.pending is not None
            self.greedy = False
            return m is not None
        if self.pending is not None and _V2_CONTEXT.search(msg):
            append_raw(self.pending, line)
            return True
        return False

    def more_raw(self, text: str) -> bool:
        """The next word of an event record, read straight off the raw line (the hot path of an SMMU storm): the
        line's last "0x" (a word's digits hold no other), at its start or after a colon or a blank."""
        if self._v3 is not None and len(self._words) < 4:
            i = text.rfind("0x")
            if i >= 0 and (i == 0 or text[i - 1] == ":" or text[i - 1].isspace()) and \
                    (m := _WORD_TAIL.match(text, i + 2)) is not None:
                self._word(text, m["w"])
                return True
        return False

    def _word(self, text: str, hexword: str) -> None:
        self._words.append(int(hexword, 16))
        self._extra.append(text.rstrip())
        self.greedy = len(self._words) < 4

    def close(self) -> None:
        if self._v3 is not None:
            self._emit_v3()
        self._pri_smmu = None
        self.greedy = False
        super().close()

    # -- SMMUv3 -------------------------------------------------------------------------------------------------
    def _emit_v3(self) -> None:
        assert self._v3 is not None
        header, smmu, id_ = self._v3
        words, client, extra = self._words, self._client, self._extra
        self._v3, self._words, self._client, self._extra = None, [], None, []
        name, meaning = v3_event(id_)
        if len(words) < 4:
            row = self.sink.fault_row(header, smmu, None, code=id_, vendor=self.vendor, access="unknown",
                                      reason=f"{name} ({id_:#04x}): {meaning} [record words not in the log]")
        else:
            ev = V3Event.decode(words)
            device = client if client else stream_device(smmu, ev.sid)
            pasid = ev.ssid if ev.ssv else None
            where = f"StreamID {ev.sid:#x}" + (f", SubstreamID (PASID) {ev.ssid:#x}" if ev.ssv else ", no PASID")
            reason = f"{name} ({id_:#04x}): {meaning}; {where}"
            access = "unknown"
            if ev.is_translation:
                access = "exec" if ev.instruction else ("read" if ev.read else "write")
                reason += f"; {ev.access_text()}"
                if ev.stall:
                    reason += f"; stalled (stag {ev.stag:#x}): the transaction waits for a resume, as a page request"
            row = self.sink.fault_row(header, device, pasid, addr=ev.iova if ev.is_translation else None,
                                      code=id_, vendor=self.vendor, access=access, reason=reason)
            self.sink.device(device)
        if extra:
            row[8]["raw"] = "\n".join([row[8]["raw"], *extra])
        self.sink.emit(row)

    def _pri(self, line: LogLine, m: re.Match[str]) -> None:
        assert self._pri_smmu is not None
        rwx = m["rwx"]
        perm = (1 if "R" in rwx else 0) | (2 if "W" in rwx else 0) | (4 if "X" in rwx else 0) | \
               (0 if m["un"] else 8)
        device = stream_device(self._pri_smmu, int(m["sid"], 16))
        ssid = int(m["ssid"], 16)
        self.sink.row(Kind.PAGE_REQUEST, line.ts, device, ssid or None,
                      {"prg": int(m["grp"]) & 0x1FF, "addr": int(m["iova"], 16), "perm": perm,
                       "last": bool(m["last"])})
        self.sink.device(device)

    # -- SMMUv2 -------------------------------------------------------------------------------------------------
    def _v2(self, line: LogLine, m: re.Match[str]) -> bool:
        fsr, fsynr = int(m["fsr"], 16), int(m["fsynr"], 16)
        cbfrsynra = None if m["cbfrsynra"] is None else int(m["cbfrsynra"], 16)
        smmu = m["smmu"]
        device = stream_device(smmu, cbfrsynra & 0xFFFF) if cbfrsynra is not None else f"{smmu}/cb={m['cb']}"
        names, meaning = fsr_text(fsr)
        reason = (f"context fault [{names}]: {meaning}; {fsynr0_text(fsynr)}; context bank {m['cb']}"
                  + (f", StreamID {cbfrsynra & 0xFFFF:#x}" if cbfrsynra is not None else ""))
        access = "exec" if fsynr & 0x40 else ("write" if fsynr & 0x10 else "read")
        row = self.sink.fault_row(line, device, None, addr=int(m["iova"], 16), code=fsr, flags=fsynr,
                                  vendor="arm-smmu", access=access, reason=reason)
        self.sink.device(device)
        self.hold(row)
        return True
