"""Which format an input is, judged from its first lines; what those lines say about clock and host; and whether
the input is text at all."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from .ftrace import KEYWORDS as TRACE_KEYWORDS
from .ftrace import trace_match
from .kernel_log import KEYWORDS as LOG_KEYWORDS
from .kernel_log import host_facts
from .prefix import split_line

TRACE_DAT_MAGIC = b"\x17\x08Dtracing"
FORMATS = ("kernel-log", "ftrace", "trace-dat")
SNIFF_LINES = 4000
_TRACE_HEADER = re.compile(r"^(?:# tracer: |cpus=\d+$|CPU:?\d+ \[|version = \d)")
_ICONV = "iconv -f UTF-16 -t UTF-8"
# (magic, what it is, the tool that turns it back into text)
_MAGIC = ((b"\x1f\x8b", "compressed (gzip)", "zcat"), (b"\xfd7zXZ\x00", "compressed (xz)", "xzcat"),
          (b"\x28\xb5\x2f\xfd", "compressed (zstd)", "zstdcat"), (b"BZh", "compressed (bzip2)", "bzcat"),
          (b"\xff\xfe", "UTF-16 text", _ICONV), (b"\xfe\xff", "UTF-16 text", _ICONV),
          (b"\x7fELF", "an executable (ELF), not a text log", None))
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\ufffd]")  # control characters (not tabs, breaks, ESC)
BINARY_SHARE = 0.1  # more of the sample than this not text: binary


@dataclass(slots=True)
class Sniff:
    """What the first lines tell: the likely format, evidence for each, the clock, host facts, first lines."""

    format: str | None
    evidence: dict[str, int]
    clock: str
    host: dict[str, str] = field(default_factory=dict)
    first_lines: list[str] = field(default_factory=list)
    year: int | None = None


def sniff(head: bytes) -> Sniff:
    """Score a prefix of the input for each text format (trace.dat is told by its magic)."""
    if head.startswith(TRACE_DAT_MAGIC):
        return Sniff("trace-dat", {"trace-dat": 1}, "kernel")
    text = head.decode("utf-8", "replace")
    lines = text.splitlines()[:SNIFF_LINES]
    if len(head) >= 1 << 16 and lines and not head.endswith(b"\n"):
        lines = lines[:-1]  # a line cut by the sample's end
    clocks: Counter[str] = Counter()
    trace = log = trace_iommu = log_iommu = 0
    host: dict[str, str] = {}
    year = None
    for line in lines:
        raw = line.encode("utf-8", "replace")
        if trace_match(line) or _TRACE_HEADER.match(line):
            trace += 1
            trace_iommu += TRACE_KEYWORDS.search(raw) is not None
            continue
        sp = split_line(line)
        stamped = sp.mono_ns is not None or sp.wall_ns is not None
        if sp.mono_ns is not None:
            clocks["kernel"] += 1
        elif sp.wall_ns is not None:
            clocks["wall"] += 1
        iommu = LOG_KEYWORDS.search(raw) is not None
        log += stamped or iommu
        log_iommu += iommu
        for k, v in host_facts(sp.msg).items():
            host.setdefault(k, v)
        if sp.host and "hostname" not in host:
            host["hostname"] = sp.host
        m = re.search(r"\b(19|20)\d\d(?=[-\] T])", line[:40])
        if year is None and m is not None and sp.wall_ns is not None:
            year = int(m[0])
    evidence = {"kernel-log": log, "ftrace": trace}
    # What decides is where the IOMMU lines are: bug reports mix dmesg lines and trace lines freely.
    fmt = None
    if trace_iommu or log_iommu:
        fmt = "ftrace" if trace_iommu >= log_iommu else "kernel-log"
    elif trace or log:
        fmt = "ftrace" if trace > log else "kernel-log"
    clock = "kernel" if fmt == "ftrace" else (clocks.most_common(1)[0][0] if clocks else "line")
    return Sniff(fmt, evidence, clock, host, [ln[:200] for ln in lines[:5]], year)


def not_text(head: bytes) -> tuple[str, str | None] | None:
    """(what the input is, the tool that makes text of it) when its first bytes are not a text log, else None.
    NUL bytes are left out of the count: a syslog file keeps the zeroed blocks a crash left in it."""
    for magic, what, tool in _MAGIC:
        if head.startswith(magic):
            return what, tool
    text = head.replace(b"\x00", b"").decode("utf-8", "replace")
    if len(_NOT_TEXT.findall(text)) > BINARY_SHARE * len(text):
        return "binary, not a text log", None
    return None
