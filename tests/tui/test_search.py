"""Search (`f`, then `S`) driven by Pilot on bundled recordings: every match in order, as a plain scan of the
events' lines finds them; a running search says so on the status line; a newer search stops the one running, whose
answer never lands."""

from __future__ import annotations

import asyncio
import threading

import pytest

from explorer.text import searchable
from explorer.tui import navigation
from explorer.tui.app import ExplorerApp

from .conftest import drive, index_of, screen_lines, settle


def _held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold the first search's thread at its first event until the test lets it go (the searches that follow run
    on)."""
    gate, first = threading.Event(), []

    def held(text: str) -> str:
        if not first:
            first.append(threading.get_ident())
        if first[0] == threading.get_ident() and not gate.is_set():
            gate.wait(10)
            gate.set()  # (once: a test that failed before letting it go does not wait at every event)
        return searchable(text)

    monkeypatch.setattr(navigation, "searchable", held)
    return gate


def _said(app: ExplorerApp, text: str) -> bool:
    return any(text in str(n.message) for n in app._notifications)


def _status(app: ExplorerApp) -> str:
    return "\n".join(screen_lines(app))


@pytest.mark.parametrize(("name", "needle"), [("03", "IOMMU_"), ("03", "hwpt"), ("06", "addr 0x"), ("05", "pasid 2")])
def test_s_visits_every_match_in_order_and_a_running_search_says_so(
        name: str, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_of(name)
    app = ExplorerApp(index, layout="debug")
    gate = _held(monkeypatch)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        s = app.session
        await pilot.press("home")
        current = s.selected_event if s.selected_event is not None else index.index_at(s.cursor) - 1
        visible, keep = s.visible_tracks(), s.keep()
        expected = [int(j) for j in range(current + 1, index.n) if visible[index.track_of[j]]
                    and (keep is None or keep[index.kinds[j]])
                    and needle.lower() in searchable(index.event(j).brief())]
        assert expected, "the needle is in the recording"
        await pilot.press("f", *needle, "enter")
        await settle(pilot, lambda: f"searching '{needle}'" in _status(app))  # held at its first event
        gate.set()
        seen: list[int] = []
        before = s.selected_event
        while True:
            await settle(pilot, lambda was=before: s.selected_event != was or _said(app, needle))
            if _said(app, f"no more events matching '{needle}'"):
                break
            before = s.selected_event
            seen.append(before)
            await pilot.press("S")
        assert seen == expected
        assert "searching" not in _status(app)

    drive(app, body)


def test_a_new_search_stops_the_running_one_whose_answer_never_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_of("03")
    app = ExplorerApp(index, layout="debug")
    gate = _held(monkeypatch)

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        s = app.session
        await pilot.press("home", "f", *"nosuchthing", "enter")  # held at its first event
        await pilot.press("f", *"hwpt_alloc", "enter")
        await settle(pilot, lambda: s.selected_event is not None
                     and index.event(s.selected_event).get("name") == "IOMMU_HWPT_ALLOC")
        hit = s.selected_event
        gate.set()
        await asyncio.get_running_loop().shutdown_default_executor()  # every search's thread has ended
        await pilot.pause()
        assert s.selected_event == hit
        assert not _said(app, "nosuchthing") and "searching" not in _status(app)

    drive(app, body)
