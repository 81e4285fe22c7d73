"""The kernel log importer: dmesg, dmesg -T, journalctl -k (default, -o short-monotonic, ISO), syslog files and
logs pasted into bug reports. Each IOMMU fault line becomes a `fault` event; the vendor parsers decide which.

Lines that come from an IOMMU driver and mention a fault, an error or an event, but match no known format, are
counted and sampled as "not understood" (`info` lists them); other lines, IOMMU chatter at boot included, are
counted as ignored. "N callbacks suppressed" lines keep the count of faults the kernel's rate limit folded away.
Trace lines pasted among the dmesg lines go to the ftrace importer (see core.TextImporter).
"""

from __future__ import annotations

import re
from functools import partial

from ..events import Kind
from .amd_vi import AmdVi
from .amdgpu import AmdGpu
from .apple_dart import AppleDart
from .arm_smmu import ArmSmmu
from .boots import BACK_NS, NEAR_ZERO_NS, Boot, next_boot
from .core import ImportStats, LogLine, Parser, Sink, TextImporter, may_hold
from .exynos import Exynos
from .intel_dmar import IntelDmar
from .ipmmu import Ipmmu
from .mediatek import MediaTek
from .msm_gpu import MsmGpu
from .page_requests import PageRequests
from .prefix import YearGuess, split_parts
from .rockchip import Rockchip
from .scan import keyword_pattern
from .xen import XenVtd

LINE_NS = 1_000_000  # a log without any timestamp: one millisecond per line, so order survives

# Words one of which every line an IOMMU driver prints carries (the rest of a multi-line record reaches its parser
# because the parser holds the record open). "iommu" also catches other IOMMUs' fault lines, counted as not
# understood rather than missed; "IOMMU" the 2.6-era "AMD IOMMU:" lines (and every iommu tracepoint's line, for a
# pasted trace). "smmu" also finds Exynos ("sysmmu") lines; "ipmmu" Renesas ones and "SMMUv3" Xen's (in the passes
# of "mmu" and "MMU"); "fault" the first line of an amdgpu/radeon VM fault (the rest reach it while it is open),
# the Adreno GPU's and Apple DART's, in one pass.
IOMMU_ANCHORS = (b"DMAR", b"dmar", b"AMD-Vi", b"smmu", b"INTR-REMAP", b"suppressed", b"Linux version", b"iommu",
                 b"IOMMU", b"ipmmu", b"SMMUv3", b"iopf")
ANCHORS = (*IOMMU_ANCHORS, b"fault")
KEYWORDS = keyword_pattern(ANCHORS)
# ("Default domain type" and "Queued invalidation" are boot lines of every IOMMU host, not faults)
_FAULTISH = re.compile(r"(?<!de)fault|error|event|logged|received|overflow|unhandled|illegal|invalid(?!ation)|"
                       r"timed? ?out|Request device|\bblocked\b|\blost\b|\babort|\bstall(?:ed)?\b|GFSR", re.IGNORECASE)
_FAULTISH_WORDS = ("fault", "error", "event", "logged", "received", "overflow", "unhandled", "illegal", "invalid",
                   "out", "request device", "blocked", "lost", "abort", "stall", "gfsr")  # see core.may_hold
# A line the "fault" anchor found is counted as not understood only when a driver read here printed it (other
# drivers' and the CPU's page faults are not this tool's to list).
_DRIVER_WORDS = ("dmar", "amd-vi", "mmu", "intr-remap", "gpu", "dart", "drmn")
_STACK_FRAME = re.compile(r"^\??\s*[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+")  # " arm_smmu_context_fault+0x110/0x138"
# A line from a driver (rather than a reporter's prose around the log): "DMAR: ...", "arm-smmu-v3 x.y: ...".
_DRIVER_TAG = re.compile(r"^(?:(?:DMAR|dmar|DMAR-IR|AMD-Vi|INTR-REMAP|iommu|SMMU|smmu)\b|[\w.\-]+ [\w.:\-]+: )")
_SUPPRESSED = re.compile(r"(?P<func>\w+): (?P<n>\d{1,10}) callbacks suppressed")
_BANNER = re.compile(r"Linux version \S+ \(.*\).* #\d")  # init/version-timestamp.c's linux_banner
_PROGRAM_TAG = re.compile(r"[\w.-]+\[\d+\]: ")  # a syslog line's program[pid]: the kernel's lines have `kernel:`
_HOST = re.compile(r"^(?:Linux version (?P<kernel>\S+)|DMI: (?P<dmi>.+)|Command line: (?P<cmdline>.+))")


# The rate-limited functions of the other drivers read here (dev_err_ratelimited names its caller).
_SOC_SUPPRESSORS = {"gmc_v9_0_process_interrupt": "amdgpu", "gmc_v10_0_process_interrupt": "amdgpu",
                    "gmc_v11_0_process_interrupt": "amdgpu", "gmc_v12_0_process_interrupt": "amdgpu",
                    "mtk_iommu_isr": "mediatek", "ipmmu_domain_irq": "ipmmu", "apple_dart_irq": "apple-dart",
                    "apple_dart_t8020_irq": "apple-dart", "apple_dart_t8110_irq": "apple-dart",
                    "adreno_fault_handler": "msm-gpu", "a6xx_fault_handler": "msm-gpu",
                    "a5xx_fault_handler": "msm-gpu"}


def suppressing_vendor(func: str) -> str | None:
    """Which IOMMU driver a rate-limited function belongs to (None: not an IOMMU fault path)."""
    if func.startswith(("dmar", "intel_iommu", "prq_")):
        return "intel"
    if func.startswith("amd_iommu") or func == "iommu_print_event":
        return "amd"
    if func.startswith(("arm_smmu_context", "arm_smmu_global", "qcom_smmu", "qcom_iommu", "nvidia_smmu")):
        return "arm-smmu"
    if func.startswith("arm_smmu"):
        return "arm-smmu-v3"
    if func == "report_iommu_fault":
        return "generic"
    return _SOC_SUPPRESSORS.get(func)


def host_facts(msg: str) -> dict[str, str]:
    """Kernel release, machine and command line, from the lines every boot log starts with."""
    m = _HOST.match(msg)
    if m is None:
        return {}
    return {k: v.strip() for k, v in m.groupdict().items() if v}


class KernelLogImporter(TextImporter):
    """Feeds blocks of a kernel log through the vendor parsers."""

    format = "kernel-log"
    ANCHORS = ANCHORS
    # The one ftrace anchor that ANCHORS does not already catch: "IOMMU:" holds "IOMMU", and prq_report and
    # qi_submit lines name their "dmar" unit; PASID Explorer's own events need their word.
    GUEST_ANCHORS = (b"pasid_explorer",)

    def __init__(self, sink: Sink, stats: ImportStats, clock: str, years: YearGuess) -> None:
        super().__init__(sink, stats)
        self.clock = clock
        self.years = years
        self.parsers: list[Parser] = [AmdVi(sink), IntelDmar(sink), ArmSmmu(sink), AmdGpu(sink), XenVtd(sink),
                                      MediaTek(sink), Rockchip(sink), Exynos(sink), Ipmmu(sink), AppleDart(sink),
                                      MsmGpu(sink), PageRequests(sink)]
        # Every parser's rules in one list, in order: the first whose word the message holds, whose pattern matches
        # and whose method takes the match reads the line.
        self.rules = [(word, pattern, getattr(p, method), p) for p in self.parsers for word, pattern, method in p.RULES]
        self.open: Parser | None = None
        self.last_ts = 0
        self.boots: list[Boot] = []  # the boots after the log's first (boots.py)

    def finish(self) -> None:
        if self.open is not None:
            self.open.close()
            self.open = None
        for p in self.parsers:
            p.close()
        super().finish()

    def owns(self, text: str) -> bool:
        """A kernel log line: it carries a printk time, or a driver's tag (a paste's stamps may be cut away)."""
        mono, wall, _, msg = split_parts(text, self.years)
        return mono is not None or wall is not None or _DRIVER_TAG.match(msg) is not None

    # -- one line -------------------------------------------------------------------------------------------
    def line(self, block: bytes, start: int, end: int, candidate: bool) -> bool:
        """Read one line; returns whether the record it leaves open wants the very next line too."""
        text = block[start:end].decode("utf-8", "replace")
        stats = self.stats
        record = self.open
        if record is not None and record.greedy and record.more_raw(text):
            stats.parsed += 1
            return record.greedy
        mono, wall, _, msg = split_parts(text, self.years)
        clock = self.clock
        if clock == "kernel":
            ts = mono
        elif clock == "wall":
            ts = wall
        else:
            ts = self.scanner.line_no(start) * LINE_NS
        if ts is None:
            prev = self.scanner.previous_line(start)
            if prev is not None:
                prev_mono, prev_wall, _, _ = split_parts(prev.decode("utf-8", "replace"), self.years)
                ts = prev_mono if clock == "kernel" else prev_wall
            ts = self.last_ts if ts is None else ts
        prev = self.last_ts
        self.last_ts = ts
        line = LogLine(text, msg, ts)
        if record is not None:
            if record.more(line):
                if record.garbled:  # its own line, unreadable: sampled, not lost among the ignored lines
                    record.garbled = False
                    stats.not_understood(partial(self.scanner.line_no, start), text)
                else:
                    stats.parsed += 1
                if record.open:
                    return record.greedy
                self.open = None
                return False
            record.close()
            self.open = None
        if not candidate:
            return False
        if (ts < prev or msg[:1] == "L") and self._boot_starts(text, msg, ts, prev):
            banner = self._new_boot(start, msg, prev)
            if banner:
                stats.parsed += 1
                return False
        for word, pattern, take, parser in self.rules:
            if word in msg and (m := pattern.search(msg)) is not None and take(line, m):
                stats.parsed += 1
                if parser.open:
                    self.open = parser
                    return parser.greedy
                return False
        if "suppressed" in msg and (m := _SUPPRESSED.search(msg)) is not None:
            vendor = suppressing_vendor(m["func"])
            if vendor is not None:
                self._suppressed(line, vendor, int(m["n"]))
                stats.parsed += 1
                return False
        if msg[:1] in "LDC" and (facts := host_facts(msg)) and not stats.host.keys() >= facts.keys():
            for k, v in facts.items():
                stats.host.setdefault(k, v)
            stats.parsed += 1
            return False
        if (follow := self.hand_over(block, start, end, candidate, text)) is not None:
            return follow
        if may_hold(msg, _FAULTISH_WORDS) and _FAULTISH.search(msg) and not _STACK_FRAME.match(msg) and \
                (mono is not None or wall is not None or _DRIVER_TAG.match(msg)) and may_hold(msg, _DRIVER_WORDS):
            stats.not_understood(partial(self.scanner.line_no, start), text)
        return False

    def _boot_starts(self, text: str, msg: str, ts: int, prev: int) -> bool:
        """Whether this line starts another boot (see boots.py): its banner after the log's first lines (with stamps
        since boot, stamped before the line before it), or a stamp near zero long after the last. A banner is the
        kernel's own (linux_banner: `Linux version <release> (<builder>) ... #<build>`), not a program's line that
        quotes a version (`fwupd[812]: Linux version 6.8.0 detected`), nor a program logging /proc/version."""
        if msg.startswith("Linux version "):
            at = text.rfind(msg)
            return prev > 0 and (self.clock != "kernel" or ts < prev) and _BANNER.match(msg) is not None and \
                _PROGRAM_TAG.search(text[:max(at, 0)]) is None
        return self.clock == "kernel" and ts < NEAR_ZERO_NS and prev - ts >= BACK_NS

    def _new_boot(self, start: int, msg: str, prev: int) -> bool:
        """Close what the last boot left open and send the rows from here on to the new boot's machine; returns
        whether the line was the boot's banner (else it is read on as any line)."""
        for p in self.parsers:
            p.close()
        kernel = host_facts(msg).get("kernel")
        boot = next_boot(self.boots, self.scanner.line_no(start), kernel, prev, self.clock)
        self.boots.append(boot)
        self.sink.start_boot(boot.number, boot.offset_ns, boot.prefix)
        return kernel is not None

    def _suppressed(self, line: LogLine, vendor: str, n: int) -> None:
        self.stats.suppressed += n
        device = self.sink.last_device.get(vendor)
        who = f"shown on {device}, the last device this IOMMU reported" if device else "no device known yet"
        self.sink.row(Kind.FAULT, line.ts, device, None, {
            "vendor": vendor, "access": "unknown", "suppressed": n, "raw": line.text.rstrip(),
            "reason": f"{n} more fault messages were not printed: the kernel's rate limit folded them into this "
                      f"count (their devices were not printed; {who})"})
