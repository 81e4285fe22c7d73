"""The event panel: the selected event's fields and a plain-language account of what happened; after a jump to
an anomaly, that anomaly first, then the evidence event."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text

from ..explain import anomaly_text, explain
from ..index import RecordingIndex
from ..intervals import IntervalKind
from ..simulator import Anomaly, SimState
from ..text import line
from ..units import fmt_ns
from .palette import SEVERITY_INK, ink
from .panel import Panel, PanelText, columns

if TYPE_CHECKING:
    from .session import Session

_ROLE_INK = {"ANOMALY": "red", "EVIDENCE": "amber"}


class EventPanel(Panel):
    NAME = TITLE = "event"
    DOC = "the selected event's fields and what it means"

    def depends_on(self, s: Session) -> tuple[object, ...]:
        i, index = s.selected_event, s.index
        progress = None if i is None or index.covers(int(index.ts[i])) else index.modelled
        return (i, s.shown_anomaly, s.row.key if s.row else None, index.n, progress, index.findings_seen,
                s.intervals_ready)

    def fill(self, s: Session) -> None:
        self.show_event(s.index, s.selected_event, s.row.label if s.row else "this row", s.current_anomaly,
                        s.state_at, s.intervals_ready)

    def show_event(self, index: RecordingIndex, i: int | None, where: str, anomaly: int | None = None,
                   state_at: Callable[[int], SimState] | None = None, intervals: bool = True) -> None:
        """Show event `i`; with `anomaly` (an index into index.anomalies), that finding above it. `state_at`: see
        `explain`; `intervals`: see `render_event`."""
        dark = self.dark
        body = [] if anomaly is None else [render_anomaly(index, anomaly, dark)]
        if i is not None:
            body.append(render_event(index, i, dark, index.anomalies[anomaly] if anomaly is not None else None,
                                     state_at, intervals))
        elif anomaly is None:
            body.append(PanelText(f"No event at or before the cursor on {where}. Use ] and [ to step through this "
                                  "row's events, or . and , through all of them.", style="dim"))
        self.set_body(PanelText("\n").join(body))


def render_anomaly(index: RecordingIndex, n: int, dark: bool) -> Text:
    a = index.anomalies[n]
    head = PanelText(f"anomaly {n + 1} of {len(index.anomalies)} +{fmt_ns(a.ts_ns - index.start_ns)}  ", style="dim")
    head.append(line(a.title), style="bold")
    why = PanelText(anomaly_text(a, index), style=f"bold {ink(SEVERITY_INK.get(a.severity, 'red'), dark)}")
    parts = [head, why] + ([PanelText("Its evidence at or before that time:", style="dim")] if a.evidence else [])
    return PanelText("\n").join(parts)


def render_event(index: RecordingIndex, i: int, dark: bool, shown: Anomaly | None = None,
                 state_at: Callable[[int], SimState] | None = None, intervals: bool = True) -> Text:
    """Event `i` explained; the account of `shown`, already on screen above it, is left out. With `intervals`
    False, what it opened or closed is left out too (the explorer's worker is still looking those up)."""
    ev = index.event(i)
    account = explain(index, i, shown, state_at)
    head = PanelText(f"#{i} +{fmt_ns(ev.ts_ns - index.start_ns)}  ", style="dim")
    head.append(line(account.headline), style="bold")
    fields = columns([(k, _value(k, v)) for k, v in ev.as_dict().items() if v not in (None, "", {}) and k != "ts_ns"],
                     indent="  ")
    fields.stylize("dim")
    paras = [PanelText(p, style=_role_style(p, dark)) for p in account.paragraphs]
    spans = [PanelText(line(s), style="dim") for s in (interval_lines(index, i) if intervals else [])]
    fields.rstrip()
    return PanelText("\n").join([head, *paras, *spans, fields])  # the account first: on a small screen it fits


_NOUN = {IntervalKind.LIFETIME: "PASID {pasid}'s lifetime", IntervalKind.ATTACHMENT: "{device} PASID {pasid}'s "
         "attachment", IntervalKind.BIND: "the SVA bind of {device}", IntervalKind.GROUP: "PRG {prg} on {device}"}


def interval_lines(index: RecordingIndex, i: int) -> list[str]:
    """What the model opened or closed at event `i` (its intervals, with the event at the other end)."""
    if not index.model_done:
        return []  # the store is still being filled by the model's worker
    out = []
    for iv in index.intervals.by_event(i):
        noun = _NOUN[iv.kind].format(device=iv.device, pasid=iv.pasid, prg=getattr(iv.record, "prg", None))
        if iv.open_idx == i:
            end = "still open at the end" if iv.end_ns is None else \
                f"until {'#' + str(iv.close_idx) if iv.close_idx is not None and iv.close_idx >= 0 else 'the model'}" \
                f" {fmt_ns(iv.end_ns - iv.start_ns)} later" + (" (replaced)" if iv.replaced else "")
            out.append(f"opens {noun}, {end}")
        else:
            assert iv.end_ns is not None
            since = f"#{iv.open_idx}" if iv.open_idx >= 0 else "the model's inference"
            out.append(f"closes {noun}, open since {since} {fmt_ns(iv.end_ns - iv.start_ns)} earlier"
                       + (" (replaced)" if iv.replaced else ""))
    return out


def _role_style(paragraph: str, dark: bool) -> str:
    role = _ROLE_INK.get(paragraph.split(" ", 1)[0])
    return "" if role is None else f"{'bold ' if role == 'red' else ''}{ink(role, dark)}"


def _value(key: str, v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and key in ("addr", "iova", "paddr", "domain", "cmd", "flags",
                                                                   "handle", "old_domain"):
        return f"{v:#x}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(k, x)}" for k, x in v.items())
    return str(v)
