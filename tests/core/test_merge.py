"""A host's and a guest's recordings merged: clocks aligned from what the recordings carry (or a given offset),
each machine's events, counts and times kept, each machine's model state its own, and only certain links drawn
between the host's page requests and the guest's."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from core.machine_pair import BDF, GUEST, HOST, S, lifecycle, pair, request, response, write
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.errors import InputError
from explorer.events import Event, Kind, make
from explorer.index import RecordingIndex
from explorer.machines import Machine, align_by_clocks
from explorer.merge import find_links, merge, open_sources
from explorer.recording import DeviceInfo, Header, Recording, write_events
from explorer.summary import recording_info


def test_realtime_alignment_and_its_stated_error() -> None:
    a = align_by_clocks(HOST, GUEST)
    assert a is not None and a.by == "realtime"
    assert a.offset_ns == 962 * S + 2000  # (real - mono) of the guest minus the host's, averaged over both readings
    assert a.error_ns == (2000 + 0 + 400 + 400) // 2  # half the drift between readings and half the spreads
    assert "±" in a.describe() and "wall clocks disagreed" in a.describe()


def test_a_merged_recording_round_trips_each_machine_s_events(tmp_path: Path) -> None:
    host_events = lifecycle(1001 * S, guest=False) + [make(Kind.MARKER, 1030 * S, text="host")]
    guest_events = lifecycle(45 * S, guest=True) + [make(Kind.MARKER, 60 * S, text="guest")]
    sources = open_sources(pair(tmp_path, host_events, guest_events))
    out = tmp_path / "merged.pasidrec"
    result = merge(sources, out)
    assert result.events == {"host": 3, "lab-6.12": 3}
    rec = Recording(out)
    assert rec.header.version >= 2 and [m.name for m in rec.machines] == ["host", "lab-6.12"]
    offset = rec.machines[1].offset_ns
    events = list(rec.iter_events())
    assert [e.ts_ns for e in events] == sorted(e.ts_ns for e in events)
    # undo the alignment: each machine's own events, times and devices come back unchanged
    back = {0: [], 1: []}
    for e in events:
        dev = e.device.removeprefix("lab-6.12/") if e.machine and e.device else e.device
        back[e.machine].append(Event(e.ts_ns - rec.machines[e.machine].offset_ns, e.kind, dev, e.pasid, e.cpu,
                                     e.pid, e.comm, e.source, e.fields))
    assert back == {0: host_events, 1: guest_events}
    assert {d.name for d in rec.devices} == {BDF, f"lab-6.12/{BDF}"}
    assert offset == align_by_clocks(HOST, GUEST).offset_ns


def test_each_machine_keeps_its_own_model_state(tmp_path: Path) -> None:
    sources = open_sources(pair(tmp_path, lifecycle(1001 * S, guest=False), lifecycle(45 * S, guest=True)))
    merge(sources, tmp_path / "m.pasidrec")
    idx = RecordingIndex.build(Recording(tmp_path / "m.pasidrec"))
    assert not [a for a in idx.anomalies if a.rule in ("double_free", "attach_conflict")], \
        "the guest's PASID 5 is not the host's: no PASID is handed out twice"
    state = idx.state_at(idx.end_ns)
    guest = state.of_machine(1)
    assert set(state.pasids) == {5} and set(guest.pasids) == {5} and guest.pasids[5].machine == 1
    assert set(state.attachments) == {(BDF, 5)} and set(guest.attachments) == {(f"lab-6.12/{BDF}", 5)}
    assert state.attachments[(BDF, 5)].domain_type == "sva"
    assert guest.attachments[(f"lab-6.12/{BDF}", 5)].domain_type == "nested"
    lifetimes = [iv for iv in idx.intervals if iv.kind == "lifetime"]
    assert sorted(iv.machine for iv in lifetimes) == [0, 1]


def test_the_vmm_s_passing_of_a_group_is_linked_only_where_certain(tmp_path: Path) -> None:
    off = align_by_clocks(HOST, GUEST).offset_ns
    h0 = 1010 * S
    g0 = h0 - off  # the guest's clock at the host's h0
    host = lifecycle(1001 * S, guest=False) + [
        request(h0, 3, 0x1000), response(h0 + 5_000_000, 3, "user"),  # passed to the guest and back: linked
        request(h0 + S, 4, 0x2000),  # the guest saw this group twice (ambiguous): no link
        request(h0 + 2 * S, 6, 0x6000),  # the guest's is 0.5 s later: beyond the window, no link
    ]
    guest = lifecycle(45 * S, guest=True) + [
        request(g0 + 1_000_000, 3, 0x1000), response(g0 + 4_000_000, 3, "guest"),
        request(g0 + S + 1_000_000, 4, 0x2000), request(g0 + S + 2_000_000, 4, 0x2000),
        request(g0 + 2 * S + S // 2, 6, 0x6000),
    ]
    sources = open_sources(pair(tmp_path, host, guest))
    result = merge(sources, tmp_path / "m.pasidrec")
    assert result.links == 2
    events = list(Recording(tmp_path / "m.pasidrec").iter_events())
    linked = [(e.machine, e.kind, e.get("prg"), e.get("same_as")) for e in events if e.get("same_as")]
    at = {(e.machine, e.kind, e.get("prg")): e for e in events if e.kind in ("page_request", "page_response")}
    assert linked == [
        (0, "page_request", 3, [at[(1, "page_request", 3)].ts_ns, 1, f"lab-6.12/{BDF}"]),
        (1, "page_request", 3, [h0, 0, BDF]),
        (1, "page_response", 3, [h0 + 5_000_000, 0, BDF]),
        (0, "page_response", 3, [at[(1, "page_response", 3)].ts_ns, 1, f"lab-6.12/{BDF}"]),
    ]


def test_a_given_offset_stands_in_for_missing_clock_readings(tmp_path: Path) -> None:
    old = Machine("guest", None, "6.12.0")  # a recording from before machines: no clock readings
    paths = pair(tmp_path, [make(Kind.MARKER, 1001 * S, text="h")], [make(Kind.MARKER, 5 * S, text="g")], old)
    with pytest.raises(InputError, match=r"cannot be aligned with 'host'.*carries no clock readings.*--offset guest="):
        open_sources(paths)
    sources = open_sources(paths, offsets={"guest": 996 * S})
    merge(sources, tmp_path / "m.pasidrec")
    rec = Recording(tmp_path / "m.pasidrec")
    assert [(e.ts_ns, e.machine) for e in rec.iter_events()] == [(1001 * S, 0), (1001 * S, 1)]
    assert (rec.machines[1].aligned_by, rec.machines[1].error_ns) == ("given", None)


@pytest.mark.parametrize(("guest", "kw", "says"), [
    (GUEST.__class__("host", "boot-x", None, "monotonic", GUEST.start), {}, "named 'host', as"),
    (GUEST.__class__("g", "boot-h", None, "monotonic", GUEST.start), {}, "same boot (boot id boot-h)"),
    (GUEST, {"offsets": {"nobody": 5}}, "--offset names machine 'nobody'"),
])
def test_what_cannot_be_merged_is_one_clear_line(tmp_path: Path, guest: Machine, kw: dict, says: str) -> None:
    paths = pair(tmp_path, [make(Kind.MARKER, 1001 * S, text="h")], [make(Kind.MARKER, 45 * S, text="g")], guest)
    with pytest.raises(InputError, match=re.escape(says)):
        open_sources(paths, **kw)
    renamed = open_sources(paths, names={paths[1]: "guest2"}) if "named" in says else None
    assert renamed is None or renamed[1].machine.name == "guest2"


def test_merge_info_check_and_export_read_the_machines(tmp_path: Path) -> None:
    from core.test_cli import cli

    paths = pair(tmp_path, lifecycle(1001 * S, guest=False), lifecycle(45 * S, guest=True))
    out = tmp_path / "both.pasidrec"
    done = cli("merge", "-o", str(out), *paths)
    assert done.returncode == 0, done.stderr
    assert "lab-6.12: 2 events" in done.stdout and "offset +962.000 s from the machines' wall clocks" in done.stdout
    info = cli("info", str(out))
    assert "machine host (kernel 6.18.0, boot boot-h): the timeline's clock" in info.stdout
    assert "machine lab-6.12 (kernel 6.12.118, boot boot-g): offset +962.000 s" in info.stdout
    assert f"lab-6.12/{BDF}" in info.stdout
    assert cli("check", str(out)).returncode == 0, "two PASID 5s on two machines are no finding"
    again = cli("merge", "-o", str(tmp_path / "x.pasidrec"), paths[0], paths[0])
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "same boot" in again.stderr
    exported = cli("export", str(out), "--to", "jsonl", "-o", "-")
    rows = [json.loads(x) for x in exported.stdout.splitlines()]
    assert [(r.get("machine", 0), r["device"]) for r in rows if r["kind"] == "pasid_attach"] == \
        [(0, BDF), (1, f"lab-6.12/{BDF}")]


def test_replay_of_two_recordings_says_what_it_cannot_align(tmp_path: Path) -> None:
    from core.test_cli import cli

    old = Machine("guest", None, "6.12.0")
    paths = pair(tmp_path, [make(Kind.MARKER, 1001 * S, text="h")], [make(Kind.MARKER, 5 * S, text="g")], old)
    done = cli("replay", *paths)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "carries no clock readings" in done.stderr and "--offset guest=" in done.stderr
    helped = cli("merge", "--help").stdout
    assert "--offset NAME=±DURATION" in helped and "wall clocks disagreed" in helped.replace("\n", " ")


def test_a_guest_s_finding_names_its_machine(tmp_path: Path) -> None:
    from core.test_cli import cli

    twice = [make(Kind.PASID_FREE, 50 * S, pasid=9), make(Kind.PASID_FREE, 51 * S, pasid=9)]
    sources = open_sources(pair(tmp_path, lifecycle(1001 * S, guest=False), lifecycle(45 * S, guest=True) + twice))
    merge(sources, tmp_path / "m.pasidrec")
    done = cli("check", str(tmp_path / "m.pasidrec"), "--json")
    found = [(a["kind"], a.get("machine"), a["pasid"]) for a in json.loads(done.stdout)["anomalies"]]
    assert found and all(m == 1 and p == 9 for _, m, p in found), found
    assert "(lab-6.12: PASID 9)" in cli("check", str(tmp_path / "m.pasidrec")).stdout


# A capture on a locked-down kernel: no probe could attach to the PASID calls (as `record` notes it)
BLIND = {"invisible_kinds": {k: "iommu_attach_device_pasid: blocked by lockdown" for k in (
    Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.PASID_ATTACH, Kind.PASID_DETACH, Kind.SVA_BIND, Kind.SVA_UNBIND)}}


@pytest.mark.parametrize("blind", ["host", "guest"])
def test_each_machine_s_findings_are_as_certain_as_its_own_probes_saw(tmp_path: Path, blind: str) -> None:
    """A PASID freed while attached is an error where the capture saw every detach, and only uncertain where it
    could not: judged by the machine's own recording, whichever of the two was blind."""
    events = {"host": lifecycle(1001 * S, guest=False) + [make(Kind.PASID_FREE, 1002 * S, pasid=5)],
              "guest": lifecycle(45 * S, guest=False) + [make(Kind.PASID_FREE, 46 * S, pasid=5)]}  # (SVA on both)
    paths = [str(write(tmp_path / f"{name}.pasidrec", machine, events[name], BLIND if name == blind else None))
             for name, machine in (("host", HOST), ("guest", GUEST))]
    merge(open_sources(paths), tmp_path / "m.pasidrec")
    idx = RecordingIndex.build(Recording(tmp_path / "m.pasidrec"))
    found = {("guest" if a.machine else "host", a.severity) for a in idx.anomalies if a.rule == "free_while_attached"}
    seen = "guest" if blind == "host" else "host"
    assert found == {(blind, "uncertain"), (seen, "error")}
    guest = recording_info(tmp_path / "m.pasidrec", idx)["machines"][1]
    assert ("could not see pasid_alloc" in guest.get("lifecycle_unobserved", "")) == (blind == "guest")


def test_a_guest_capture_merged_behind_an_imported_log_still_starts_midstream(tmp_path: Path) -> None:
    """A capture begins with the kernel's PASIDs already there, so a PASID attached that it never saw allocated is
    no finding (engine.py's midstream rule); judged by the guest's own source, not the first machine's (an
    imported log's, which does not start midstream). It was a certain 'used but never allocated' error."""
    log = Header("import:dmesg", host={"kernel": "6.18.0"}, devices=[DeviceInfo(BDF, 20, True, True)])
    write_events(tmp_path / "host.pasidrec", log, [request(1001 * S, 1, 0x1000)])
    attach = [make(Kind.PASID_ATTACH, 45 * S, device=BDF, pasid=5, domain=1, domain_type="sva")]
    write(tmp_path / "guest.pasidrec", GUEST, attach)
    assert not RecordingIndex.build(Recording(tmp_path / "guest.pasidrec")).anomalies  # alone: clean
    sources = open_sources([str(tmp_path / "host.pasidrec"), str(tmp_path / "guest.pasidrec")],
                           offsets={"lab-6.12": 956 * S})
    merge(sources, tmp_path / "m.pasidrec")
    idx = RecordingIndex.build(Recording(tmp_path / "m.pasidrec"))
    assert [(a.rule, a.severity) for a in idx.anomalies if a.machine == 1 and a.severity != "uncertain"] == []


@pytest.mark.parametrize("probes", [{"invisible_kinds": ["pasid_alloc"]}, {"invisible_kinds": 7},
                                    {"invisible_kinds": [[1]]}, {"unavailable": ["x"]}, {"attached": 3}, "x"])
def test_a_merged_machine_s_unreadable_probe_notes_make_its_findings_uncertain(tmp_path: Path, probes: object,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    """Probe notes of a guest's entry that the header reader would refuse for the first machine: `info` and `check`
    once stopped with an internal error on them, or read them as 'saw everything' (certain errors)."""
    from explorer.cli.main import main

    freed = lifecycle(45 * S, guest=False) + [make(Kind.PASID_FREE, 46 * S, pasid=5)]
    paths = [str(write(tmp_path / f"{name}.pasidrec", machine, lifecycle(1001 * S, guest=False) if name == "host"
                       else freed)) for name, machine in (("host", HOST), ("guest", GUEST))]
    merge(open_sources(paths), tmp_path / "m.pasidrec")
    rec = Recording(tmp_path / "m.pasidrec")
    header = dataclasses.replace(rec.header, machines=[rec.header.machines[0], dataclasses.replace(
        rec.header.machines[1], extra={**rec.header.machines[1].extra, "probes": probes})])
    write_events(tmp_path / "crafted.pasidrec", header, list(rec.iter_events()))
    assert main(["info", str(tmp_path / "crafted.pasidrec")]) == 0
    assert "probe notes of the recording it came from are unreadable" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "crafted.pasidrec"), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["anomalies"]
    freed = {(a.get("machine"), a["severity"]) for a in found if a["kind"] == "free_while_attached"}
    assert freed == {(1, "uncertain")}


def test_a_guest_merged_before_its_probe_notes_were_kept_is_judged_uncertain(tmp_path: Path) -> None:
    """A recording merged by an older version names only the first machine's probes: what a guest's capture saw is
    not known, so its findings are uncertain rather than errors; the host's stay errors. The file still reads."""
    freed = lifecycle(1001 * S, guest=False) + [make(Kind.PASID_FREE, 1002 * S, pasid=5)]
    guest = [dataclasses.replace(e, machine=1, device=e.device and f"lab-6.12/{BDF}") for e in freed]
    header = Header("capture", clock="monotonic", host={"kernel": "6.18.0"},
                    devices=[DeviceInfo(BDF, 20, True, True), DeviceInfo(f"lab-6.12/{BDF}", 20, True, True)],
                    machines=[HOST, dataclasses.replace(GUEST, aligned_by="given")])
    write_events(tmp_path / "old.pasidrec", header, sorted(freed + guest, key=lambda e: e.ts_ns))
    idx = RecordingIndex.build(Recording(tmp_path / "old.pasidrec"))
    assert {(a.machine, a.severity) for a in idx.anomalies if a.rule == "free_while_attached"} == \
        {(0, "error"), (1, "uncertain")}


def _snapshot(t: int, table: list[int]) -> dict:
    """The kernel's state at `t` as a capture keeps it: the device's VT-d PASID table holds `table`."""
    return {"taken_ns": t, "pci": {}, "unreadable": {}, "intel": {
        "iommus": {"dmar0": {"enabled": True, "scalable": True}},
        "devices": {BDF: {"iommu": "dmar0", "pasids": [{"pasid": p, "pgtt": 1, "domain_id": 2} for p in table]}}}}


def merged_with_snapshots(tmp_path: Path) -> int:
    """m.pasidrec in `tmp_path`: a host and a guest, each with a start and an end snapshot, the guest's end one
    lacking the PASID 5 its model holds attached; returns the guest's offset on the merged timeline."""
    paths = pair(tmp_path, [], [])
    write(Path(paths[0]), HOST, lifecycle(1001 * S, guest=False),
          snapshots=(_snapshot(1000 * S, [9]), _snapshot(1050 * S, [9, 5])))
    write(Path(paths[1]), GUEST, lifecycle(45 * S, guest=True),
          snapshots=(_snapshot(41 * S, [7]), _snapshot(80 * S, [7])))
    merge(open_sources(paths), tmp_path / "m.pasidrec")
    return Recording(tmp_path / "m.pasidrec").machines[1].offset_ns


def test_every_machine_s_snapshots_are_set_beside_its_own_state(tmp_path: Path) -> None:
    """Both machines' start and end snapshots survive the merge, on the timeline, and each is compared with its own
    machine's model: the guest's table lacking the PASID 5 its model holds attached is a finding on the guest's
    device; the host's, holding its own PASID 5, agrees, and the entries made before either capture are none."""
    from core.test_cli import cli

    offset = merged_with_snapshots(tmp_path)
    report = json.loads(cli("check", str(tmp_path / "m.pasidrec"), "--json").stdout)
    assert report["kernel_state"]["snapshots"] == sorted([1000 * S, 1050 * S, 41 * S + offset, 80 * S + offset])
    assert [(d["rule"], d["device"], d["pasid"], d["ts_ns"]) for d in report["kernel_state"]["disagreements"]] == \
        [("table_missing", f"lab-6.12/{BDF}", 5, 80 * S + offset)]
    assert "kernel snapshot of machine lab-6.12 at" in cli("info", str(tmp_path / "m.pasidrec")).stdout


def _passed_on(host: tuple, guest: tuple, window: int) -> bool:
    """Could the VMM have passed `host`'s group to `guest` (or its answer back)? The rule, brute force."""
    if host[0] or not guest[0] or (host[2], host[4], host[5], host[6]) != (guest[2], guest[4], guest[5], guest[6]):
        return False
    lag = guest[1] - host[1] if guest[2] == "page_request" else host[1] - guest[1]
    return 0 <= lag <= window


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60), st.sampled_from(["page_request", "page_response"]),
                          st.integers(0, 2), st.integers(0, 1)), max_size=30))
@settings(max_examples=400)
def test_links_are_exactly_the_pairs_that_can_only_be_each_other(raw: list) -> None:
    keys = [(m, t * 1_000_000, kind, f"dev{m}", 5, prg, detail) for m, t, kind, prg, detail in raw]
    window = 50_000_000
    links = find_links(keys, {1: 0, 2: 0}, window_ns=window)
    once = [k for k in keys if keys.count(k) == 1]  # an event whose every field another shares is never linked
    expected = {}
    for g in (k for k in once if k[0]):
        hosts = [h for h in keys if _passed_on(h, g, window)]
        if len(hosts) == 1 and hosts[0] in once and [x for x in keys if _passed_on(hosts[0], x, window)] == [g]:
            expected[g], expected[hosts[0]] = hosts[0], g
    assert links == expected


def test_info_names_each_machine_s_own_kernel_rules_and_blind_hooks(tmp_path: Path) -> None:
    """A 6.18 host and a 6.12 guest are judged by different rules (kernel_facts.py: `alloc.user`, user-chosen
    iommufd PASIDs through VFIO_DEVICE_ATTACH_PASID, is 6.15+), and each capture missed its own hooks: `info`
    says which rules and which gaps belong to which machine, not the host's for both."""
    blind = {"unavailable": {"fentry:iommu_sva_bind_device": "blocked by lockdown"}}
    paths = [str(write(tmp_path / "host.pasidrec", HOST, lifecycle(1001 * S, guest=False))),
             str(write(tmp_path / "guest.pasidrec", GUEST, lifecycle(45 * S, guest=True), blind))]
    merge(open_sources(paths), tmp_path / "m.pasidrec")
    from core.test_cli import cli

    info = json.loads(cli("info", str(tmp_path / "m.pasidrec"), "--json").stdout)
    host, guest = info["machines"]
    assert info["kernel_rules"].startswith("kernel 6.18") and guest["kernel_rules"].startswith("kernel 6.12")
    assert "alloc.user" in [f["key"] for f in info["kernel_facts"]]
    assert "alloc.user" not in [f["key"] for f in guest["kernel_facts"]]
    text = cli("info", str(tmp_path / "m.pasidrec")).stdout
    under_host, under_guest = text.split("  machine host")[1].split("  machine lab-6.12")
    assert "its rules: kernel 6.18" in under_host and "alloc.user" in under_host
    assert "its rules: kernel 6.12" in under_guest and "alloc.user" not in under_guest.split("events over")[0]
    assert "not observed: fentry:iommu_sva_bind_device: blocked by lockdown" in under_guest
    assert "not observed" not in under_host
