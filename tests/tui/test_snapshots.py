"""Screens as a user sees them: each layout at 80x24 and 160x48, an anomaly selected, the help screen, the A/B
markers with the range panel (SVG snapshots; regenerate deliberately with `pytest tests/tui --snapshot-update` and
review the diff)."""

from __future__ import annotations

import pytest

from explorer.tui.app import ExplorerApp

from .conftest import index_of

SIZES = [(80, 24), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("layout", ["debug", "teaching", "compact"])
def test_layout_with_the_first_anomaly_selected(snap_compare, layout: str, size: tuple[int, int]) -> None:
    app = ExplorerApp(index_of("06"), layout=layout)
    assert snap_compare(app, press=["n"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_opening_screen_of_a_guest_pasid_scenario(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(ExplorerApp(index_of("03"), layout="teaching"), terminal_size=size)


def test_help_screen(snap_compare) -> None:
    assert snap_compare(ExplorerApp(index_of("01"), layout="debug"), press=["question_mark"],
                        terminal_size=(160, 48))


def test_light_theme_filtered(snap_compare) -> None:
    assert snap_compare(ExplorerApp(index_of("04"), layout="debug"),
                        press=["t", "slash", *"kind:page_request,page_response", "enter"], terminal_size=(160, 48))


def test_range_panel_between_markers(snap_compare) -> None:
    """A and B set, the cursor past B: both drawn on the axis and down the rows, Δ in the status line, and the
    range panel's counts and latency histogram between them."""
    assert snap_compare(ExplorerApp(index_of("04"), layout="debug"),
                        press=["home", *["right"] * 5, "A", *["right"] * 30, "B", "right"], terminal_size=(160, 48))
