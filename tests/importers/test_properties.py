"""Whatever text arrives, the importers either write a recording or say in one line why not; and the decoders
answer for every value a field can hold."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.errors import InputError
from explorer.events import make
from explorer.importers import import_log
from explorer.importers.amd_tables import page_fault_access, page_fault_reason
from explorer.importers.intel_dmar import reason_code
from explorer.importers.kernel_log import ANCHORS, KEYWORDS
from explorer.importers.prefix import split_line
from explorer.importers.scan import BlockScanner
from explorer.importers.smmu_tables import V3Event, fsr_text, v3_event
from explorer.importers.vtd_tables import decode_page_group_response, fault_reason
from explorer.recording import Recording

# Fragments real logs are made of, so that random text often comes close to a real line and exercises the parsers
# deep inside, not only their first check.
FRAGMENTS = [
    "[   12.345678] ", "[Mon Jan  1 12:00:00 2024] ", "Jan  2 03:04:05 host kernel: ", "kernel: ", "> ", "| ",
    "DMAR: ", "DMAR:[DMA Read] ", "[DMA Write PASID 0x", "[DMA Read NO_PASID] ", "[INTR-REMAP] ", "Request device [",
    "00:02.0] ", "0x00:0x02.0]", " fault addr 0x", " fault index ", "[fault reason 0x", "06] ", "ffffffff",
    "PTE Read access is not set", "DRHD: handling fault status reg 3", "dmar_fault: 12 callbacks suppressed",
    "AMD-Vi: Event logged [", "IO_PAGE_FAULT ", "device=00:14.5 ", "domain=0x000d ", "address=0xfdf8000000 ",
    "flags=0x0070]", "device=zz:q.9 ", "INVALID_DEVICE_REQUEST ", "pasid=0x00001 ", "PPR logged [",
    "nvme 0000:01:00.0: ",
    "iommu ivhd0: ", "arm-smmu-v3 arm-smmu-v3.0.auto: ", "event 0x10 received:", "\t0x0000010000000010",
    "event: F_TRANSLATION client: 0000:00:01.0 sid: 0x8 ssid: 0x0 iova: 0x0 ipa: 0x0",
    "unexpected PRI request received:", "sid 0x00000010.0x00005: [3L] unprivileged RW access at iova 0x1000",
    "arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x9c4b9000, fsynr=0x7c0020, ",
    "cbfrsynra=0x800, cb=7",
    "FSR    = 00000402 [TF], SID=0x800", "EVTQ overflow detected -- events lost", "DTE[0]: 7d9", "\n", "\n", " ",
    "irq/24-AMD-Vi-48    [002] ....   978.554289: ", "io_page_fault: IOMMU:nvme 0000:05:00.0 iova=0x1 flags=0x1",
    "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096", "prq_report: dmar0/0000:00:0a.0 seq# 1: rid=0x50 addr=0x5 ",
    "r---- pasid=0x2 index=0x1", "qi_submit: page_grp_resp dmar0: 0x300500019 0x3c 0x0 0x0",
    "tracing_mark_write: pasid_explorer: {\"kind\": \"marker\"", ", \"text\": \"x\"}", "\x00", "\ufffd", "\r",
    # reasons in hex without 0x, and with a trailing h; a paste's prefixes; dmesg -H and journalctl stamps
    "[fault reason 1f] x", "[fault reason 12h] ", "  1 ", "L25: ", "* ", "`", "dmesg: ", "[Mar 5 12:34] ",
    "[  +0.000012] ", "Tue 2024-03-05 12:34:56 UTC host kernel: ", "1709647327.123456 host kernel: ",
    # old AMD prefix, log overflows, faults of the IOMMU itself
    "AMD IOMMU: ", "AMD-Vi: IOMMU event log overflow", "IOMMU PPR log restarting",
    "iommu ivhd0: AMD-Vi: Event logged [ILLEGAL_COMMAND_ERROR address=0x10]", "AMD-Vi: CMD[0]: 00000000",
    # SMMUv2 global faults and the other context fault forms
    "arm-smmu 5000000.iommu: Blocked unknown Stream ID 0x2c01; ", "Unexpected global fault, this could be serious",
    "GFSR 0x80000002, GFSYNR0 0x00000002, GFSYNR1 0x00000429, GFSYNR2 0x00000000",
    "Unhandled context fault: iova=0x1000, cb=0, fsr=0x402, fsynr0=0x1, fsynr1=0x0", "fsynr=0x11, cb=3", "SID=0x880",
    "qcom_smmu_context_fault: 9 callbacks suppressed",
]
log_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=60).map("".join)


def _import(data: bytes, fmt: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.log", Path(d) / "out.pasidrec"
        src.write_bytes(data)
        try:
            stats = import_log(str(src), out, fmt=fmt)
        except InputError as e:
            assert str(src) in str(e) and "\n" not in str(e).strip()
            assert not out.exists(), "a refused import leaves no file behind"
            return
        with Recording(out) as rec:
            events = list(rec.iter_events())
            assert rec.complete
        assert len(events) == stats.events
        assert stats.parsed + stats.unknown <= stats.lines
        for ev in events:  # everything written obeys the event model
            make(ev.kind, ev.ts_ns, device=ev.device, pasid=ev.pasid, cpu=ev.cpu, pid=ev.pid, comm=ev.comm,
                 **dict(ev.fields))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(log_text, st.sampled_from([None, "kernel-log", "ftrace"]))
def test_any_text_imports_or_is_refused_in_one_line(text: str, fmt: str | None) -> None:
    _import(text.encode("utf-8", "surrogatepass"), fmt)


WIDE = "1" + "f" * 16  # a 65-bit number: no kernel prints one, and a recording cannot hold it


@pytest.mark.parametrize(("line", "fmt"), [
    (f"[    1.000000] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x{WIDE} [fault reason 0x06] "
     "PTE Read access is not set", None),
    (f"[    1.000000] DMAR: [DMA Write PASID 0x{WIDE}] Request device [00:02.0] fault addr 0x1000 "
     "[fault reason 0x06] PTE Read access is not set", None),
    (f"[    1.000000] AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x{WIDE} "
     "flags=0x0070]", None),
    (f"[    1.000000] arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x{WIDE}, fsynr=0x7c0020, "
     "cbfrsynra=0x800, cb=7", None),
    ("[    1.000000] dmar_fault: 99999999999999999999 callbacks suppressed", None),
    (f"io_page_fault: IOMMU:nvme 0000:05:00.0 iova=0x1 flags=0x{WIDE}", "ftrace"),
    ("bash-1 [000] 99999999999999999999.000001: map: IOMMU: iova=0x1000 paddr=0x2000 size=4096", "ftrace"),
    ('bash-1 [000] 1.000001: print: tracing_mark_write: pasid_explorer: {"kind": "marker", "text": "x", '
     '"step": 99999999999999999999}', "ftrace"),
])
def test_numbers_wider_than_64_bits_never_break_the_recording(line: str, fmt: str | None) -> None:
    _import(line.encode(), fmt)


def test_a_reason_in_hex_without_0x_is_a_fault_not_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "in.log"
    src.write_text("[1.0] DMAR: [DMA Read] Request device [00:02.0] fault addr 1000 [fault reason 1f] x\n")
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    with Recording(tmp_path / "out.pasidrec") as rec:
        (ev,) = rec.iter_events()
    assert stats.unknown == 0 and ev.get("code") == 0x1F and ev.device == "0000:00:02.0"


@pytest.mark.parametrize(("printed", "code"), [("06", 6), ("12", 12), ("37", 37), ("0x3a", 0x3A), ("1f", 0x1F),
                                               ("12h", 0x12), ("0ch", 0x0C)])
def test_reason_codes_are_read_in_the_base_they_were_printed_in(printed: str, code: int) -> None:
    assert reason_code(printed) == code


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_any_bytes_import_or_are_refused_in_one_line(data: bytes) -> None:
    _import(data, None)


# Anchors, pieces of them and near misses around them.
SCAN_BITS = [a.decode() for a in ANCHORS] + \
    ["AMD-V ", "-REMAP", "INTR-", "ssed", "pressed", "Linux ", "Linu", "mmu", "MMU", "\xe9", "\n", "\n", " ", "x"]


@given(st.lists(st.sampled_from(SCAN_BITS), max_size=40).map("".join), st.integers(0, 3))
def test_the_block_scan_finds_the_lines_the_keyword_pattern_finds(text: str, skip: int) -> None:
    data = text.encode()
    start = 0
    for _ in range(skip):  # a run of lines may begin anywhere after a line break
        start = data.find(b"\n", start) + 1 or len(data)
    want, pos, lines = [], start, 0
    while pos < len(data):
        stop = data.find(b"\n", pos)
        stop = len(data) if stop < 0 else stop
        if KEYWORDS.search(data, pos, stop):
            want.append((pos, stop, True))
        pos, lines = stop + 1, lines + 1
    got: list[tuple[int, int, bool]] = []
    scanner = BlockScanner(ANCHORS, lambda block, line, stop, candidate: got.append((line, stop, candidate)))
    if (found := scanner.find(data, start, len(data))) is not None:  # as the import's reader and parser split it
        scanner.take(found)
    assert got == want
    assert scanner.lines == lines


@given(st.text(max_size=200))
def test_split_line_keeps_a_suffix_of_the_line(line: str) -> None:
    sp = split_line(line)
    assert sp.msg in line  # only prefixes are taken off
    assert sp.mono_ns is None or sp.mono_ns >= 0


@given(st.integers(0, 255))
def test_every_vtd_reason_code_has_words(code: int) -> None:
    text, lesson, _ = fault_reason(code)
    assert text and lesson


@given(st.integers(0, 0xFFF), st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_every_amd_flag_combination_is_explained(flags: int, domain: int | None) -> None:
    assert page_fault_access(flags) in ("read", "write", "exec", "unknown")
    assert page_fault_reason(flags, domain).startswith("IO_PAGE_FAULT: ")


@given(st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_smmu_records_and_status_words_always_decode(words: list[int], fsr: int) -> None:
    ev = V3Event.decode(words)
    assert ev.id == words[0] & 0xFF and ev.sid == words[0] >> 32 and 0 <= ev.ssid < 1 << 20
    assert v3_event(ev.id)[0] and ev.access_text()
    assert fsr_text(fsr)[1]


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_page_group_responses_decode_to_model_values(qw0: int, qw1: int) -> None:
    d = decode_page_group_response(qw0, qw1)
    assert 0 <= d["prg"] < 512 and 0 <= d["pasid"] < 1 << 20 and 0 <= d["rid"] < 1 << 16
