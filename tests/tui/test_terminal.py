"""End to end: the real program in a real terminal (tmux), driven by keys, read back from the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_files import write_injecting

from .conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None and not os.environ.get("CI"),
                                reason="tmux is not installed (CI installs it)")


class Terminal:
    """A detached tmux session on its own server socket, of a fixed size; with `raw`, every byte the programs
    in it write to the terminal is copied to that file (tmux's pipe-pane), before tmux interprets it."""

    def __init__(self, command: list[str], width: int = 160, height: int = 48, raw: Path | None = None) -> None:
        self.socket = f"pasid-e2e-{os.getpid()}-{time.monotonic_ns()}"
        # the shell starts first and the program is typed into it, so it starts in a terminal of the final size
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "e2e", "-x", str(width), "-y", str(height),
                  "-c", str(ROOT), "sh")
        self.raw = raw
        if raw is not None:
            self.tmux("pipe-pane", "-t", "e2e", "-o", f"cat >> {raw}")
        self.keys(" ".join(command) + "; printf 'EXIT%s\\n' \"=$?\"", "Enter")  # the typed line never shows EXIT=

    def tmux(self, *args: str) -> str:
        # COLUMNS and LINES (set by some shells and test runners) would override the terminal's real size
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=20, env=env).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "e2e", *keys)
        if "Escape" in keys:
            time.sleep(0.5)  # a key right behind ESC would arrive as an alt- combination

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen shows:\n{screen}")
            time.sleep(0.2)

    def written(self, until: bytes, timeout: float = 30.0) -> bytes:
        """What the programs wrote to the terminal, once `until` is among it (the copy may lag the screen)."""
        assert self.raw is not None
        deadline = time.monotonic() + timeout
        while until not in (data := self.raw.read_bytes() if self.raw.exists() else b""):
            assert time.monotonic() < deadline, f"{until!r} was never written"
            time.sleep(0.2)
        return data

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def terminal() -> Iterator[type[Terminal]]:
    made: list[Terminal] = []

    def make(*args: object, **kw: object) -> Terminal:
        t = Terminal(*args, **kw)  # type: ignore[arg-type]
        made.append(t)
        return t

    yield make  # type: ignore[misc]
    for t in made:
        t.close()


def test_the_main_command_opens_the_first_scenario_and_answers_keys(terminal) -> None:  # type: ignore[no-untyped-def]
    term = terminal([sys.executable, "-m", "explorer.cli.main"])
    term.wait_for("allocator")
    screen = term.wait_for("PASID 1")  # its rows are drawn after the panels appear, later on a loaded machine
    assert "Two processes" in screen or "lesson" in screen  # the teaching layout on the first scenario
    assert "0000:6a:01.0" in screen and "allocator" in screen
    term.keys("?")
    term.wait_for("cursor ←")  # the help screen lists the keys the footer has no room for too
    term.keys("Escape")
    term.keys("/")
    term.wait_for("dev:BDF")  # the filter box explains its syntax
    term.keys("pasid:2", "Enter")
    screen = term.wait_for("filter: pasid:2")
    labels = [line.split("│")[1] for line in screen.splitlines() if line.count("│") >= 3]
    assert any("PASID 2" in label for label in labels)
    assert not any("PASID 1" in label for label in labels)  # filtered-out rows hide
    term.keys("q")
    assert "EXIT=0" in term.wait_for("EXIT=")


def test_an_anomaly_is_found_from_the_keyboard_in_the_buggy_driver(terminal) -> None:  # type: ignore[no-untyped-def]
    term = terminal([sys.executable, "-m", "explorer.cli.main", "replay", "recordings/06-buggy-driver.pasidrec",
                     "--layout", "compact"], width=80, height=24)
    term.wait_for("acme-accel")
    term.keys("n")
    screen = term.wait_for("ANOMALY")
    assert "!" in screen and "freed while" in screen
    term.keys("q")
    assert "EXIT=0" in term.wait_for("EXIT=")


def untouched(term: Terminal) -> None:
    assert "pwned" not in term.tmux("display-message", "-p", "-t", "e2e", "#{pane_title}")
    assert term.tmux("list-buffers") == ""  # no OSC 52 clipboard write landed


def test_escape_sequences_in_a_recording_reach_the_terminal_only_as_text(terminal, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Process names, a device's name and driver and the titles carrying a title change, a screen clear, a
    clipboard write (OSC 52), a bell and markup, shown by `info`, `check` and the explorer: the title stays, the
    screen keeps its text, the clipboard stays empty, each is shown escaped, and of the bytes written to the
    terminal none is an ESC or BEL of the recording's (the commands write only their progress line's redraw; the
    explorer only its own drawing)."""
    path = write_injecting(tmp_path / "inject.pasidrec")
    cli = f"{sys.executable} -m explorer.cli.main"
    raw = tmp_path / "terminal.bytes"
    term = terminal([f"echo BEFORE; {cli} info {path}; {cli} check {path}"], height=150, raw=raw)  # all on screen
    term.tmux("set-option", "-g", "set-clipboard", "on")
    screen = term.wait_for("EXIT=")
    assert "BEFORE" in screen  # not cleared by ESC[2J
    assert "\\x1b]0;pwned\\x07" in screen and "\\x07\\x07over\\x0dwritten" in screen and "EXIT=1" in screen
    commands = term.written(b"EXIT=1")
    plain = commands.replace(b"\r\x1b[K", b"")  # the progress line's own redraw
    assert b"\x1b" not in plain and b"\x07" not in plain
    untouched(term)
    term.keys("clear", "Enter")
    term.tmux("resize-window", "-t", "e2e", "-x", "160", "-y", "48")
    term.keys(f"{cli} replay {path} --layout compact; printf 'EXIT%s\\n' \"=$?\"", "Enter")
    term.wait_for("allocator")
    term.keys("n")  # the double free, explained with its owners' text
    screen = term.wait_for("freed again by")
    assert "0000:6a:01.0\\x1b[2J" in screen and "red]x[/]" in screen  # escaped, and markup shown as written
    assert "\\x1b]0;pwned\\x07" in screen and "\\x07\\x07over\\x0dwritten" in screen  # bell and return not dropped
    untouched(term)
    term.keys("q")
    assert "EXIT=0" in term.wait_for("EXIT=0")
    explorer = term.written(b"EXIT=0")[len(commands):]
    own = re.sub(rb"\x1b\]22;[a-z-]*\x07", b"", explorer)  # Textual's own OSC 22: the mouse pointer's shape
    assert b"\x07" not in own and b"\x1b]" not in own and b"\x1b[2J" not in explorer
