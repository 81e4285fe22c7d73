"""Arm SMMU fault lines: SMMUv3 event queue dumps and PRI reports, SMMUv2 context faults.

SMMUv3 (every kernel since 4.8) dumps each event as a header and the record's four 64-bit words:

    arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:
    arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000010000000010
    ... (three more words)

and recent kernels add a decoded pair ("event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0x0 iova: ..."
and "unpriv data write s1 ..."). The words are decoded here whichever the kernel printed: event id, StreamID,
SubstreamID (the PASID, when SSV is set), address and access. The device is the client the kernel names, else
the SMMU and StreamID ("arm-smmu-v3.0.auto/sid=0x100").

SMMUv2 context faults, whichever fields the kernel printed, in whatever order (drivers/iommu/arm/arm-smmu/):

    3.x-4.x   arm-smmu 2b400000.smmu: Unhandled context fault: iova=0x..., fsynr=0x..., cb=3
    4.x-6.x   arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x..., fsynr=0x..., cbfrsynra=0x800,
              cb=7
    qcom      Unhandled context fault: iova=0x..., fsr=0x..., fsynr=0x..., cb=%d    (downstream msm kernels)
              Unhandled context fault: iova=0x..., cb=%d, fsr=0x..., fsynr0=0x..., fsynr1=0x...
              qcom_iommu: Unhandled context fault: fsr=0x..., iova=0x..., fsynr=0x..., cb=%d

with newer kernels adding FSR/FSYNR0 decode lines. The device is the SMMU and the StreamID (from cbfrsynra, or a
Tegra kernel's sid=), else the context bank. Global faults ("Unexpected global fault, this could be serious", or
with bypass disabled "Blocked unknown Stream ID 0x2c01; ...") are followed by a GFSR/GFSYNR line, which is decoded:
an unidentified stream's ID (GFSYNR1) names the device.
"""

from __future__ import annotations

import functools
import re

from ..events import R_DEVICE, R_FIELDS, Kind, ResponseCode, Row
from .core import LogLine, PendingParser, append_raw
from .smmu_tables import FSYNR0_IND, FSYNR0_WNR, GFSR_USF, V3Event, fsr_text, fsynr0_text, gfsr_text, v3_event

_WORD = re.compile(r"(?:(?:arm-smmu-v3 )?[\w.\-]+:)?\s*0x(?P<w>[0-9a-fA-F]{16})\s*$")
_WORD_START = re.compile(r"(?:(?:arm-smmu-v3 )?[\w.\-]+:)?\s*0x[0-9a-fA-F]")  # a word, even one garbled after
_WORD_TAIL = re.compile(r"(?P<w>[0-9a-fA-F]{16})\s*$")  # after the raw line's last "0x", prefixes and all
_DECODED = re.compile(r"event: (?P<name>\S+) client: (?P<client>\(unassigned sid\)|\S+) sid: 0x(?P<sid>[0-9a-fA-F]+)")
_DECODED2 = re.compile(r"(?:un)?priv (?:inst|data) (?:read|write) s[12] ")
# A name before ": " is matched from where its run of name characters begins, once (`(?<!...)` and `++`): the same
# match as a plain `[\w.\-]+`, without retrying it from every character of every word before it.
_NAME = r"(?<![\w.\-])(?P<smmu>[\w.\-]++)"
_V3_HEADER = re.compile(rf"(?:arm-smmu-v3 )?{_NAME}: event 0x(?P<id>[0-9a-fA-F]{{1,2}}) received:")
_PRI_HEADER = re.compile(rf"{_NAME}: unexpected PRI request received:")
_PRI = re.compile(r"sid 0x(?P<sid>[0-9a-fA-F]+)\.0x(?P<ssid>[0-9a-fA-F]{1,16}): \[(?P<grp>\d+)(?P<last>L?)\] "
                  r"(?P<un>(?:un)?)privileged (?P<rwx>[RWX]*) access at iova 0x(?P<iova>[0-9a-fA-F]{1,16})")
_OVERFLOW = re.compile(rf"{_NAME}: (?P<q>EVTQ|PRIQ) overflow detected -- (?:events|requests) lost")
_V2 = re.compile(rf"{_NAME}: Unhandled context fault: (?P<kv>.*)$")
# fsr=0x402, cb=7, a Tegra kernel's sid=5(...); matched from a word's start only, like _NAME
_V2_FIELD = re.compile(r"(?<!\w)(\w++)=(0x[0-9a-fA-F]{1,16}|\d{1,10})\b")


def _at_field(body: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """`body` at a message's start, and after a ": " in it (what `(?:^|: )body` finds, the first place it matches,
    at C speed: a search that begins with a literal skips to it, one that begins with `^|` tries every position)."""
    return re.compile(body), re.compile(": " + body)


def _field_match(patterns: tuple[re.Pattern[str], re.Pattern[str]], msg: str) -> re.Match[str] | None:
    """The first match of an `_at_field` pair in `msg`."""
    at_start, after = patterns
    return at_start.match(msg) or after.search(msg)


_V2_CONTEXT = _at_field(r"(?:FSR\s+=|FSYNR[01]\s+=|soft iova-to-phys|hard iova-to-phys|Stack trace:|FAR\s+=|"
                        r"CBFRSYNRA|Client info:|SOFTWARE TABLE WALK|(?:SSD=0x\w+ )?SID=0x)")
_V2_SID = _at_field(r"(?:SSD=0x\w+ )?SID=0x(?P<sid>[0-9a-fA-F]{1,8})\s*$")  # downstream: after the fault
_GLOBAL = re.compile(rf"{_NAME}: (?:Unexpected global fault, this could be serious|"
                     r"Blocked unknown Stream ID 0x(?P<sid>[0-9a-fA-F]{1,8});)")
_GFSR = re.compile(r"(?:(?P<smmu>[\w.\-]+):\s+)?GFSR 0x(?P<gfsr>[0-9a-fA-F]{1,8}), GFSYNR0 0x(?P<s0>[0-9a-fA-F]{1,8}), "
                   r"GFSYNR1 0x(?P<s1>[0-9a-fA-F]{1,8}), GFSYNR2 0x[0-9a-fA-F]{1,8}")
GFSYNR0_WNR = 1 << 1


def stream_device(smmu: str, sid: int) -> str:
    """A device known only by its StreamID on one SMMU."""
    return f"{smmu}/sid={sid:#x}"


class ArmSmmu(PendingParser):
    vendor = "arm-smmu-v3"
    RULES = (("received:", _V3_HEADER, "_v3_header"), ("received:", _PRI_HEADER, "_pri_header"),
             ("context fault", _V2, "_v2"), ("overflow detected", _OVERFLOW, "_overflow"),
             ("global fault", _GLOBAL, "_global"), ("Blocked unknown", _GLOBAL, "_global"),
             ("GFSR 0x", _GFSR, "_gfsr_alone"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._v3: tuple[LogLine, str, int] | None = None  # header line, SMMU name, event id
        self._words: list[int | None] = []  # None: a word whose line is garbled
        self._client: str | None = None
        self._extra: list[str] = []  # the record's other lines, for its raw text
        self._pri_smmu: str | None = None
        self._global_smmu: str | None = None  # a global fault whose GFSR line is still to come
        self._v2_smmu: str | None = None  # a context fault whose StreamID a later "SID=0x.." line may give

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
        self.sink.overflow(line, m["smmu"], self.vendor, m["q"], f"SMMU's {queue} queue", f"{queue}s were lost")
        return True

    def more(self, line: LogLine) -> bool:
        msg = line.msg
        if self._v3 is not None:
            if len(self._words) < 4 and (m := _WORD.match(msg)) is not None:
                self._word(line.text, m["w"])
                return True
            if len(self._words) < 4 and _WORD_START.match(msg) is not None:  # a word with a byte garbled
                self._word(line.text, None)
                self.garbled = True
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
        if self._global_smmu is not None and (m := _GFSR.search(msg)) is not None:
            assert self.pending is not None
            append_raw(self.pending, line)
            _apply_gfsr(self.pending, self._global_smmu, m)
            self._global_smmu = None
            return True
        if self.pending is not None and _field_match(_V2_CONTEXT, msg):
            append_raw(self.pending, line)
            if self._v2_smmu is not None and (m := _field_match(_V2_SID, msg)) is not None:
                self.pending[R_DEVICE] = stream_device(self._v2_smmu, int(m["sid"], 16))
                self._v2_smmu = None
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

    def _word(self, text: str, hexword: str | None) -> None:
        """The record's next word (None: its line is garbled), its line kept in the event's raw text."""
        self._words.append(None if hexword is None else int(hexword, 16))
        self._extra.append(text.rstrip())
        self.greedy = len(self._words) < 4

    def close(self) -> None:
        if self._v3 is not None:
            self._emit_v3()
        self._pri_smmu = self._global_smmu = self._v2_smmu = None
        self.greedy = False
        super().close()

    # -- SMMUv3 -------------------------------------------------------------------------------------------------
    def _emit_v3(self) -> None:
        assert self._v3 is not None
        header, smmu, id_ = self._v3
        words, client, extra = self._words, self._client, self._extra
        self._v3, self._words, self._client, self._extra = None, [], None, []
        garbled = " [record words garbled in the log]" if None in words else ""
        if len(words) < 4 or words[0] is None or words[1] is None:
            name, meaning = v3_event(id_)
            row = self.sink.fault_row(header, smmu, None, code=id_, vendor=self.vendor, access="unknown",
                                      reason=f"{name} ({id_:#04x}): {meaning}"
                                             f"{garbled or ' [record words not in the log]'}")
        else:
            sid, pasid, translation, access, reason = _v3_decoded(id_, words[0], words[1])
            device = client if client else stream_device(smmu, sid)
            row = self.sink.fault_row(header, device, pasid, addr=words[2] if translation else None,
                                      code=id_, vendor=self.vendor, access=access, reason=reason + garbled)
            self.sink.device(device)
        if extra:
            row[R_FIELDS]["raw"] = "\n".join([row[R_FIELDS]["raw"], *extra])
        self.sink.emit(row)

    def _pri(self, line: LogLine, m: re.Match[str]) -> None:
        assert self._pri_smmu is not None
        rwx = m["rwx"]
        perm = (1 if "R" in rwx else 0) | (2 if "W" in rwx else 0) | (4 if "X" in rwx else 0) | \
               (0 if m["un"] else 8)
        device = stream_device(self._pri_smmu, int(m["sid"], 16))
        ssid = int(m["ssid"], 16)
        prg = int(m["grp"]) & 0x1FF
        self.sink.row(Kind.PAGE_REQUEST, line.ts, device, ssid or None,
                      {"prg": prg, "addr": int(m["iova"], 16), "perm": perm, "last": bool(m["last"])})
        if m["last"]:
            # arm_smmu_handle_ppr() takes no PRI request: on the group's last one it sends CMDQ_OP_PRI_RESP with
            # PRI_RESP_DENY, an Invalid Request, at once (kernel-review F12)
            self.sink.row(Kind.PAGE_RESPONSE, line.ts, device, ssid or None,
                          {"prg": prg, "code": int(ResponseCode.INVALID), "by": "kernel"})
        self.sink.device(device)

    # -- SMMUv2 -------------------------------------------------------------------------------------------------
    def _v2(self, line: LogLine, m: re.Match[str]) -> bool:
        kv = {k: int(v, 16) if v[:2] == "0x" else int(v) for k, v in _V2_FIELD.findall(m["kv"])}
        if "iova" not in kv:
            return False
        fsr, cb = kv.get("fsr"), kv.get("cb")
        fsynr = kv.get("fsynr", kv.get("fsynr0"))
        sid = kv["cbfrsynra"] & 0xFFFF if "cbfrsynra" in kv else kv.get("sid")
        smmu = m["smmu"]
        device = stream_device(smmu, sid) if sid is not None else (smmu if cb is None else f"{smmu}/cb={cb}")
        access = "unknown" if fsynr is None else \
            "exec" if fsynr & FSYNR0_IND else ("write" if fsynr & FSYNR0_WNR else "read")
        row = self.sink.fault_row(line, device, None, addr=kv["iova"], code=fsr, flags=fsynr, vendor="arm-smmu",
                                  access=access, reason=_v2_reason(fsr, fsynr, cb, sid))
        self.hold(row)
        self._v2_smmu = smmu if sid is None else None
        return True

    def _global(self, line: LogLine, m: re.Match[str]) -> bool:
        smmu, sid = m["smmu"], m["sid"]
        if sid is None:
            device = smmu
            reason = "global fault: a fault no context bank took (the GFSR line that says which was not seen)"
        else:
            device = stream_device(smmu, int(sid, 16))
            reason = (f"blocked DMA from unknown StreamID {int(sid, 16):#x}: no stream mapping entry matches it and "
                      "bypass is disabled (the device is not described to the SMMU in the device tree or IORT, or "
                      "its driver never attached it); arm-smmu.disable_bypass=0 would let it through unchecked")
        self.hold(self.sink.fault_row(line, device, None, vendor="arm-smmu", access="unknown", reason=reason))
        self._global_smmu = smmu
        return True

    def _gfsr_alone(self, line: LogLine, m: re.Match[str]) -> bool:
        """A GFSR line whose header the rate limit (or the paste) left out."""
        row = self.sink.fault_row(line, m["smmu"], None, vendor="arm-smmu", access="unknown", reason="global fault")
        _apply_gfsr(row, m["smmu"], m)
        self.sink.emit(row)
        return True


@functools.lru_cache(maxsize=4096)
def _v3_decoded(id_: int, w0: int, w1: int) -> tuple[int, int | None, bool, str, str]:
    """StreamID, PASID, whether it is a translation fault, access and reason of an event record, from its header's id
    and its first two words (the third is the address; cached: a storm repeats one stream, PASID and access)."""
    name, meaning = v3_event(id_)
    ev = V3Event.decode([w0, w1, 0, 0])
    where = f"StreamID {ev.sid:#x}" + (f", SubstreamID (PASID) {ev.ssid:#x}" if ev.ssv else ", no PASID")
    reason = f"{name} ({id_:#04x}): {meaning}; {where}"
    access = "unknown"
    if ev.is_translation:
        access = "exec" if ev.instruction else ("read" if ev.read else "write")
        reason += f"; {ev.access_text()}"
        if ev.stall:
            reason += f"; stalled (stag {ev.stag:#x}): the transaction waits for a resume, as a page request"
    return ev.sid, ev.ssid if ev.ssv else None, ev.is_translation, access, reason


def _apply_gfsr(row: Row, smmu: str | None, m: re.Match[str]) -> None:
    """Decode the GFSR line into its fault: which global fault, the access, and an unidentified stream's ID."""
    gfsr, s0, s1 = int(m["gfsr"], 16), int(m["s0"], 16), int(m["s1"], 16)
    names, meaning = gfsr_text(gfsr)
    fields = row[R_FIELDS]
    fields.update(code=gfsr, flags=s0, access="write" if s0 & GFSYNR0_WNR else "read")
    decoded = f"GFSR [{names}]: {meaning}"
    if gfsr & GFSR_USF and smmu is not None:
        decoded += f"; StreamID {s1 & 0xFFFF:#x}"
        if row[R_DEVICE] == smmu:
            row[R_DEVICE] = stream_device(smmu, s1 & 0xFFFF)
    fields["reason"] = f"global fault, {decoded}" if fields["reason"].startswith("global fault") else \
        f"{fields['reason']}; {decoded}"


@functools.lru_cache(maxsize=4096)
def _v2_reason(fsr: int | None, fsynr: int | None, cb: int | None, sid: int | None) -> str:
    """A context fault in words, from whichever registers the kernel printed (cached: a storm repeats a few)."""
    if fsr is None:
        parts = ["context fault (FSR not printed by this kernel)"]
    else:
        names, meaning = fsr_text(fsr)
        parts = [f"context fault [{names}]: {meaning}"]
    if fsynr is not None:
        parts.append(fsynr0_text(fsynr))
    where = ", ".join(x for x in (None if cb is None else f"context bank {cb}",
                                  None if sid is None else f"StreamID {sid:#x}") if x)
    return "; ".join([*parts, where] if where else parts)
