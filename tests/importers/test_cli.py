"""The import command as a user meets it: paste a bug report's log, get its faults per device and PASID."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest

from explorer.cli.main import main
from explorer.importers import import_log
from explorer.loading import open_index
from explorer.recording import Recording

# A bug report as people paste it: prose, a boot log in journal form, faults from two IOMMUs' worth of drivers,
# one line the importer has never seen, and a rate-limit summary. (Lines from the fixture sources.)
BUG_REPORT = "".join(line + "\n" for line in (
    "Hi, after updating to 6.5 my DSA accelerator halts. dmesg:",
    "",
    "[    0.000000] Linux version 6.5.0-14-generic (buildd@lcy02-amd64-110) (x86_64-linux-gnu-gcc-12 (Ubuntu "
    "12.3.0-1ubuntu1~23.04) 12.3.0) #14-Ubuntu SMP PREEMPT_DYNAMIC",
    "[  232.023841] idxd 0000:6a:01.0: idxd halted, need FLR.",
    "[  232.023907] DMAR: DRHD: handling fault status reg 3",
    "[  232.023974] DMAR: [DMA Read PASID 0x2] Request device [6a:01.0] fault addr 0x7fe0c9943000 "
    "[fault reason 0x3a] SM: Non-zero reserved field set in Root Entry",
    "[  233.000000] dmar_fault: 12 callbacks suppressed",
    "[  233.100000] DMAR: [DMA Write PASID 0x2] Request device [6a:01.0] fault addr 0x7fe0c9944000 "
    "[fault reason 0x59] SM: Present bit in PASID Table Entry is clear",
    "[  233.200000] DMAR: [DMA Write] Request device [6a:01.0] something new the kernel started printing",
))


def test_pasted_bug_report_becomes_faults_per_device_and_pasid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUG_REPORT.encode())))
    out = tmp_path / "bug.pasidrec"
    assert main(["import", "-", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "3 events" in said and "1 look like faults but were not understood" in said and "12 fault" in said
    idx = open_index(out)
    assert idx.header.kernel == "6.5.0-14-generic" and idx.header.source == "import:kernel-log"
    by_track = {t: len(idx.track_events(i)) for i, t in enumerate(idx.tracks)}
    assert by_track[("0000:6a:01.0", 2)] == 2  # the two PASID faults on the device's PASID 2 track
    assert by_track[("0000:6a:01.0", None)] == 1  # the rate-limit summary, on the device's own track
    faults = [idx.event(i) for i in idx.track_events(idx.tracks.index(("0000:6a:01.0", 2)))]
    assert "PASID table has no valid entry for the PASID looked up" in faults[1].get("reason")
    footer = Recording(out).footer
    assert footer["import"]["unknown_samples"] == [[9, BUG_REPORT.splitlines()[8]]]
    assert main(["info", str(out)]) == 0
    assert "something new the kernel started printing" in capsys.readouterr().out


def test_unrecognised_input_is_one_line_naming_file_formats_and_first_line(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "photo.txt"
    src.write_text("Dear diary,\ntoday nothing happened.\n")
    out = tmp_path / "old.pasidrec"
    out.write_bytes(b"an earlier recording")
    assert main(["import", str(src), "-o", str(out), "--force"]) == 2  # (without --force it is kept from the start)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(src) in err
    assert "kernel-log, ftrace, trace-dat" in err and "Dear diary," in err
    assert out.read_bytes() == b"an earlier recording", "a failed import never clobbers the output"
    assert not list(tmp_path.glob(".*part")), "nor leaves a partial file"


def test_a_kernel_log_forced_to_read_as_ftrace_is_told_to_leave_format_out(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'tried: kernel-log, ftrace, trace-dat', though only ftrace was tried and the log reads as the other."""
    src = tmp_path / "dmesg.txt"
    src.write_text("[    0.000000] Linux version 6.8.0\n[ 4778.915423] DMAR: [DMA Read NO_PASID] Request device "
                   "[00:02.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set\n")
    assert main(["import", str(src), "--format", "ftrace", "-o", str(tmp_path / "x.pasidrec")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "read as kernel-log: leave --format out" in err and "tried" not in err
    assert main(["import", str(src), "-o", str(tmp_path / "x.pasidrec")]) == 0


def test_missing_input_and_unknown_format_are_one_line_errors(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "nope.log"), "-o", str(tmp_path / "x.pasidrec")]) == 2
    assert "nope.log" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["import", "x.log", "--format", "pcap"])


def test_a_plain_boot_log_without_faults_is_an_empty_recording(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "dmesg.txt"
    src.write_text("[    0.000000] Linux version 6.18.0 (gcc)\n[    0.100000] DMAR: IOMMU enabled\n"
                   "[    0.200000] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n")
    out = tmp_path / "boot.pasidrec"
    assert main(["import", str(src), "-o", str(out)]) == 0
    assert "no IOMMU fault or event lines found" in capsys.readouterr().out
    with Recording(out) as rec:
        assert rec.event_count == 0 and rec.footer["import"]["unknown"] == 0
        assert rec.header.kernel == "6.18.0"


@pytest.mark.parametrize("command", ["import", "export"])
def test_help_teaches_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "pasid-explorer " + command in text


def test_an_unwritable_output_is_one_line_before_the_input_is_read(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "out.pasidrec"
    # The input does not exist either: the output is what the user hears about, so it was checked first.
    assert main(["import", str(tmp_path / "nope.log"), "-o", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such folder" in err and str(missing) in err
    assert not (tmp_path / "no").exists(), "missing folders are not made"
    src = tmp_path / "dmesg.txt"
    src.write_text(BUG_REPORT)
    assert main(["import", str(src), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a directory" in err


@pytest.mark.parametrize(("data", "said"), [
    pytest.param(gzip.compress(BUG_REPORT.encode()), "compressed (gzip): try `zcat ", id="gzip"),
    pytest.param(b"\xfd7zXZ\x00\x00" + bytes(range(256)) * 4, "compressed (xz): try `xzcat ", id="xz"),
    pytest.param(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 4, "compressed (zstd)", id="zstd"),
    pytest.param(b"\x7fELF\x02\x01\x01" + bytes(1000), "an executable (ELF), not a text log", id="elf"),
    pytest.param(BUG_REPORT.encode("utf-16"), "UTF-16 text: try `iconv -f UTF-16 -t UTF-8 ", id="utf-16"),
    pytest.param(bytes(range(256)) * 40, "binary, not a text log", id="binary"),
])
def test_compressed_or_binary_input_is_named_in_one_short_line(data: bytes, said: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "dmesg.bin"
    src.write_bytes(data)
    assert main(["import", str(src), "-o", str(tmp_path / "out.pasidrec")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err and len(err.replace(str(tmp_path), "")) < 150, err
    assert not (tmp_path / "out.pasidrec").exists()


def test_a_syslog_file_with_a_crashs_zeroed_blocks_is_still_a_log(tmp_path: Path) -> None:
    src = tmp_path / "kern.log"
    src.write_bytes(bytes(4096) + BUG_REPORT.encode())
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert stats.events == 3


# Real lines (amd_vi.yaml and ftrace.yaml sources): dmesg faults and trace lines in one paste.
DMESG = ["[  221.562629] AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 "
         "flags=0x0070]",
         "[   40.182570] ath10k_pci 0000:01:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x000d address=0xcff49550 "
         "flags=0x0070]"]
TRACE = ["   irq/24-AMD-Vi-48    [002] ....   978.554289: io_page_fault: IOMMU:[drvname] 0000:05:00.0 "
         "iova=0x0000000091482640 flags=0x0000",
         "   (udev-worker)-532     [010] .....     4.878076: map: IOMMU: iova=0x00000000fe980000 - 0x00000000fea00000 "
         "paddr=0x000000010ec80000 size=524288",
         "   kworker/u64:0-12      [011] .....   327.747766: unmap: IOMMU: iova=0x00000000fe980000 - "
         "0x00000000fea00000 size=524288 unmapped_size=524288"]
MARKER = ('pe-probe-test:             bash-6105  [000] 11266.681163: print:                tracing_mark_write: '
          'pasid_explorer: {"kind":"marker","text":"hi"}')


@pytest.mark.parametrize(("lines", "fmt"), [(DMESG + DMESG + TRACE[:1] + [MARKER], "kernel-log"),
                                            (TRACE + DMESG[:1], "ftrace")])
def test_a_paste_mixing_dmesg_and_trace_lines_keeps_both_kinds(lines: list[str], fmt: str, tmp_path: Path) -> None:
    src = tmp_path / "paste.txt"
    src.write_text("\n".join(lines) + "\n")
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert stats.format == fmt  # the majority decides the format; the minority is read all the same
    assert (stats.parsed, stats.unknown, stats.events) == (len(lines), 0, len(lines))
    with Recording(tmp_path / "out.pasidrec") as rec:
        sources = {(e.kind, e.get("vendor")) for e in rec.iter_events()}
    assert ("fault", "amd") in sources and ("fault", "generic") in sources


def test_info_says_how_many_unknown_lines_it_did_not_show_and_where_they_are(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]
                                                                            ) -> None:
    src = tmp_path / "odd.log"
    src.write_text("".join(f"[ {i}.000000] DMAR: a fault form nobody has seen {i}\n" for i in range(1, 61)))
    out = tmp_path / "odd.pasidrec"
    assert main(["import", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    said = capsys.readouterr().out
    assert "nobody has seen 10\n" in said and "nobody has seen 11\n" not in said
    assert f"... and 40 more kept in the recording (pasid-explorer info --json {out} lists them)" in said
    assert "only the first 50 lines not understood are kept" in said


def test_trace_lines_after_a_long_dmesg_are_read_too(tmp_path: Path) -> None:
    src = tmp_path / "dmesg-then-trace.txt"
    noise = "".join(f"[{i:5d}.000000] usb 3-3: new high-speed USB device number {i} using xhci_hcd\n"
                    for i in range(2000))  # past the first 64 KiB, which the format is judged from
    src.write_text(DMESG[0] + "\n" + noise + "\n".join(TRACE) + "\n")
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert stats.format == "kernel-log" and (stats.events, stats.unknown) == (4, 0)


# A vendor tree's iommu:dev_fault and dev_page_response (traced in iommu_report_device_fault() and
# iommu_page_response(), before ops->page_response: 'trace/iommu: Add sva trace events', never merged) on VT-d,
# whose prq_report follows the report and whose qi_submit sends the response's descriptor (drivers/iommu/intel/
# trace.h, svm.c 5.14-6.12): two sightings each of one request and one response, on the PRQ thread
VENDOR_TREE_TRACE = [
    "kworker/0:1-10  [000] .....  500.000001: dev_fault: IOMMU:0000:00:0a.0 type=2 reason=0 "
    "addr=0x0000000000401000 pasid=3 group=7 last=1 prot=3",
    "kworker/0:1-10  [000] .....  500.000002: prq_report: dmar0/0000:00:0a.0 seq# 1: rid=0x50 addr=0x401 rw--l "
    "pasid=0x3 index=0x7",
    "kworker/0:1-10  [000] .....  500.000003: dev_page_response: IOMMU:0000:00:0a.0 code=0 pasid=3 group=7",
    "kworker/0:1-10  [000] .....  500.000004: qi_submit: page_grp_resp dmar0: 0x300500019 0x3c 0x0 0x0",
]


def test_a_vendor_tree_trace_on_vt_d_is_one_request_and_one_response_not_a_group_answered_twice(
        tmp_path: Path) -> None:
    src, out = tmp_path / "trace.txt", tmp_path / "trace.pasidrec"
    src.write_text("\n".join(VENDOR_TREE_TRACE) + "\n")
    assert import_log(str(src), out).parsed == 4
    idx = open_index(out)
    events = [idx.event(i) for i in range(idx.n)]
    assert [(e.kind, e.get("seen_by")) for e in events] == [
        ("page_request", ["intel_iommu:prq_report"]), ("page_response", ["intel_iommu:qi_submit"])]
    assert idx.anomalies == []


def test_a_second_response_to_a_group_in_a_trace_is_still_an_answer_given_twice(tmp_path: Path) -> None:
    """Only a deeper hook's sighting folds: the core answering one group twice is two responses."""
    src, out = tmp_path / "trace.txt", tmp_path / "trace.pasidrec"
    src.write_text("\n".join([*VENDOR_TREE_TRACE, VENDOR_TREE_TRACE[2].replace("500.000003", "500.000005")]) + "\n")
    import_log(str(src), out)
    assert [a.rule for a in open_index(out).anomalies] == ["duplicate_response"]
