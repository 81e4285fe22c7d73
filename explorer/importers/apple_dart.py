"""Apple DART faults (M1/M2 Macs), drivers/iommu/apple-dart.c apple_dart_irq() (5.15) and its t8020/t8110
handlers (6.1 on), all printing one line:

    apple-dart 382f00000.iommu: translation fault: status:0x1001 stream:0 code:0x1 (READ FAULT) at 0x3fff0000

The device is the DART and the stream (one per master behind it).
"""

from __future__ import annotations

import re

from .core import LogLine, Parser

_FAULT = re.compile(r"(?<![\w.\-])(?P<dart>[\w.\-@]+): translation fault: status:0x(?P<status>[0-9a-fA-F]+) "
                    r"stream:(?P<stream>\d+) code:0x(?P<code>[0-9a-fA-F]+) \((?P<name>[^)]*)\) "
                    r"at 0x(?P<addr>[0-9a-fA-F]{1,16})")
_MEANING = {"READ FAULT": "the mapping forbids reading", "WRITE FAULT": "the mapping forbids writing",
            "NO PTE FOR IOVA": "the address is not mapped (no page table entry)",
            "NO PMD FOR IOVA": "a whole region around the address is unmapped (no second-level table)",
            "NO PGD FOR IOVA": "a whole region around the address is unmapped (no top-level table)",
            "NO TTBR FOR IOVA": "the stream has no page table at all: its device was never attached to a domain"}


class AppleDart(Parser):
    vendor = "apple-dart"
    RULES = (("translation fault: status:", _FAULT, "_fault"),)

    def _fault(self, line: LogLine, m: re.Match[str]) -> bool:
        device = f"{m['dart']}/stream={m['stream']}"
        name = m["name"]
        access = "read" if name == "READ FAULT" else "write" if name == "WRITE FAULT" else "unknown"
        reason = f"DART {name}: {_MEANING.get(name, 'a fault code this tool does not know')}"
        self.sink.emit(self.sink.fault_row(line, device, None, addr=int(m["addr"], 16), code=int(m["code"], 16),
                                           flags=int(m["status"], 16), vendor=self.vendor, access=access,
                                           reason=reason))
        self.sink.device(device)
        return True
