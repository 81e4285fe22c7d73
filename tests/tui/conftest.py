"""Helpers for driving the explorer with Textual's Pilot from plain (synchronous) pytest tests."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.widget import Widget

from explorer.index import RecordingIndex
from explorer.loading import open_index
from explorer.tui.app import ExplorerApp
from explorer.tui.panel import Panel

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((ROOT / "recordings").glob("0*.pasidrec"))
_INDEXES: dict[str, RecordingIndex] = {}


def index_of(name: str) -> RecordingIndex:
    """A bundled recording's index by name prefix ("06" -> 06-buggy-driver), opened once per session."""
    path = next(p for p in RECORDINGS if p.name.startswith(name))
    if path.name not in _INDEXES:
        _INDEXES[path.name] = open_index(path)
    return _INDEXES[path.name]


def drive(app: ExplorerApp, body: Callable[[Any], Awaitable[None]], size: tuple[int, int] = (160, 48)) -> None:
    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(run())


async def settle(pilot: Any, ready: Callable[[], bool], timeout: float = 30.0) -> None:
    """Pause until `ready()` holds: parts of the first screen (the footer's keys) are drawn a refresh or two
    after it, later on a loaded machine than one pause allows."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the screen never got there"
        await pilot.pause(0.05)


def panel_text(app: ExplorerApp, name: str) -> str:
    return app.query_one(f"#{name}", Panel).text


def screen_lines(app: ExplorerApp) -> list[str]:
    """The whole screen as a user sees it, one string per line (composited as for a snapshot)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text().splitlines()


def region_lines(app: ExplorerApp, widget: Widget) -> list[str]:
    """The lines of the screen inside `widget`'s region: what of it is visible."""
    r = widget.region
    return [line[r.x:r.right] for line in screen_lines(app)[r.y:r.bottom]]
