"""The explorer on inputs the audit of issue 16 crashed it with: an empty recording, a device listed without
events, times spanning all of int64; and a crash of the UI never exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_files import DEV, write_crafted

from explorer.cli.main import main
from explorer.errors import INTERNAL_ERROR, ExplorerCrashed
from explorer.loading import open_index
from explorer.tui.app import ExplorerApp, run_explorer
from explorer.tui.timeline import Timeline
from explorer.tui.timescale import Window

from .conftest import drive, screen_lines

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
