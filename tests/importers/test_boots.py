"""A log that spans reboots is read as one machine per boot: each later boot's times follow the previous boot's,
its devices and PASIDs are its own, and it is judged by its own kernel's rules. printk stamps are local_clock(),
the time since that boot (kernel/printk/printk.c), so they restart at each boot, and start_kernel prints the
`Linux version` banner first, at 0.000000. Stamps printed by different CPUs can be out of order by a little: such
a log is one boot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.cli.main import main
from explorer.loading import open_index


def _fault(stamp: str, pasid: int, addr: int, prefix: str = "") -> str:
    return (f"{prefix}[{stamp}] DMAR: [DMA Write PASID {pasid:#x}] Request device [6a:01.0] fault addr {addr:#x} "
            "[fault reason 0x3a] SM: Non-zero reserved field set in Root Entry\n")


SYSLOG = "".join((  # a syslog file (kern.log) over a reboot into a newer kernel
    "Dec  1 10:00:00 host kernel: [    0.000000] Linux version 6.8.0-31-generic (buildd@x) #31-Ubuntu SMP\n",
    _fault("  100.000000", 2, 0x1000, "Dec  1 10:01:40 host kernel: "),
    "Dec  2 09:00:00 host kernel: [    0.000000] Linux version 6.12.0 (buildd@x) #1 SMP\n",
    _fault("   50.000000", 3, 0x2000, "Dec  2 09:00:50 host kernel: "),
))


def _import(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    src, out = tmp_path / "kern.log", tmp_path / "kern.pasidrec"
    src.write_text(text)
    assert main(["import", str(src), "-o", str(out)]) == 0
    return out, capsys.readouterr().out


def _exported(out: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert main(["export", str(out), "--to", "jsonl", "-o", "-"]) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def _info(out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["info", str(out)]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("text", [SYSLOG, "".join(x.split("kernel: ", 1)[-1] for x in SYSLOG.splitlines(True))],
                         ids=["syslog", "dmesg-after-dmesg"])
def test_each_boot_is_its_own_machine_in_order_with_its_own_kernels_rules(
        text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, said = _import(tmp_path, text, capsys)
    assert "line 3: another boot (kernel 6.12.0): kept as machine boot-2, its times placed after boot-1's" in said
    rows = _exported(out, capsys)
    assert [(r["pasid"], r["ts_ns"], r["device"], r.get("machine")) for r in rows] == [
        (2, 100_000_000_000, "0000:6a:01.0", None),
        (3, 151_000_000_000, "boot-2/0000:6a:01.0", 1)]  # its zero 1 s after boot-1's last stamp
    info = _info(out, capsys)
    assert "machine boot-1 (kernel 6.8.0-31-generic): the timeline's clock" in info
    assert "machine boot-2 (kernel 6.12.0): offset +101.000 s: a later boot of the log" in info
    boot1, boot2 = info.split("machine boot-2")
    assert "request.needs-pasid-bit3 (5.3–6.9)" in boot1 and "request.needs-pasid-bit2 (6.10+)" in boot2
    assert "2 events over 51.000 s" in info
    idx = open_index(out)
    assert [m.kernel for m in idx.header.machines] == ["6.8.0-31-generic", "6.12.0"]
    assert idx.header.kernel == "6.8.0-31-generic"


def test_a_healthy_boot_with_stamps_out_of_order_is_one_boot(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Different CPUs' stamps interleave out of order by microseconds; a line at 0.5 s after one at 40 s (a
    reporter's paste reordered) is not a reboot either: only a stamp near zero long after the last is."""
    text = ("[    0.000000] Linux version 6.8.0 (x) #1\n" + _fault("  100.000300", 2, 0x1000) +
            _fault("  100.000100", 2, 0x2000) + _fault("  100.000200", 5, 0x3000) + _fault("   40.000000", 2, 0x4000) +
            _fault("    0.500000", 2, 0x5000) + "[  120.000000] Linux version 6.8.0 (x) #1\n" +
            _fault("  120.500000", 7, 0x6000))
    out, said = _import(tmp_path, text, capsys)
    assert "another boot" not in said
    assert len(open_index(out).header.machine_table) == 1
    assert {r.get("machine") for r in _exported(out, capsys)} == {None}
    assert "machine boot-2" not in _info(out, capsys)


@pytest.mark.parametrize("quoting", [
    "Dec  1 10:02:00 host fwupd[812]: Linux version 6.8.0-31-generic detected, using the defaults\n",
    "Dec  1 10:02:00 host sysinfo[99]: Linux version 6.8.0 (buildd@x) (gcc 13) #31-Ubuntu SMP\n",  # /proc/version
    "Dec  1 10:02:00 host kernel: Linux version 6.8.0 is what this mock driver was built for\n",
])
def test_a_line_that_quotes_a_version_is_no_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 quoting: str) -> None:
    """Only the kernel's own banner starts a boot (init/version-timestamp.c: `Linux version <release> (<builder>)
    ... #<build>`, printed by start_kernel on the kernel's own lines): a program's line that names a version, or
    logs /proc/version, once split a wall-clock syslog's one boot in two, its device's PASIDs with it."""
    one = "".join(x.replace("[    0.000000] ", "").replace("[  100.000000] ", "")
                  for x in SYSLOG.splitlines(True)[:2])  # rsyslog without the printk stamps: one boot
    out, said = _import(tmp_path, one + quoting + _fault("  100.500000", 2, 0x3000, "Dec  1 10:03:00 host kernel: ")
                        .replace("[  100.500000] ", ""), capsys)
    assert "another boot" not in said
    assert {(r["device"], r.get("machine")) for r in _exported(out, capsys)} == {("0000:6a:01.0", None)}


def test_stamps_back_at_zero_without_a_banner_are_a_boot_of_unknown_kernel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("[    0.000000] Linux version 6.8.0 (x) #1\n" + _fault("  300.000000", 2, 0x1000) +
            _fault("    1.200000", 2, 0x2000))  # the second dmesg's ring buffer lost its banner, not its start
    out, said = _import(tmp_path, text, capsys)
    assert ("line 3: another boot (no 'Linux version' line: its stamps restart after 300.000000 s): kept as machine "
            "boot-2") in said
    rows = _exported(out, capsys)
    assert [(r["ts_ns"], r.get("machine")) for r in rows] == [(300_000_000_000, None), (302_200_000_000, 1)]
    assert [m.kernel for m in open_index(out).header.machines] == ["6.8.0", None]


def test_a_wall_clock_syslog_keeps_its_times_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "".join(x.replace("[    0.000000] ", "").replace("[  100.000000] ", "").replace("[   50.000000] ", "")
                   for x in SYSLOG.splitlines(True))  # rsyslog without the printk stamps
    out, said = _import(tmp_path, text, capsys)
    assert "kept as machine boot-2, its times as the log prints them" in said
    rows = _exported(out, capsys)
    assert [r["pasid"] for r in rows] == [2, 3] and rows[1]["ts_ns"] - rows[0]["ts_ns"] == (23 * 3600 - 50) * 10**9
    assert "machine boot-2 (kernel 6.12.0): a later boot of the log, on the timeline by the log's own " \
           "wall-clock stamps" in _info(out, capsys)


def test_a_later_boot_keeps_its_pasids_and_rate_limit_counts_apart(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The same PASID number after a reboot is another PASID; a "callbacks suppressed" line after the reboot does
    not speak for the device the last boot reported."""
    text = ("[    0.000000] Linux version 6.8.0 (x) #1\n" + _fault("  100.000000", 2, 0x1000) +
            "[    0.000000] Linux version 6.8.0 (x) #2\n[   10.000000] dmar_fault: 3 callbacks suppressed\n" +
            _fault("   11.000000", 2, 0x2000))
    out, _ = _import(tmp_path, text, capsys)
    rows = _exported(out, capsys)
    assert [(r["device"], r.get("machine")) for r in rows] == [("0000:6a:01.0", None), (None, 1),
                                                              ("boot-2/0000:6a:01.0", 1)]
    idx = open_index(out)
    assert sorted(idx.devices) == ["0000:6a:01.0", "boot-2/0000:6a:01.0"]


def test_output_that_is_not_a_file_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "kern.log"
    src.write_text(SYSLOG)
    assert main(["import", str(src), "-o", "/dev/null"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be a regular file" in err and "line 3: another boot" in err
