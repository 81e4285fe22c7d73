"""The Perfetto export, decoded with Perfetto's own protos: every track, flow and counter it refers to exists, and
what it shows (events, the model's intervals and findings, counters) is exactly the recording and its model."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hostile_files import RAW_CONTROLS, write_injecting
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from explorer.cli.main import main
from explorer.events import R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_TS
from explorer.export import export
from explorer.export.perfetto import read_packets
from explorer.intervals import IntervalKind
from explorer.loading import open_index
from explorer.machines import Machine, machine_of_device, qualified
from explorer.recording import Header, Recording, RecordingWriter
from explorer.text import line
from explorer.workload import write_workload

ROOT = Path(__file__).parents[2]
BUNDLED = sorted((ROOT / "recordings").glob("*.pasidrec")) + sorted((ROOT / "recordings" / "lab").glob("*.pasidrec"))
TE = pb.TrackEvent


@dataclass
class Decoded:
    """A trace as Perfetto reads it: tracks by uuid, each track's events, flows, and the interned strings."""

    tracks: dict[int, pb.TrackDescriptor] = field(default_factory=dict)
    events: list[tuple[int, pb.TrackEvent, dict[str, Any], str, str]] = field(default_factory=list)
    machine_names: list[str] = field(default_factory=list)
    machine_ids: list[int] = field(default_factory=list)
    machine_of: dict[int, int] = field(default_factory=dict)  # track uuid -> its packets' machine_id
    clocks: list[int] = field(default_factory=list)

    def path(self, uuid: int) -> list[str]:
        """Track names from the top down to `uuid`."""
        names = []
        while uuid:
            names.append(self.tracks[uuid].name)
            uuid = self.tracks[uuid].parent_uuid
        return names[::-1]

    def of(self, kind: int, category: str | None = None) -> list[tuple[int, pb.TrackEvent, dict[str, Any], str, str]]:
        return [e for e in self.events if e[1].type == kind and (category is None or e[4] == category)]


def _value(a: Any) -> Any:
    which = a.WhichOneof("value")
    if which is not None:
        return getattr(a, which)
    if a.array_values:
        return [_value(x) for x in a.array_values]
    return {e.name: _value(e) for e in a.dict_entries}


def decode(data: bytes) -> Decoded:
    """Read the trace as Perfetto does, in file order, checking each sequence's rules as it goes: incremental
    state cleared first, every interned id defined before it is used, every track described before an event
    refers to it and on its machine's sequence, parents before children, times never going back, and slices
    that nest on each track."""
    out = Decoded()
    interned: dict[int, tuple[dict[int, str], dict[int, str], dict[int, str]]] = {}  # per sequence
    stacks: dict[int, list[str]] = defaultdict(list)
    last_ts = -1
    for p in read_packets(data):
        seq = p.trusted_packet_sequence_id
        assert seq == 1 + p.machine_id, "one sequence per machine"
        if seq not in interned:
            assert p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            out.clocks.append(p.trace_packet_defaults.timestamp_clock_id)
            interned[seq] = ({}, {}, {})
        else:
            assert p.sequence_flags == pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        names, cats, arg_names = interned[seq]
        for table, entries in ((names, p.interned_data.event_names), (cats, p.interned_data.event_categories),
                               (arg_names, p.interned_data.debug_annotation_names)):
            for x in entries:
                assert x.iid not in table
                table[x.iid] = x.name
        if p.HasField("clock_snapshot"):
            out.clocks.append(p.clock_snapshot.primary_trace_clock)
        if p.HasField("system_info"):
            out.machine_names.append(p.system_info.machine_name)
            out.machine_ids.append(p.machine_id)
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            assert d.uuid not in out.tracks and (not d.parent_uuid or d.parent_uuid in out.tracks)
            out.tracks[d.uuid] = d
            out.machine_of[d.uuid] = p.machine_id
            assert not d.parent_uuid or out.machine_of[d.parent_uuid] == p.machine_id, "a track under its machine"
        if p.HasField("track_event"):
            te = p.track_event
            assert te.track_uuid in out.tracks, "an event on a track never described"
            assert out.machine_of[te.track_uuid] == p.machine_id, "an event on its machine's track"
            assert p.timestamp >= last_ts, "packets in time order"
            last_ts = p.timestamp
            args = {arg_names[a.name_iid]: _value(a) for a in te.debug_annotations}
            name = names[te.name_iid] if te.name_iid else ""
            cat = cats[te.category_iids[0]] if te.category_iids else ""
            if te.type == TE.TYPE_COUNTER:
                assert out.tracks[te.track_uuid].HasField("counter"), "a counter value on a counter track"
            elif te.type == TE.TYPE_SLICE_BEGIN:
                stacks[te.track_uuid].append(name)
            elif te.type == TE.TYPE_SLICE_END:
                assert stacks[te.track_uuid], "a slice ends that never began"
                stacks[te.track_uuid].pop()
            out.events.append((p.timestamp, te, args, name, cat))
    assert not any(stacks.values()), "every slice ends"
    return out


def check_trace(source: Path, data: bytes) -> Decoded:
    """Everything the trace says against the recording and its model."""
    t = decode(data)
    idx = open_index(source)
    ivs = list(idx.intervals)
    # the machines, each with its allocator and devices, each device's PASIDs beneath it
    h = idx.header
    titles = [m.name for m in h.machines] or [h.host.get("hostname") or h.title or h.source]
    roots = {t.machine_of[u]: d.name for u, d in t.tracks.items() if not d.parent_uuid}
    assert roots == dict(enumerate(titles)) and t.machine_names == titles and t.machine_ids == list(range(len(titles)))
    names = [m.name for m in h.machine_table]
    for m, title in enumerate(titles):
        (root,) = [u for u, d in t.tracks.items() if not d.parent_uuid and t.machine_of[u] == m]
        tops = {d.name for d in t.tracks.values() if d.parent_uuid == root and not d.HasField("counter")}
        own = {machine_of_device(d, names)[1] for d in idx.device_names()
               if (machine_of_device(d, names)[0] or names[0]) == names[m]}
        assert tops - {"markers and losses"} == {"PASID allocator", *own}, title
    # every event once, as an instant of its kind, with its fields as args
    instants = [e for e in t.of(TE.TYPE_INSTANT) if not e[4].startswith("anomaly") and e[4] != "recording"]
    assert Counter(e[4] for e in instants) == Counter(idx.counts_by_kind())
    assert sorted(e[2]["event"] for e in instants) == list(range(idx.n))
    for ts, te, args, _, kind in instants[:: max(1, len(instants) // 200)]:
        ev = idx.event(args["event"])
        assert (ts, kind) == (ev.ts_ns, ev.kind)
        for k, v in ev.fields.items():
            assert args[k] == (line(v) if isinstance(v, str) else v) or not isinstance(v, (int, str)), (k, v)
        where = t.path(te.track_uuid)
        assert t.machine_of[te.track_uuid] == ev.machine
        if ev.kind not in ("marker", "lost"):
            assert where[1] == (machine_of_device(ev.device, names)[1] if ev.device else "PASID allocator")
            assert (f"PASID {ev.pasid}" in where) == (ev.pasid is not None)
    # the model's findings, with their explanation
    found = t.of(TE.TYPE_INSTANT)
    found = [e for e in found if e[4].startswith("anomaly")]
    assert sorted((ts, a["rule"], a["explanation"]) for ts, _, a, _, _ in found) == \
        sorted((a.ts_ns, a.rule, a.explanation) for a in idx.anomalies)
    # one slice per interval the model holds (binds are their events), at its times
    cat_of = {IntervalKind.LIFETIME: "pasid", IntervalKind.ATTACHMENT: "attach", IntervalKind.GROUP: "page_request"}
    begins = Counter((e[4], e[0]) for e in t.of(TE.TYPE_SLICE_BEGIN))
    assert begins == Counter((cat_of[iv.kind], iv.start_ns) for iv in ivs if iv.kind in cat_of)
    ends = sorted(e[0] for e in t.of(TE.TYPE_SLICE_END))
    assert ends == sorted(max(iv.end_or(idx.end_ns), iv.start_ns) for iv in ivs if iv.kind in cat_of)
    for _, te, _, name, _ in t.of(TE.TYPE_SLICE_BEGIN, "pasid"):  # "PASID 5 sva ..." on the allocator's PASID 5
        assert t.path(te.track_uuid)[1:] == ["PASID allocator", " ".join(name.split()[:2]), "lifetime"]
    # an arrow from every request of each answered group to the response that answered it: as many as the
    # group's requests, each from a page request of its device and PRG, the first from the one that opened it
    starts = {f: e for e in t.events for f in e[1].flow_ids}
    stops = {f: e for e in t.events for f in e[1].terminating_flow_ids}
    assert starts.keys() == stops.keys(), "every flow id referenced begins and ends"
    assert all(len(e[1].flow_ids) <= 1 for e in t.events), "a request belongs to one group"
    arrows = defaultdict(list)  # response -> the requests whose arrows end there
    for f, s in starts.items():
        arrows[stops[f][2]["event"]].append(s[2]["event"])
    answered = [iv for iv in ivs if iv.kind == IntervalKind.GROUP and iv.close_idx is not None and iv.close_idx >= 0
                and iv.open_idx >= 0 and idx.event(iv.close_idx).kind == "page_response"]
    assert sorted(arrows) == sorted(iv.close_idx for iv in answered)
    for iv in answered:
        came = sorted(arrows[iv.close_idx])
        assert len(came) == iv.record.requests and came[0] == iv.open_idx, (iv, came)
        for r in came:
            ev = idx.event(r)
            assert (ev.kind, ev.device, ev.fields["prg"]) == ("page_request", iv.record.device, iv.record.prg)
            assert iv.open_idx <= r < iv.close_idx
    # counters: live PASIDs and outstanding groups per device are the model's at every sample
    counters = defaultdict(list)  # (machine, track path below it) -> samples
    for ts, te, _, _, _ in t.of(TE.TYPE_COUNTER):
        counters[(t.machine_of[te.track_uuid], *t.path(te.track_uuid)[1:])].append((ts, te.double_counter_value))
    if len(titles) == 1:
        for (ts, v) in counters.get((0, "PASID allocator", "live PASIDs"), [])[-50:]:
            live = [iv for iv in ivs if iv.kind == IntervalKind.LIFETIME and iv.start_ns <= ts
                    and (iv.end_ns is None or iv.end_ns > ts)]
            assert v == len(live) or ts == max(iv.end_or(idx.end_ns) for iv in ivs)
    for (m, *key), samples in counters.items():
        if key[-1] == "outstanding page-request groups":
            where = (names[m] if m else None, key[0])
            still = sum(1 for iv in ivs if iv.kind == IntervalKind.GROUP and iv.is_open
                        and machine_of_device(iv.device, names) == where)
            assert samples[-1][1] == still, key
    lost = sum(int(idx.event(i).fields.get("count", 0)) for i in range(idx.n) if idx.event(i).kind == "lost")
    assert sum(v[-1][1] for k, v in counters.items() if k[1:] == ("events lost (so far)",)) == lost
    return t


@pytest.mark.parametrize("source", BUNDLED, ids=lambda p: p.name)
def test_each_bundled_recording_round_trips_through_perfettos_protos(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.pftrace"
    export(str(source), "perfetto", str(out))
    t = check_trace(source, out.read_bytes())
    assert t.events


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(1, 10_000), n=st.integers(50, 3_000))
def test_generated_recordings_round_trip(seed: int, n: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("gen")
    src = d / "g.pasidrec"
    write_workload(str(src), n, seed)
    out = d / "g.pftrace"
    export(str(src), "perfetto", str(out))
    check_trace(src, out.read_bytes())


def test_the_page_request_scenario_shows_groups_lanes_and_arrows(tmp_path: Path) -> None:
    src = ROOT / "recordings" / "04-page-request-groups.pasidrec"
    out = tmp_path / "t.pftrace"
    export(str(src), "perfetto", str(out))
    t = check_trace(src, out.read_bytes())
    groups = t.of(TE.TYPE_SLICE_BEGIN, "page_request")
    assert groups and all(t.path(te.track_uuid)[-1].startswith("page requests") for _, te, _, _, _ in groups)
    assert any(te.flow_ids for _, te, _, _, _ in t.events), "at least one answered group's arrow"
    ends = [te.terminating_flow_ids for _, te, _, _, _ in t.events]
    assert any(len(f) > 1 for f in ends), "a group of several requests: an arrow from each to its response"
    assert t.clocks[0] == pb.BUILTIN_CLOCK_BOOTTIME  # a scenario's clock is none of the kernel's


def test_untrusted_text_is_neutral_in_the_trace(tmp_path: Path) -> None:
    src = write_injecting(tmp_path / "inject.pasidrec")
    out = tmp_path / "t.pftrace"
    export(str(src), "perfetto", str(out))
    t = decode(out.read_bytes())
    texts = [d.name for d in t.tracks.values()] + [e[3] for e in t.events]
    texts += [str(v) for e in t.events for v in e[2].values()]
    assert not any(c in x for x in texts for c in RAW_CONTROLS)
    assert any("\\x1b" in x for x in texts)  # shown escaped, not dropped


def test_cli_names_the_new_format_and_keeps_chrome_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(ROOT / "recordings" / "01-two-processes-one-device.pasidrec")
    assert main(["export", src, "--to", "perfetto", "-o", str(tmp_path / "a.json")]) == 2
    assert "--to chrome-json" in capsys.readouterr().err
    assert main(["export", src, "--to", "chrome-json", "-o", str(tmp_path / "a.json")]) == 0
    assert (tmp_path / "a.json").read_text().startswith('{"traceEvents"')


def test_a_merged_recordings_machines_are_perfetto_machines(tmp_path: Path) -> None:
    """Host and guest in one recording (as `merge` writes one: the guest's rows numbered 1, its devices
    qualified): each machine is a Perfetto machine with its own sequence, and its devices and PASIDs sit under it."""
    with Recording(ROOT / "recordings" / "04-page-request-groups.pasidrec") as r:
        host = list(r.iter_rows())
    with Recording(ROOT / "recordings" / "lab" / "6.12-fault-queue.pasidrec") as r:
        guest = list(r.iter_rows())
    shift = host[0][R_TS] - guest[0][R_TS]  # the guest's events among the host's
    rows = host + [[row[R_TS] + shift, row[R_KIND], qualified("lab-6.12", row[R_DEVICE]) if row[R_DEVICE] else None,
                    *row[R_PASID:R_FIELDS + 1], 1] for row in guest]
    rows.sort(key=lambda row: row[R_TS])
    table = [Machine("host", kernel="6.18.0", clock="monotonic"), Machine("lab-6.12", kernel="6.12.118",
                                                                         clock="monotonic")]
    src = tmp_path / "merged.pasidrec"
    with RecordingWriter(src, Header("merge", host={"kernel": "6.18.0"}, clock="monotonic", machines=table)) as w:
        for row in rows:
            w.append_row(row)
    out = tmp_path / "t.pftrace"
    export(str(src), "perfetto", str(out))
    t = check_trace(src, out.read_bytes())
    assert t.machine_ids == [0, 1] and t.machine_names == ["host", "lab-6.12"]
    guest_requests = [e for e in t.of(TE.TYPE_INSTANT, "page_request") if t.machine_of[e[1].track_uuid] == 1]
    assert len(guest_requests) == sum(1 for row in guest if row[R_KIND] == "page_request") > 0
    assert {tuple(t.path(e[1].track_uuid)[:2]) for e in guest_requests} == \
        {("lab-6.12", row[R_DEVICE]) for row in guest if row[R_KIND] == "page_request"}  # its own device names
    assert any(e[1].flow_ids for e in guest_requests), "the guest's answered groups have their arrows"
