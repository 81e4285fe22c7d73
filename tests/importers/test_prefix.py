"""Every way a printk line reaches a user is peeled down to the same message and the right time.

The message is one real line (Dasharo/dasharo-issues#641); the prefixes are what each tool prints in front of it
(dmesg, dmesg -T, -r, -x, CONFIG_PRINTK_CALLER, journalctl's short, short-precise, short-iso,
short-iso-precise and short-monotonic outputs, syslog files, mail quotes, bug-tracker indentation).
"""

from __future__ import annotations

import calendar

import pytest

from explorer.importers.prefix import YearGuess, split_line
from explorer.pci import normalize_pci, rid_to_pci

MSG = ("DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x7cd80000 [fault reason 0x01] "
       "Present bit in root entry is clear")
MONO = 361_089_000
WALL = calendar.timegm((2024, 3, 5, 14, 2, 7, 0, 0, 0)) * 1_000_000_000


@pytest.mark.parametrize(("prefix", "mono", "wall", "host"), [
    ("[    0.361089] ", MONO, None, None),  # dmesg
    ("[    0.361089][    T1] ", MONO, None, None),  # CONFIG_PRINTK_CALLER
    ("<3>[    0.361089] ", MONO, None, None),  # dmesg -r
    ("kern  :err   : [    0.361089] ", MONO, None, None),  # dmesg -x
    ("[Tue Mar  5 14:02:07 2024] ", None, WALL, None),  # dmesg -T
    ("Mar  5 14:02:07 lab4 kernel: ", None, WALL, "lab4"),  # journalctl -k, syslog files
    ("Mar 05 14:02:07.250000 lab4 kernel: ", None, WALL + 250_000_000, "lab4"),  # -o short-precise
    ("2024-03-05T14:02:07+0000 lab4 kernel: ", None, WALL, "lab4"),  # -o short-iso
    ("2024-03-05T15:02:07.250000+01:00 lab4 kernel: ", None, WALL + 250_000_000, "lab4"),  # -o short-iso-precise
    ("2024-03-05T14:02:07,250000+00:00 ", None, WALL + 250_000_000, None),  # dmesg --time-format iso
    ("[    0.361089] lab4 kernel: ", MONO, None, "lab4"),  # -o short-monotonic
    ("Mar  5 14:02:07 lab4 kernel: [    0.361089] ", MONO, WALL, "lab4"),  # rsyslog keeping the kernel's stamp
    ("> > [    0.361089] ", MONO, None, None),  # quoted twice in a mail thread
    ("    [    0.361089] ", MONO, None, None),  # indented in a bug report
    ("[    0.361089] [pid:134,cpu0,irq/13-arm-smmu]", MONO, None, None),  # a vendor kernel's task tag
    ("0x000000000277BBFA |   0.361089:   ", MONO, None, None),  # a log viewer's export
    ("[] ", None, None, None),  # a stamp blanked by the reporter
    ("", None, None, None),  # a bare message
])
def test_every_prefix_form_yields_the_message_and_its_time(prefix: str, mono: int | None, wall: int | None,
                                                           host: str | None) -> None:
    sp = split_line(prefix + MSG + "\n", YearGuess(2024))
    assert (sp.msg, sp.mono_ns, sp.wall_ns, sp.host) == (MSG, mono, wall, host)


def test_syslog_years_roll_over_at_new_year() -> None:
    years = YearGuess(2023)
    dec = split_line("Dec 31 23:59:59 h kernel: x", years).wall_ns
    jan = split_line("Jan  1 00:00:01 h kernel: x", years).wall_ns
    assert dec is not None and jan is not None and jan - dec == 2_000_000_000


@pytest.mark.parametrize(("printed", "name"), [
    ("03:00.0", "0000:03:00.0"), ("0x00:0x02.0", "0000:00:02.0"), ("0000:c2:00.0", "0000:c2:00.0"),
    ("0002:21:00.0", "0002:21:00.0"), ("6A:01.0", "0000:6a:01.0"), ("not-a-bdf", "not-a-bdf"),
])
def test_pci_names_are_the_kernels(printed: str, name: str) -> None:
    assert normalize_pci(printed) == name


def test_requester_ids_become_device_names() -> None:
    assert rid_to_pci(0x50) == "0000:00:0a.0" and rid_to_pci(0x6A08) == "0000:6a:01.0"
