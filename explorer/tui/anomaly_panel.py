"""The anomalies panel: every finding in time order, the one at the cursor highlighted."""

from __future__ import annotations

import bisect

from rich.text import Text

from ..index import RecordingIndex
from ..simulator.checks import Severity, fmt_ns
from .panel import Panel

_COLOURS = {Severity.ERROR: "#d03c3c", Severity.WARNING: "#c88a00", Severity.UNCERTAIN: "#808080"}
WINDOW = 60  # findings listed around the cursor


class AnomalyPanel(Panel):
    TITLE = "anomalies"

    def show_anomalies(self, index: RecordingIndex, cursor: int, current: int | None) -> None:
        found = index.anomalies
        self.border_title = f"anomalies ({len(found):,})"
        if not found:
            self.set_body(Text("No anomalies: every invariant held.", style="dim"))
            return
        at = bisect.bisect_right([a.ts_ns for a in found], cursor) - 1 if current is None else current
        lo = max(0, at - WINDOW // 2)
        text = Text()
        for n, a in enumerate(found[lo:lo + WINDOW], lo):
            where = " ".join(x for x in (a.device, None if a.pasid is None else f"PASID {a.pasid}") if x)
            line = f"{'▶' if n == at else ' '} +{fmt_ns(a.ts_ns - index.start_ns)} {a.severity}: {a.title} {where}\n"
            text.append(line, style=_COLOURS.get(a.severity, "") + (" bold reverse" if n == at else ""))
        if lo + WINDOW < len(found):
            text.append(f"  … {len(found) - lo - WINDOW:,} more (n / N jump)", style="dim")
        self.set_body(text)
