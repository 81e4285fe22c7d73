"""Every fixture case - real lines from bug reports and mailing lists - imports to exactly the events it lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from explorer.events import Event, make
from explorer.importers import import_log
from explorer.recording import Recording

FIXTURES = Path(__file__).parent / "fixtures"


def _cases() -> list[Any]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            out.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return out


def _check_event(ev: Event, want: dict[str, Any], where: str) -> None:
    got = ev.as_dict()
    got.setdefault("kind", ev.kind)
    want = {"kind": "fault", **want}
    for key, value in want.items():
        if key.endswith("~"):
            assert value in str(got.get(key[:-1], "")), f"{where}: {key[:-1]}={got.get(key[:-1])!r}"
        else:
            assert got.get(key) == value, f"{where}: {key}={got.get(key)!r}, expected {value!r}\n{got}"


@pytest.mark.parametrize("case", _cases())
def test_fixture_case_imports_to_its_events(case: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "posted.log"
    src.write_text(case["log"])
    out = tmp_path / "out.pasidrec"
    stats = import_log(str(src), out, fmt=case.get("format"))
    with Recording(out) as rec:
        events = list(rec.iter_events())
        header, footer = rec.header, rec.footer
        devices = {d.name: d.driver for d in rec.devices}
    assert len(events) == len(case["events"]), [e.brief() for e in events]
    for i, (ev, want) in enumerate(zip(events, case["events"], strict=True)):
        _check_event(ev, want, f"event {i}")
        # Every imported event satisfies the event model's schema, as a probe's would.
        d = dict(ev.fields)
        make(ev.kind, ev.ts_ns, device=ev.device, pasid=ev.pasid, cpu=ev.cpu, pid=ev.pid, comm=ev.comm, **d)
        assert ev.source == f"import:{stats.format}"
        if ev.kind == "fault":
            assert d.get("raw"), "a fault keeps its original text"
            assert d.get("reason"), "a fault's reason is put in words"
    assert footer is not None and footer["import"] == stats.footer()
    assert footer["import"]["lines"] == len(case["log"].splitlines())
    for key, value in case.get("stats", {}).items():
        assert footer["import"][key] == value, (key, footer["import"])
    if "clock" in case:
        assert header.clock == case["clock"]
    for key, value in case.get("host", {}).items():
        assert header.host.get(key) == value
    for name, driver in case.get("devices", {}).items():
        assert devices[name] == driver


def test_every_fixture_says_whether_it_is_real_and_where_from() -> None:
    """A real case names where it was posted (an address, or the forum, thread and date); a constructed one says so
    and cites the kernel source whose format string it follows, or the real posts it rearranges (issue 15)."""
    for param in _cases():
        case = param.values[0]
        source = str(case.get("source") or "")
        if source.startswith("constructed"):
            # the kernel source whose format it follows, or the real posts whose lines it rearranges
            cited = ("drivers/", "include/", "kernel/", "arch/", "xen/", "#", "http")
            assert any(d in source for d in cited), case["name"]
        else:
            assert source.startswith(("http://", "https://")) or len(source) >= 40, case["name"]
