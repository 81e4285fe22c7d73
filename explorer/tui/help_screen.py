"""The `?` screen: every key, the glyph legend and the filter syntax, generated from the app's own tables."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen

from .filters import FILTER_HELP
from .glyphs import MARKS
from .spans import SPAN_NAMES


def key_table(bindings: list[Binding]) -> str:
    """Every described binding as a Markdown table: the help screen shows it, and README.md carries it (a test
    keeps README's copy equal to this, so no key goes unlisted)."""
    rows = "\n".join(f"| `{b.key_display or b.key}` | {b.description} |" for b in bindings if b.description)
    return f"| key | action |\n|---|---|\n{rows}"


def help_markdown(bindings: list[Binding]) -> str:
    keys = key_table(bindings)
    marks = "\n".join(f"| `{m.glyph}` | {m.meaning} |" for m in MARKS.values())
    bars = "\n".join(f"- {name}" for name in SPAN_NAMES)
    return f"""# PASID Explorer

A PASID comes from the kernel's **allocator** (SVA: a process's first bind allocates its mm's one PASID, later
binds reuse it; drivers share the IDA) or from **user space** (a VMM attaches the guest's own number through
iommufd/VFIO, 6.15+). Faults, page-request groups and responses hang off a *(device, PASID)* pair: each device
row opens into one row per PASID; the allocator row opens into one row per PASID number with its lifetime.

## Keys

{keys}

Perfetto's keys work too: `w`/`s` zoom in and out, `a`/`d` pan. `s` used to search the events' text: search is
`f` now, and `S` still finds the next match.

Markers (as in KernelShark): `A` and `B` put marker A or B at the cursor, drawn on the axis and down every row;
the status line shows the time from A to B (Δ), and the **range** panel counts what lies between them (else in
the visible window): events per kind, faults per device and PASID, and each device's page-request latency (first
request to response: p50, p99, max and a histogram). They stay where they are through seeks and zooms; `x` clears
them.

A big recording opens at once on its first events: the rest is indexed behind the first screen, the status
line saying how far it got, and the model replays it after; `k` stops the indexing, keeping what it has read.

Mouse: click a mark to select the event drawn there (an `!`: its anomaly, explained), a row to select it; the
wheel zooms around the pointer. Drag over a panel's text (or double-click it) to select it; `ctrl+c` copies it.
`ctrl+p` opens the command palette (every action is there too).

## Marks

| glyph | meaning |
|---|---|
{marks}

A cell shows the most telling kind among its events; a cell of DMA map traffic shows how many events it holds
with a bar (`▁` few … `█` many). An `!` on the time axis marks an anomaly at that time on any row, even one
scrolled out of view. The status line under the timeline counts the anomalies and the events in the cursor's cell.

## Bars (background)

{bars}

## Filter (`/`)

{FILTER_HELP}. Example: `dev:6a:01 kind:page_request,page_response`. Escape clears it.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: round $accent; background: $surface; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close help")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self._markdown = help_markdown(bindings)

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # here: it brings Pygments, a tenth of a second of start-up

        with VerticalScroll():
            yield Markdown(self._markdown)

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(result)
