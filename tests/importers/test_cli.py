"""The import command as a user meets it: paste a bug report's log, get its faults per device and PASID."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from explorer.cli.main import main
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
    assert "PASID table has no valid entry for this PASID" in faults[1].get("reason")
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
    assert main(["import", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(src) in err
    assert "kernel-log, ftrace, trace-dat" in err and "Dear diary," in err
    assert out.read_bytes() == b"an earlier recording", "a failed import never clobbers the output"
    assert not list(tmp_path.glob(".*part")), "nor leaves a partial file"


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
