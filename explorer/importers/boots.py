"""A log that spans reboots (a syslog file, `journalctl -k` without -b, dmesg outputs put one after another): each
boot after the first is kept as a machine of its own, so that its PASIDs are modelled apart and its events judged
by its own kernel's rules, and its times are moved after the previous boot's.

A boot begins with its `Linux version` line (start_kernel prints the banner first, at 0.000000) and its printk
stamps restart from zero: they are local_clock(), the time since that boot (kernel/printk/printk.c). A new boot is
therefore a `Linux version` line whose stamp is before the line's before it (or, with wall-clock or no stamps, any
`Linux version` line after the log's first lines), or, where the banner was lost, a stamp under NEAR_ZERO_NS after
one at least BACK_NS later. Stamps from different CPUs are out of order by far less than that, so a healthy boot's
log is never cut: a doubtful case is left whole.

The recording's header is written before the log is read, so its machine table is written by a second pass over
the recording, done only for a log of several boots (`keep_apart`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError
from ..machines import BOOT_GAP_NS, BOOT_ORDER, LOG_ORDER, MAX_MACHINES, Machine, qualified
from ..recording import Recording, RecordingWriter

NEAR_ZERO_NS = 5_000_000_000  # a stamp this early is the start of a boot...
BACK_NS = 60_000_000_000  # ...when the line before it was stamped at least this much later
BATCH = 4096  # rows copied at a time by the second pass


class TooManyBoots(ValueError):
    """More boots than a recording holds machines."""


@dataclass(frozen=True, slots=True)
class Boot:
    """A boot after the log's first: where it starts, its machine and the offset that puts it on the timeline."""

    line: int
    number: int  # its machine's number (the first boot is 0)
    kernel: str | None  # from its `Linux version` line (None: the banner was not in the log)
    offset_ns: int
    aligned_by: str  # BOOT_ORDER (stamps since boot, moved) or LOG_ORDER (the log's wall clock or line order)
    after_ns: int  # the stamp it restarted after (for a boot found by its stamps)

    @property
    def name(self) -> str:
        return f"boot-{self.number + 1}"

    @property
    def prefix(self) -> str:
        """What its devices' names start with (merge names a machine's devices so)."""
        return qualified(self.name, "")

    def footer(self) -> dict[str, Any]:
        """Its entry in the footer's "import" (`info --json` shows it)."""
        return {"line": self.line, "machine": self.name, "kernel": self.kernel, "offset_ns": self.offset_ns,
                "aligned_by": self.aligned_by}

    def describe(self) -> str:
        """The line `import` prints for it."""
        found = f"kernel {self.kernel}" if self.kernel else \
            f"no 'Linux version' line: its stamps restart after {self.after_ns / 1e9:.6f} s"
        times = f"its times placed after boot-{self.number}'s" if self.aligned_by == BOOT_ORDER else \
            "its times as the log prints them"
        return f"line {self.line:,}: another boot ({found}): kept as machine {self.name}, {times}"


def next_boot(boots: list[Boot], line: int, kernel: str | None, prev_ts: int, clock: str) -> Boot:
    """The boot that starts at `line`, after `boots` (the line before it was stamped `prev_ts`): with stamps since
    boot, its time zero is placed BOOT_GAP_NS after the previous boot's last stamp."""
    number = len(boots) + 1
    if number >= MAX_MACHINES:
        raise TooManyBoots(f"line {line:,}: more than {MAX_MACHINES} boots in one log (a recording holds at most "
                           f"{MAX_MACHINES} machines): import fewer at a time (journalctl -k -b N, or split the file)")
    if clock != "kernel":  # wall-clock or line-numbered times are one timeline already
        return Boot(line, number, kernel, 0, LOG_ORDER, prev_ts)
    before = boots[-1].offset_ns if boots else 0
    return Boot(line, number, kernel, before + prev_ts + BOOT_GAP_NS, BOOT_ORDER, prev_ts)


def keep_apart(dest: BinaryIO, path: str, boots: list[Boot], first_kernel: str | None) -> None:
    """Rewrite the complete recording in `dest` with a machine per boot in its header: the first boot's machine is
    the timeline's, with the first kernel; each later one's rows were moved and named by the sink as they were
    found."""
    dest.flush()
    if not stat.S_ISREG(os.fstat(dest.fileno()).st_mode):
        raise InputError(path, "", f"{boots[0].describe()}; a log of several boots is written with a machine per "
                                   "boot in the recording's header, so the output must be a regular file")
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "one-timeline.pasidrec"
        shutil.copyfile(dest.name, first)
        with Recording(first) as rec:
            head = rec.header
            host = {k: v for k, v in head.host.items() if k != "kernel"}
            if first_kernel:
                host["kernel"] = first_kernel
            extra: dict[str, Any] = {"source": head.source, "probes": head.probes}
            table = [Machine("boot-1", kernel=first_kernel, aligned_by="reference", error_ns=0),
                     *(Machine(b.name, kernel=b.kernel, offset_ns=b.offset_ns, aligned_by=b.aligned_by,
                               extra={**extra, "line": b.line}) for b in boots)]
            dest.seek(0)
            dest.truncate()
            writer = RecordingWriter(dest, replace(head, host=host, machines=table))
            for device in rec.devices:
                writer.add_device(device)
            batch: list[Any] = []
            for row in rec.iter_rows():
                batch.append(row)
                if len(batch) >= BATCH:
                    writer.extend_rows(batch)
                    batch = []
            writer.extend_rows(batch)
            footer = rec.footer or {}
            writer.close(footer.get("end_reason", "complete"), **{"import": footer.get("import", {})})
