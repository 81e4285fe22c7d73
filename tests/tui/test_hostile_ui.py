"""The explorer on inputs the audit of issue 16 crashed it with: an empty recording, a device listed without
events, times spanning all of int64; and a crash of the UI never exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_files import DEV, RAW_CONTROLS, write_crafted, write_injecting
from textual.events import Paste

from explorer.cli.main import main
from explorer.errors import INTERNAL_ERROR, ExplorerCrashed
from explorer.loading import open_index
from explorer.tui.app import ExplorerApp, run_explorer
from explorer.tui.plain_input import PlainInput
from explorer.tui.timeline import Timeline
from explorer.tui.timescale import Window

from .conftest import drive, panel_text, screen_lines

KEYS = ["enter", "down", "enter", "down", "enter", "right", "+", "+", "+", "-", "shift+right", "shift+left", "end",
        "home", "0", "]", "[", ".", ",", "n", "N", "m", "space", ">", ">", "space", "enter", "up", "enter"]


def press_all(app: ExplorerApp) -> tuple[list[str], Window]:
    """Every kind of key, then the screen and the time window they left."""
    shown: list[str] = []
    windows: list[Window] = []

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        for key in KEYS:
            await pilot.press(key)
            await pilot.pause()
        shown.extend(screen_lines(app))
        windows.append(app.query_one(Timeline).view.window)

    drive(app, body)
    return shown, windows[0]


def test_enter_on_rows_without_events_in_an_empty_recording(tmp_path: Path) -> None:
    path = write_crafted(tmp_path / "empty.pasidrec", [])
    screen, _ = press_all(ExplorerApp(open_index(path), layout="debug"))
    assert any(DEV in line for line in screen)  # the header's device is listed, with nothing to open


def test_enter_on_a_device_listed_without_events(tmp_path: Path) -> None:
    rows = [[1000, "pasid_alloc", None, 1, 0, 1, "a", "t", {"path": "iommufd"}]]
    press_all(ExplorerApp(open_index(write_crafted(tmp_path / "quiet.pasidrec", [rows])), layout="debug"))


def test_times_spanning_all_of_int64(tmp_path: Path) -> None:
    rows = [[0, "pasid_alloc", DEV, 1, 0, 1, "a", "t", {"path": "iommufd"}],
            [1, "fault", DEV, 1, 0, 1, "a", "t", {"addr": 1}],
            [(1 << 63) - 1, "pasid_free", None, 1, None, None, None, "t", {}]]
    app = ExplorerApp(open_index(write_crafted(tmp_path / "span.pasidrec", [rows])), layout="debug")
    screen, window = press_all(app)
    assert window.t0 < window.t1 <= 1 << 63 and any("PASID 1" in line for line in screen)


class _Broken(ExplorerApp):
    def on_mount(self) -> None:
        raise RuntimeError("a bug in the explorer")


def test_a_crash_of_the_explorer_is_an_internal_error_not_a_success(tmp_path: Path) -> None:
    index = open_index(write_crafted(tmp_path / "x.pasidrec", []))
    with pytest.raises(ExplorerCrashed):
        run_explorer(_Broken(index, layout="debug"), headless=True)


def test_an_internal_error_exits_70_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.cli.commands import info

    def broken(_args: object) -> int:
        raise KeyError("bug")

    monkeypatch.setattr(info, "run", broken)  # (each call of main registers the commands' run anew)
    assert main(["info", str(write_crafted(tmp_path / "x.pasidrec", []))]) == INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "report" in err


def test_a_strangers_text_shows_escaped_and_the_filter_finds_it_as_shown_or_raw(tmp_path: Path) -> None:
    """Process names, a device's name and driver, the titles and a marker carrying a window title (OSC 0), a
    screen clear, a clipboard write (OSC 52), a bell, a carriage return and markup: every panel, row label and the
    status line show them escaped (none dropped) and the markup as written; `/` finds a row by what the screen
    shows, by a part of the raw name or by the raw name pasted (which the box keeps escaped: Textual's Input would
    draw its ESC raw), and `f` an event by its escaped text."""
    app = ExplorerApp(open_index(write_injecting(tmp_path / "inject.pasidrec")), layout="teaching")
    screen: list[str] = []
    found: dict[str, list[str]] = {}
    briefs: list[str] = []
    drawn: list[str] = []

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("n")  # the double free: explained with its owners' text
        await pilot.pause()
        screen.extend(screen_lines(app))
        screen.append(panel_text(app, "event"))  # (scrolled past the panel's foot)
        for typed in ("pwned", "comm:\\x1b]0;pwned\\x07", "]0;pwn", "dev:\\x1b[2J", "bogus"):
            await pilot.press("slash", "ctrl+u", *typed, "enter")
            await pilot.pause()
            found[typed] = [r.label for r in app.session.rows]
        await pilot.press("slash", "ctrl+u")  # the raw name pasted (bracketed paste): kept escaped, still found
        box = app.query_one("#filter", PlainInput)
        box.post_message(Paste("comm:\x1b]0;pwned\x07"))
        await pilot.pause()
        drawn.append("".join(seg.text for seg in box.render_line(0)))
        await pilot.press("enter")
        await pilot.pause()
        found["pasted"] = [r.label for r in app.session.rows]
        await pilot.press("escape", "home", "f", *"\\x1b]52;c;", "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.session.selected_event is not None:
            briefs.append(app.index.event(app.session.selected_event).brief())

    drive(app, body)
    shown = "\n".join(screen)
    assert not any(c in shown for c in RAW_CONTROLS)
    for escaped in ("PASID 1 \\x1b]0;pwned\\x07", "0000:6a:01.0\\x1b[2J", "[bold red]x[/]",
                    "\\x1b]52;c;cHduZWQ=\\x07\\x07over\\x0dwritten"):  # (the bell and the return not dropped)
        assert escaped in shown, escaped
    pwned_row = "PASID 1 \\x1b]0;pwned\\x07"
    for typed in ("pwned", "comm:\\x1b]0;pwned\\x07", "]0;pwn", "pasted"):
        assert pwned_row in found[typed], typed
    assert drawn[0].startswith("comm:\\x1b]0;pwned\\x07") and not any(c in drawn[0] for c in RAW_CONTROLS)
    assert found["dev:\\x1b[2J"] and all("0000:6a:01.0\\x1b[2J" in label or label.startswith("PASID")
                                          for label in found["dev:\\x1b[2J"])
    assert found["bogus"] == []
    assert len(briefs) == 1 and "\x1b]52;c;cHduZWQ=\x07" in briefs[0]
