"""The anomalies panel: every finding in time order, the one at the cursor highlighted."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..index import RecordingIndex
from ..text import line
from ..units import fmt_ns
from .palette import SEVERITY_INK, ink
from .panel import Panel, PanelText

if TYPE_CHECKING:
    from .session import Session

WINDOW = 60  # findings listed around the cursor


class AnomalyPanel(Panel):
    NAME = TITLE = "anomalies"
    DOC = "every anomaly the checks found, the one at the cursor highlighted"

    def depends_on(self, s: Session) -> tuple[object, ...]:
        index = s.index
        found = len(index.anomalies)
        return (s.shown_anomaly, index.findings_seen, index.model_done,
                found and bisect.bisect_right(index.anomaly_times, s.cursor))

    def fill(self, s: Session) -> None:
        self.show_anomalies(s.index, s.cursor, s.current_anomaly)

    def show_anomalies(self, index: RecordingIndex, cursor: int, current: int | None) -> None:
        found = index.anomalies
        running = not index.model_done
        self.border_title = f"anomalies ({len(found):,}{' so far' if running else ''})"
        still = PanelText("The model is still replaying the recording: more may follow." if running else "",
                          style="dim")
        if not found:
            self.set_body(still if running else PanelText("No anomalies: every invariant held.", style="dim"))
            return
        at = bisect.bisect_right(index.anomaly_times, cursor) - 1 if current is None else current
        lo = max(0, at - WINDOW // 2)
        text = PanelText()
        for n, a in enumerate(found[lo:lo + WINDOW], lo):
            where = " ".join(x for x in (a.device, None if a.pasid is None else f"PASID {a.pasid}") if x)
            entry = line(f"{'▶' if n == at else ' '} +{fmt_ns(a.ts_ns - index.start_ns)} {a.severity}: {a.title} "
                         f"{where}")  # one line each, whatever the device's name holds
            text.append(entry + "\n", style=ink(SEVERITY_INK.get(a.severity, "red"), self.dark)
                        + (" bold reverse" if n == at else ""))
        if lo + WINDOW < len(found):
            text.append(f"  … {len(found) - lo - WINDOW:,} more (n / N jump)\n", style="dim")
        text.append_text(still)
        text.rstrip()
        self.set_body(text)
