"""A VM's guest and its host on one timeline: each machine a row, its devices under it, a guest's PASIDs (its
own allocator's) under the guest's row, and the event panel naming the group a VMM passed between them."""

from __future__ import annotations

from pathlib import Path

from core.machine_pair import BDF, GUEST, HOST, S, lifecycle, pair, request

from explorer.loading import open_index
from explorer.machines import align_by_clocks
from explorer.merge import merge, open_sources
from explorer.tui.app import ExplorerApp

from .conftest import drive, panel_text


def test_machine_rows_hold_their_devices_and_a_guest_s_pasids(tmp_path: Path) -> None:
    off = align_by_clocks(HOST, GUEST).offset_ns
    host = [*lifecycle(1001 * S, guest=False), request(1010 * S, 3, 0x1000)]
    guest = [*lifecycle(45 * S, guest=True), request(1010 * S - off + 1_000_000, 3, 0x1000)]
    merge(open_sources(pair(tmp_path, host, guest)), tmp_path / "m.pasidrec")
    app = ExplorerApp(open_index(tmp_path / "m.pasidrec"), layout="debug")

    async def body(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("c")
        labels = [r.label for r in app.session.rows]
        assert labels == ["allocator", "machine host 6.18.0 · the timeline's clock", BDF,
                          "machine lab-6.12 6.12.118 · 962.000 s ±1.4 µs", f"lab-6.12/{BDF}"]
        while not app.session.row.label.startswith("machine lab-6.12"):
            await pilot.press("down")
        await pilot.press("enter")  # the guest's own PASID 5, its lifetime drawn from the guest's allocator
        child = app.session.rows[labels.index(app.session.row.label) + 1]
        assert (child.depth, child.pasid, child.span_key) == (1, 5, ("pasid", (1, 5)))
        assert len(app.session.spans.of(child.span_key).rows()) == 1
        assert len(app.session.spans.of(("pasid", 5)).rows()) == 1, "the host's PASID 5 is a lifetime of its own"
        await pilot.press("end")
        assert "machine lab-6.12 (the selected row's" in panel_text(app, "allocator")
        shown = panel_text(app, "allocator")
        assert f"lab-6.12/{BDF}" in shown and f"\n{BDF}" not in shown, "the guest's devices, not the host's"
        while app.session.row.label != f"lab-6.12/{BDF}":
            await pilot.press("down")
        await pilot.press("home")
        for _ in range(3):  # the row's events: the attach, then the page request the VMM injected
            await pilot.press("right_square_bracket")
        text = panel_text(app, "event")
        assert "page_request" in text and f"the host's page request on {BDF}" in text

    drive(app, body)
