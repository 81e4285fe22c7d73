"""The event panel: the selected event's fields and a plain-language account of what happened."""

from __future__ import annotations

from rich.text import Text

from ..explain import explain
from ..index import RecordingIndex
from ..simulator.checks import fmt_ns
from .panel import Panel, columns

_ROLE_STYLES = {"ANOMALY": "bold #d03c3c", "EVIDENCE": "#c88a00"}


class EventPanel(Panel):
    TITLE = "event"

    def show_event(self, index: RecordingIndex, i: int | None, where: str) -> None:
        if i is None:
            self.set_body(Text(f"No event at or before the cursor on {where}. Use ] and [ to step through this "
                               "row's events, or . and , through all of them.", style="dim"))
            return
        self.set_body(render_event(index, i))


def render_event(index: RecordingIndex, i: int) -> Text:
    ev = index.event(i)
    account = explain(index, i)
    head = Text(f"#{i} +{fmt_ns(ev.ts_ns - index.start_ns)}  ", style="dim")
    head.append(account.headline, style="bold")
    fields = columns([(k, _value(k, v)) for k, v in ev.as_dict().items() if v not in (None, "", {}) and k != "ts_ns"],
                     indent="  ")
    fields.stylize("dim")
    paras = [Text(p, style=_ROLE_STYLES.get(p.split(" ", 1)[0], "")) for p in account.paragraphs]
    fields.rstrip()
    return Text("\n").join([head, *paras, fields])  # the account first: on a small screen it is what fits


def _value(key: str, v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and key in ("addr", "iova", "paddr", "domain", "cmd", "flags",
                                                                   "handle", "old_domain"):
        return f"{v:#x}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(k, x)}" for k, x in v.items())
    return str(v)
