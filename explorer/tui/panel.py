"""The frame every side panel shares: a bordered, scrollable box whose body the app replaces as the cursor moves."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static


class Panel(VerticalScroll):
    """A titled panel. Subclasses turn the model into a renderable; they never reach into other panels."""

    DEFAULT_CSS = """
    Panel { border: round $primary 50%; padding: 0 1; height: 1fr; }
    Panel:focus-within { border: round $accent; }
    Panel > Static { width: 1fr; }
    """
    TITLE = ""
    shown: tuple[object, ...] | None = None  # what the body was last filled from (the app skips equal refills)

    def compose(self) -> ComposeResult:
        yield Static(id="body")

    def on_mount(self) -> None:
        self.border_title = self.TITLE

    def set_body(self, text: Text) -> None:
        """Show `text`, as Textual's own Content: laid out natively, far cheaper than a Rich renderable."""
        self.query_one("#body", Static).update(Content.from_rich_text(text))

    @property
    def dark(self) -> bool:
        """Whether the app's theme is dark: panels pick their ink for it (palette.INK)."""
        return self.app.current_theme.dark

    @property
    def text(self) -> str:
        """What the panel shows, as plain text (for tests and for copying)."""
        content = self.query_one("#body", Static).visual
        return str(getattr(content, "plain", content))


def columns(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None, indent: str = "") -> Text:
    """Rows aligned in columns as plain Text: a Rich Table measures itself again on every layout pass, which costs
    more than the whole timeline frame; the last column is left free to wrap."""
    every = ([header] if header else []) + rows
    widths = [max(len(r[c]) for r in every) for c in range(len(every[0]) - 1)] if every else []
    out = Text()
    for n, r in enumerate(every):
        line = indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1]
        out.append(line.rstrip() + "\n", style="bold" if header and n == 0 else "")
    return out
