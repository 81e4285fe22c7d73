"""Which machine an event happened on (the host, or a named guest) and how its clock relates to the others'.

A recording made on one machine names it in its header (`machines`, one entry) with what aligning its clock with
another machine's takes: its boot id (two recordings of one boot share a clock) and clock snapshots read at the
start (header) and end (footer, `clock_end`) of the recording: the clock the events are stamped with
(CLOCK_MONOTONIC, what `bpf_ktime_get_ns()` reads) together with CLOCK_REALTIME and CLOCK_BOOTTIME. A merged
recording (`merge`) holds several machines: its header lists them all, each with the offset that put its events
on the first machine's timeline, and each event row names its machine by number (`R_MACHINE`, absent for 0).
Device names of the other machines are qualified (`guest/0000:00:03.0`), so device identity is per machine
everywhere a device name is a key. A recording from before machines is one machine, the host, whose clock
cannot be aligned from data.
"""

from __future__ import annotations

import os
import reprlib
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .units import fmt_ns

HOST = "host"  # the name of the machine of a recording that names none
NAME_ENV = "PASID_EXPLORER_MACHINE"  # a capture's machine name when `--machine` gives none (the lab sets it)
QUALIFIER = "/"  # between a machine's name and its device's: "guest/0000:00:03.0"
MAX_MACHINES = 256  # a row's machine number is below this
# How an imported log's later boot was put on the timeline (importers/boots.py): its stamps since boot moved after
# the previous boot's, or the log's own wall-clock or line order kept
BOOT_ORDER = "boot order"
LOG_ORDER = "log order"
BOOT_GAP_NS = 1_000_000_000  # BOOT_ORDER: a later boot's time zero is this long after the previous boot's last stamp
_SNAPSHOT_TRIES = 5  # reads of the three clocks; the tightest pair of monotonic reads around them is kept


class BadMachines(ValueError):
    """A machine table this explorer cannot use (the reader names the file and frame)."""


@dataclass(frozen=True, slots=True)
class ClockSnapshot:
    """The three clocks read together: `monotonic` is the middle of two reads `spread_ns` apart, between which
    `realtime` and `boottime` were read."""

    monotonic: int
    realtime: int
    boottime: int
    spread_ns: int

    def to_dict(self) -> dict[str, int]:
        return {"monotonic": self.monotonic, "realtime": self.realtime, "boottime": self.boottime,
                "spread_ns": self.spread_ns}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ClockSnapshot | None:
        if d is None:
            return None
        names = ("monotonic", "realtime", "boottime", "spread_ns")
        if not isinstance(d, dict) or not all(isinstance(d.get(k), int) and not isinstance(d.get(k), bool)
                                              and 0 <= d[k] < 1 << 63 for k in names):
            raise BadMachines(f"{where}: expected a map of {', '.join(names)} (nanoseconds), found {reprlib.repr(d)}")
        return cls(*(d[k] for k in names))

    @property
    def realtime_minus_monotonic(self) -> int:
        """What turns this machine's monotonic time into wall-clock time."""
        return self.realtime - self.monotonic


def snapshot() -> ClockSnapshot:
    """Read CLOCK_MONOTONIC, CLOCK_REALTIME and CLOCK_BOOTTIME as nearly together as Python can."""
    best: tuple[int, int, int, int] | None = None
    for _ in range(_SNAPSHOT_TRIES):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if best is None or m1 - m0 < best[3]:
            best = ((m0 + m1) // 2, real, boot, m1 - m0)
    assert best is not None
    return ClockSnapshot(*best)


@dataclass(slots=True)
class Machine:
    """One machine of a recording: its name, boot, kernel, clock snapshots and its place on the timeline."""

    name: str = HOST
    boot_id: str | None = None
    kernel: str | None = None
    clock: str | None = None  # what its events' times count ("monotonic"); None: not known (old recordings)
    start: ClockSnapshot | None = None
    end: ClockSnapshot | None = None
    offset_ns: int = 0  # added to its events' times to put them on the recording's timeline (merged recordings)
    aligned_by: str | None = None  # how offset_ns was found: "reference", "realtime", "same boot", "given"
    error_ns: int | None = None  # the bound on offset_ns's error that the data show (None: not known)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.extra, "name": self.name}
        for key, value in (("boot_id", self.boot_id), ("kernel", self.kernel), ("clock", self.clock),
                           ("aligned_by", self.aligned_by), ("error_ns", self.error_ns)):
            if value is not None:
                d[key] = value
        if self.start is not None:
            d["clock_start"] = self.start.to_dict()
        if self.end is not None:
            d["clock_end"] = self.end.to_dict()
        if self.offset_ns:
            d["offset_ns"] = self.offset_ns
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Machine:
        if not isinstance(d, dict):
            raise BadMachines(f"{where}: expected a map, found {reprlib.repr(d)}")
        texts = {}
        for key in ("name", "boot_id", "kernel", "clock", "aligned_by"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise BadMachines(f"{where}.{key}: expected a string, found {reprlib.repr(value)}")
            texts[key] = value
        if not texts["name"]:
            raise BadMachines(f"{where}.name: expected a machine's name, found {reprlib.repr(d.get('name'))}")
        numbers = {}
        for key, default in (("offset_ns", 0), ("error_ns", None)):
            value = d.get(key, default)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not -(1 << 63) <= value < 1 << 63):
                raise BadMachines(f"{where}.{key}: expected nanoseconds, found {reprlib.repr(value)}")
            numbers[key] = value
        known = {"name", "boot_id", "kernel", "clock", "aligned_by", "offset_ns", "error_ns", "clock_start",
                 "clock_end"}
        return cls(texts["name"], texts["boot_id"], texts["kernel"], texts["clock"],
                   ClockSnapshot.from_dict(d.get("clock_start"), f"{where}.clock_start"),
                   ClockSnapshot.from_dict(d.get("clock_end"), f"{where}.clock_end"),
                   numbers["offset_ns"], texts["aligned_by"], numbers["error_ns"],
                   {k: v for k, v in d.items() if k not in known})



def qualified(machine: str, device: str) -> str:
    """A device's name in a merged recording, for a machine other than the first (the first's stay as they are)."""
    return f"{machine}{QUALIFIER}{device}"


def machine_of_device(device: str, names: list[str]) -> tuple[str | None, str]:
    """(machine, the device's own name) of a device name of a merged recording; machine None: the first's."""
    head, sep, rest = device.partition(QUALIFIER)
    return (head, rest) if sep and head in names[1:] else (None, device)


def parse_table(value: Any, where: str = "machines") -> list[Machine]:
    """A header's machine table, checked: at least one machine, names unique, at most MAX_MACHINES."""
    if not isinstance(value, list) or not value or len(value) > MAX_MACHINES:
        raise BadMachines(f"{where}: expected a list of 1 to {MAX_MACHINES} machines, found {reprlib.repr(value)}")
    table = [Machine.from_dict(m, f"{where}[{i}]") for i, m in enumerate(value)]
    names = [m.name for m in table]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadMachines(f"{where}: machine name {twice[0]!r} is given twice")
    return table


def this_machine(name: str | None, kernel: str | None, boot_id: str | None) -> Machine:
    """The machine a capture starts on, its clocks read now; its name is `name`, else $PASID_EXPLORER_MACHINE,
    else "host"."""
    return Machine(name or os.environ.get(NAME_ENV) or HOST, boot_id, kernel, "monotonic", snapshot())


@dataclass(frozen=True, slots=True)
class Alignment:
    """What to add to a machine's times to put them on another's timeline, and how sure that is."""

    offset_ns: int
    by: str  # "realtime" (both recordings' clock snapshots), "given" (the user's --offset), BOOT_ORDER, LOG_ORDER
    error_ns: int | None  # the bound the data show; None when they show none (a given offset)

    def describe(self) -> str:
        if self.by == BOOT_ORDER:
            return (f"offset {_signed(self.offset_ns)}: a later boot of the log, its stamps (time since its boot) "
                    f"placed {fmt_ns(BOOT_GAP_NS)} after the previous boot's last (the log does not say how long "
                    f"the reboot took)")
        if self.by == LOG_ORDER:
            return "a later boot of the log, on the timeline by the log's own wall-clock stamps or line order"
        if self.error_ns is None:
            return f"offset {_signed(self.offset_ns)} as given"
        return (f"offset {_signed(self.offset_ns)} from the machines' wall clocks, within ±{fmt_ns(self.error_ns)} "
                f"as their readings show, plus however far the two wall clocks disagreed (NTP keeps hosts within "
                f"milliseconds; a VM that set its clock from an emulated RTC at boot may be up to a second off)")


def _signed(ns: int) -> str:
    return ("+" if ns >= 0 else "-") + fmt_ns(abs(ns))


def align_by_clocks(reference: Machine, other: Machine) -> Alignment | None:
    """`other`'s offset onto `reference`'s monotonic timeline from their clock snapshots, or None without them.

    At any moment, realtime - monotonic is what turns each machine's monotonic time into wall-clock time, so
    `other`'s (G) minus `reference`'s (H) turns `other`'s monotonic time into `reference`'s, if their wall clocks
    agree. Each side's value is the mean of its start and end readings; the error bound is half of how far each
    moved between its two readings (NTP slewing, a VM's clock drifting) plus half of each reading's spread."""
    ours = [s for s in (reference.start, reference.end) if s is not None]
    theirs = [s for s in (other.start, other.end) if s is not None]
    if not ours or not theirs or reference.clock != "monotonic" or other.clock != "monotonic":
        return None
    h = [s.realtime_minus_monotonic for s in ours]
    g = [s.realtime_minus_monotonic for s in theirs]
    offset = round(Fraction(sum(g), len(g)) - Fraction(sum(h), len(h)))  # exact: wall-clock times pass 2^53
    error = (max(g) - min(g) + max(h) - min(h) + max(s.spread_ns for s in ours) +
             max(s.spread_ns for s in theirs) + 1) // 2
    return Alignment(offset, "realtime", error)


def span_of(machine: Machine) -> tuple[int, int] | None:
    """The monotonic times at which the machine's recording started and ended, when both were read."""
    if machine.start is None or machine.end is None:
        return None
    return machine.start.monotonic, machine.end.monotonic
