"""Peel a kernel log line down to its time and message, whichever way it reached the user.

A printk line arrives wrapped in dmesg's `[   12.345678]`, `dmesg -T`'s ctime, `dmesg -H`'s minute stamps and
deltas, journalctl's syslog, ISO, full, unix or monotonic prefixes, a caller id, a facility tag, quote markers from
a mailing list reply, a bug tracker's indentation, or a paste's line numbers and list markers. `split_line` strips
all of those (in any of the orders they are stacked) and returns the kernel's relative time when printed, the wall
clock converted to nanoseconds since the epoch when printed, and the message.

Two forms carry less than a full time: `dmesg -H` prints the minute once (`[Mar 5 12:34]`) and then deltas from the
line before (`[  +0.000012]`), which are not summed here (a delta line has no time of its own, so it takes the
previous line's); journalctl's `-o short-full` names its zone by abbreviation, which is read as UTC unless numeric.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MON = "(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_HMS = r"(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:[.,](?P<frac>\d{1,9}))?"

_QUOTE = re.compile(r"(?:\s*[>|](?:\s|$))+")  # "> " replies, "| " commit-message samples
_SYSLOG = re.compile(rf"(?:<\d{{1,3}}>)?{_MON} {{1,2}}(?P<day>\d{{1,2}}) {_HMS} (?P<host>\S+) "
                     r"(?P<ident>[^\s:\[]+)(?:\[\d+\])?: ")
_ISO = re.compile(rf"(?P<y>\d{{4}})-(?P<mo>\d\d)-(?P<d>\d\d)[T ]{_HMS}(?P<tz>Z|[+-]\d\d:?\d\d)?\s+"
                  r"(?:(?P<host>\S+) (?P<ident>kernel|[^\s:\[]+)(?:\[\d+\])?: )?")
_CTIME = re.compile(rf"\[(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) )?{_MON} +(?P<day>\d{{1,2}}) {_HMS} (?P<y>\d{{4}})\]\s?")
_MONO = re.compile(r"\[\s*(?P<sec>\d{1,10})\.(?P<frac>\d{1,9})\]\s?")
_JOURNAL_HOST = re.compile(r"(?P<host>[\w.\-]+) kernel: ")
_CALLER = re.compile(r"\[\s*(?:[TC]\d+)?\]\s?")  # a caller id, or a stamp a reporter blanked out
_TAGS = re.compile(r"(?:<\d{1,3}>|(?:kern|user|daemon|syslog|auth|local\d)\s*:\s*"
                   r"(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s?|kernel:\s+)")
_VENDOR = re.compile(r"\[pid:\d+,cpu\d+,[^\]]*\]\s?")  # some vendor kernels tag every line with its task
_OFFSET_PIPE = re.compile(r"0x[0-9A-Fa-f]+ \|\s+(?P<sec>\d{1,10})\.(?P<frac>\d{1,9}):\s+")  # a log viewer's export
_RELTIME = re.compile(rf"\[{_MON} ?(?P<day>\d{{1,2}}) (?P<h>\d\d):(?P<mi>\d\d)\]\s?")  # dmesg -H: "%b%e %H:%M"
_RELDELTA = re.compile(r"\[\s*\+\d{1,10}\.\d{1,9}\]\s?")  # dmesg -H: "[  +0.000012]", since the line before
_DAYS = frozenset(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
_FULL = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<y>\d{{4}})-(?P<mo>\d\d)-(?P<d>\d\d) {_HMS}"
                   r"(?: (?P<tz>[+-]\d\d:?\d\d|[A-Z][A-Za-z]{1,5}))? (?P<host>\S+) (?P<ident>[^\s:\[]+)(?:\[\d+\])?: ")
_UNIX = re.compile(r"(?P<sec>\d{9,11})\.(?P<frac>\d{1,9}) (?P<host>\S+) (?P<ident>[^\s:\[]+)(?:\[\d+\])?: ")
# A paste's own prefix before a dmesg stamp: line numbers ("  1 ", "123: ", "L25: "), list markers, "dmesg: ", a
# backtick. Tried only on lines no known prefix gave a time.
_LEAD = re.compile(r"[^\[\]]{1,40}?(?=\[\s*\d{1,10}\.\d{1,9}\])")


@dataclass(slots=True)
class Split:
    """A line's parts: kernel-relative time, wall time (ns since the epoch), host, and the printk message."""

    mono_ns: int | None
    wall_ns: int | None
    host: str | None
    msg: str


def _frac_ns(frac: str | None) -> int:
    return int((frac or "0").ljust(9, "0")[:9])


def _tz_seconds(tz: str | None) -> int:
    if not tz or tz[0] not in "+-":
        return 0  # "Z", or a zone abbreviation (short-full's "UTC", "CEST"): read as UTC
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _wall(y: int, mon: int, day: int, m: re.Match[str]) -> int | None:
    """The stamp as ns since the epoch; seconds and fraction count as 0 where the form prints none (dmesg -H)."""
    parts = m.groupdict()
    try:
        secs = calendar.timegm((y, mon, day, int(m["h"]), int(m["mi"]), int(parts.get("s") or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not 1 <= mon <= 12 or not 1 <= day <= 31:
        return None
    return secs * 1_000_000_000 + _frac_ns(parts.get("frac"))


class YearGuess:
    """Syslog stamps carry no year: take one from the log itself or the file's date, and roll over at New Year."""

    def __init__(self, year: int) -> None:
        self.year = year
        self._last_month = 0

    def for_month(self, month: int) -> int:
        if self._last_month == 12 and month == 1:
            self.year += 1
        self._last_month = month
        return self.year


_FAST = re.compile(r"\[\s*(?P<sec>\d{1,10})\.(?P<frac>\d{1,9})\] ?(?=[^\[\s<k])(?P<msg>.*)", re.DOTALL)


def split_line(line: str, years: YearGuess | None = None) -> Split:
    """Strip every known prefix from `line`; what remains is the message the kernel printed."""
    return Split(*split_parts(line, years))


def split_parts(line: str, years: YearGuess | None = None) -> tuple[int | None, int | None, str | None, str]:
    """`split_line`'s parts as a plain tuple (mono_ns, wall_ns, host, msg), for the importer's hot path."""
    if line[:1] == "[" and (m := _FAST.match(line)) is not None:
        sec, frac, msg = m.groups()
        if " kernel: " not in msg[:80]:
            # The common case, plain dmesg: "[   12.345678] message" (no journal host, tag or caller id after it; a
            # line break left at the end goes with the message's blanks).
            return int(sec + frac.ljust(9, "0")), None, None, msg.strip()
    s = line.rstrip("\r\n")
    mono = wall = None
    host = None
    s = s.lstrip()
    if s[:1] in ">|" and (m := _QUOTE.match(s)):
        s = s[m.end():].lstrip()
    for _ in range(6):  # prefixes stack: syslog, then "kernel: ", then "[  12.3]", then a caller id...
        if not s:
            break
        c = s[0]
        if c == "[":
            if mono is None and (m := _MONO.match(s)):
                mono = int(m["sec"]) * 1_000_000_000 + _frac_ns(m["frac"])
                s = s[m.end():]
                if " kernel: " in s and (j := _JOURNAL_HOST.match(s)) is not None:
                    host = host or j["host"]
                    s = s[j.end():]
                continue
            if (m := _CALLER.match(s)) or (m := _VENDOR.match(s)) or (m := _RELDELTA.match(s)):
                s = s[m.end():]
                continue
            if wall is None and (m := _CTIME.match(s)):
                wall = _wall(int(m["y"]), MONTHS[m["mon"]], int(m["day"]), m)
                s = s[m.end():]
                continue
            if wall is None and (m := _RELTIME.match(s)):
                mon = MONTHS[m["mon"]]
                wall = _wall(years.for_month(mon) if years is not None else 1970, mon, int(m["day"]), m)
                s = s[m.end():]
                continue
            break
        if wall is None and (c == "<" or s[:3] in MONTHS) and (m := _SYSLOG.match(s)):
            mon = MONTHS[m["mon"]]
            year = years.for_month(mon) if years is not None else 1970
            wall = _wall(year, mon, int(m["day"]), m)
            host = m["host"]
            s = s[m.end():]
            continue
        if wall is None and mono is None and (c.isdigit() or s[:3] in _DAYS) and \
                (m := _ISO.match(s) or _FULL.match(s)):
            w = _wall(int(m["y"]), int(m["mo"]), int(m["d"]), m)
            wall = None if w is None else w - _tz_seconds(m["tz"]) * 1_000_000_000
            host = host or m["host"]
            s = s[m.end():]
            continue
        if wall is None and mono is None and c.isdigit() and (m := _UNIX.match(s)):
            wall = int(m["sec"]) * 1_000_000_000 + _frac_ns(m["frac"])
            host = m["host"]
            s = s[m.end():]
            continue
        if mono is None and c == "0" and (m := _OFFSET_PIPE.match(s)):
            mono = int(m["sec"]) * 1_000_000_000 + _frac_ns(m["frac"])
            s = s[m.end():]
            continue
        if (m := _TAGS.match(s)) is not None:
            s = s[m.end():]
            continue
        break
    if mono is None and wall is None and (m := _LEAD.match(s)) is not None:
        return _after_lead(s, m.end(), years)
    return mono, wall, host, s.strip()


def _after_lead(s: str, at: int, years: YearGuess | None) -> tuple[int | None, int | None, str | None, str]:
    """The line from its dmesg stamp on, a paste's prefix dropped (and the backtick closing a quoted one)."""
    rest = s[at:].rstrip()
    if s[:at].rstrip().endswith("`") and rest.endswith("`"):
        rest = rest[:-1]
    return split_parts(rest, years)
