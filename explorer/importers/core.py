"""What every importer shares: the line a parser sees, the sink that turns findings into recording rows, the
statistics that end up in the recording's footer under "import", and the text importers' common frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..events import R_DEVICE, R_FIELDS, R_MACHINE, R_PASID, R_TS, Kind, Row
from ..recording import DeviceInfo, RecordingWriter
from .boots import Boot
from .scan import BlockScanner

UNKNOWN_SAMPLES = 50
MAX_SPACE_PAIRS = 10_000  # (device, PASID) pairs of a driver's own PASID space kept in the footer
FAULT = str(Kind.FAULT)
RECORDABLE = range(-(1 << 63), 1 << 64)  # the integers a recording holds (msgpack's)


@dataclass(slots=True)
class LogLine:
    """One input line as a parser sees it: the original text, the bare message and its time."""

    text: str
    msg: str
    ts: int


@dataclass(slots=True)
class ImportStats:
    """Counts for the footer's "import" entry; `info` prints them."""

    format: str
    input: str
    lines: int = 0
    parsed: int = 0
    unknown: int = 0
    unknown_samples: list[Row] = field(default_factory=list)
    suppressed: int = 0
    events: int = 0
    by_vendor: dict[str, int] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    # a driver's own PASID numbering (amdgpu's GPU VMs) -> the (device, PASID) pairs seen in it (explorer.pasid_spaces)
    pasid_spaces: dict[str, set[tuple[str | None, int]]] = field(default_factory=dict)
    boots: list[Boot] = field(default_factory=list)  # the log's boots after its first, each kept as a machine

    def not_understood(self, line_no: Callable[[], int], text: str) -> None:
        """Count a line no format read; the first few are kept as samples, with the number `line_no()` gives (asked
        only for those: finding a line's number costs a search of its block)."""
        self.unknown += 1
        if len(self.unknown_samples) < UNKNOWN_SAMPLES:
            self.unknown_samples.append([line_no(), text.rstrip("\r\n")[:300]])

    def add(self, other: ImportStats, first_line: int) -> None:
        """Count a range parsed apart (importers/split.py) as if its lines, the first of which is line
        `first_line` + 1, had been read here: its samples renumbered, and kept while there is room."""
        room = max(0, UNKNOWN_SAMPLES - len(self.unknown_samples))
        self.unknown_samples += [[n + first_line, text] for n, text in other.unknown_samples[:room]]
        self.parsed += other.parsed
        self.unknown += other.unknown
        self.suppressed += other.suppressed
        self.events += other.events
        for vendor, n in other.by_vendor.items():
            self.by_vendor[vendor] = self.by_vendor.get(vendor, 0) + n
        for space, pairs in other.pasid_spaces.items():
            self.pasid_spaces.setdefault(space, set()).update(pairs)

    def footer(self) -> dict[str, Any]:
        return {"format": self.format, "input": self.input, "lines": self.lines, "parsed": self.parsed,
                "unknown": self.unknown, "unknown_samples": self.unknown_samples, "suppressed": self.suppressed,
                "ignored": max(0, self.lines - self.parsed - self.unknown), "events": self.events,
                "by_vendor": self.by_vendor, **({"host": self.host} if self.host else {}),
                **({"pasid_spaces": {space: [list(p) for p in sorted(pairs, key=lambda p: (p[0] or "", p[1]))]
                                     [:MAX_SPACE_PAIRS] for space, pairs in self.pasid_spaces.items()}}
                   if self.pasid_spaces else {}),
                **({"boots": [b.footer() for b in self.boots]} if self.boots else {})}


class Sink:
    """Appends rows straight to the writer (no Event objects: an import may hold millions of faults)."""

    def __init__(self, writer: RecordingWriter, source: str, stats: ImportStats) -> None:
        self.writer = writer
        self._append = writer.append_row
        self.source = source
        self.stats = stats
        self._drivers: dict[str, str | None] = {}
        self.last_device: dict[str, str | None] = {}  # per vendor: who a "callbacks suppressed" line is about
        # A later boot of the log (importers/boots.py): its machine's number, the offset that puts its times on the
        # timeline, and what its devices' names start with; None while the log's first boot is read
        self.boot: tuple[int, int, str] | None = None

    def start_boot(self, number: int, offset_ns: int, prefix: str) -> None:
        """Rows from here on are a later boot's: moved, on its machine, its devices named apart, and no "callbacks
        suppressed" line speaks for the last boot's devices."""
        self.boot = (number, offset_ns, prefix)
        self.last_device.clear()

    def row(self, kind: str, ts: int, device: str | None, pasid: int | None, fields: dict[str, Any],
            cpu: int | None = None, pid: int | None = None, comm: str | None = None) -> None:
        """Append one event (checked: see `recordable`). Its kind is stored as a plain string: a writer keeps a chunk
        holding a Kind member as rows, not compressed columns (whose keys must be exactly str)."""
        self.emit(recordable([ts, str(kind), device, pasid, cpu, pid, comm, self.source, fields]))

    def fault_row(self, line: LogLine, device: str | None, pasid: int | None, **fields: Any) -> Row:
        """A fault's row, not yet appended: the parser may still add context lines to its `raw`."""
        if None in fields.values():
            for k in [k for k, v in fields.items() if v is None]:
                del fields[k]
        fields["raw"] = line.text.rstrip("\r\n")
        return [line.ts, FAULT, device, pasid, None, None, None, self.source, fields]

    def overflow(self, line: LogLine, device: str | None, vendor: str, name: str, store: str, lost: str) -> None:
        """An IOMMU's event store filled up (SMMU queues, AMD logs): a fault on the IOMMU saying what is missing."""
        self.emit(self.fault_row(line, device, None, vendor=vendor, access="unknown",
                                 reason=f"{name} overflow: the {store} filled up and {lost}; what follows is "
                                        "incomplete"))

    def emit(self, row: Row) -> None:
        device = row[R_DEVICE]
        if self.boot is not None:
            self.move(row)
        self._append(row)
        stats = self.stats
        stats.events += 1
        space = row[R_FIELDS].get("pasid_space")
        if space is not None and row[R_PASID] is not None:
            stats.pasid_spaces.setdefault(space, set()).add((row[R_DEVICE], row[R_PASID]))
        vendor = row[R_FIELDS].get("vendor")
        if vendor is not None:
            by_vendor = stats.by_vendor
            by_vendor[vendor] = by_vendor.get(vendor, 0) + 1
            self.last_device[vendor] = device

    def move(self, row: Row) -> None:
        """Put a later boot's row on the timeline and its machine, its device named apart (see `start_boot`)."""
        assert self.boot is not None
        number, offset, prefix = self.boot
        row[R_TS] += offset
        if row[R_DEVICE] is not None:
            row[R_DEVICE] = prefix + row[R_DEVICE]
        row[R_MACHINE:] = [number]

    def device(self, name: str | None, driver: str | None = None) -> None:
        """Note a device (and its driver when the log names it) for the recording's device table."""
        if self.boot is not None and name is not None:
            name = self.boot[2] + name
        if name is None or (name in self._drivers and (driver is None or self._drivers[name] is not None)):
            return
        self._drivers[name] = driver
        self.writer.add_device(DeviceInfo(name, driver=driver))


class Parser:
    """A vendor's line parser. Its `RULES` say which lines it reads; a record spread over several lines stays `open`
    and receives the following lines through `more` until one does not belong, then `close` emits it. While
    `greedy` the record needs the very next line whatever it holds (a split printk, a dump's bare words);
    otherwise only the next line that carries an IOMMU word is offered (dumps and details do carry one). A line
    is offered to the rules only once no record is open: the importer closes the open one first."""

    vendor = "generic"
    open = False
    greedy = False
    # Set by `more` when the line it took is its record's own but damaged past reading (a dump's word with a byte
    # garbled): the importer counts that line as not understood, and clears this
    garbled = False
    # (a word the line must hold, the pattern that reads it, the method that takes the match and says whether it
    # did): the kernel log importer tries every parser's rules in order
    RULES: tuple[tuple[str, re.Pattern[str], str], ...] = ()

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def more(self, line: LogLine) -> bool:
        return False

    def more_raw(self, text: str) -> bool:
        """A cheap first look at the next line of a greedy record, before its prefixes are taken apart."""
        return False

    def close(self) -> None:
        self.open = False


class PendingParser(Parser):
    """A parser whose record may be followed by context lines: the row waits in `pending` until closed."""

    pending: list[Any] | None = None
    # Lines that belong to the pending record wherever they match (a page-table walk, a register dump): kept in
    # its raw text. Parsers whose context lines carry meaning override `more` instead.
    CONTEXT: ClassVar[re.Pattern[str] | None] = None

    def hold(self, row: Row) -> None:
        self.pending = row
        self.open = True

    def more(self, line: LogLine) -> bool:
        if self.pending is not None and self.CONTEXT is not None and self.CONTEXT.search(line.msg) is not None:
            append_raw(self.pending, line)
            return True
        return False

    def close(self) -> None:
        if self.pending is not None:
            self.sink.emit(self.pending)
            self.pending = None
        self.open = False


def recordable(row: Row) -> Row:
    """`row`, unless a number in it is wider than a recording holds: then OverflowError, and the line that gave it is
    not understood (no kernel prints such a number). Fault rows need no check: the vendor patterns read at most 16
    hex digits."""
    for values in (row[:R_FIELDS], row[R_FIELDS].values()):
        for v in values:
            if type(v) is int and v not in RECORDABLE:
                raise OverflowError(f"{v:#x} is wider than 64 bits")
    return row


def may_hold(msg: str, words: tuple[str, ...]) -> bool:
    """Whether `msg` may match a case-blind pattern each of whose matches holds one of `words` (in lower case). Looking
    for the words in an ASCII message is many times quicker than the case-blind search that most messages fail; a
    non-ASCII one always may, since such a pattern also matches other letters ("ſ" for "s")."""
    if not msg.isascii():
        return True
    low = msg.lower()
    for word in words:  # noqa: SIM110 - quicker than any() on this hot path
        if word in low:
            return True
    return False


def append_raw(row: list[Any], line: LogLine) -> None:
    """Keep a context line (a dump, a decoded detail) with the fault it belongs to."""
    fields = row[R_FIELDS]
    fields["raw"] = f"{fields.get('raw', '')}\n{line.text.rstrip()}"


class TextImporter:
    """A text format's importer: a block scanner hands it the lines that hold one of its ANCHORS (and the lines an
    open record asks for). A paste can mix formats - dmesg lines amid trace lines - so the other format's importer
    rides along as the guest: this importer reads each line first, and a line it cannot read goes to the guest when
    the guest `owns` it (on this slow path only: the lines it reads cost no more). The guest's lines that ANCHORS
    already finds are always read so; GUEST_ANCHORS, which find the rest (and more lines that are neither's), are
    scanned for only when the input's first lines showed both formats (as a paste's do).
    """

    ANCHORS: ClassVar[tuple[bytes, ...]] = ()
    GUEST_ANCHORS: ClassVar[tuple[bytes, ...]] = ()  # what finds the guest's lines that ANCHORS does not

    def __init__(self, sink: Sink, stats: ImportStats) -> None:
        self.sink = sink
        self.stats = stats
        self.guest: TextImporter | None = None
        self.scanner = BlockScanner(self.ANCHORS, self.line)

    def take_along(self, guest: TextImporter, scan_for_guest: bool) -> None:
        """Read `guest`'s lines too: one scanner feeds this importer, over GUEST_ANCHORS as well if `scan_for_guest`."""
        self.guest = guest
        anchors = self.ANCHORS + self.GUEST_ANCHORS if scan_for_guest else self.ANCHORS
        self.scanner = guest.scanner = BlockScanner(anchors, self.line)

    def finish(self) -> None:
        if self.guest is not None:
            self.guest.finish()
        self.stats.lines = self.scanner.lines

    def line(self, block: bytes, start: int, end: int, candidate: bool) -> bool:
        """Read `block[start:end]`; returns whether the record it leaves open wants the very next line too."""
        raise NotImplementedError

    def owns(self, text: str) -> bool:
        """Is this line of the importer's format (asked by a host importer of the line it could not read)?"""
        raise NotImplementedError

    def hand_over(self, block: bytes, start: int, end: int, candidate: bool, text: str) -> bool | None:
        """The guest's reading of a line this importer could not read; None when the guest does not own it."""
        if self.guest is None or not self.guest.owns(text):
            return None
        return self.guest.line(block, start, end, candidate)
