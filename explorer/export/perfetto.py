"""A Perfetto trace (protobuf TrackEvent packets), which ui.perfetto.dev and Perfetto's trace processor read.

Tracks nest machine -> device -> PASID -> lanes. The machine's first child is the PASID allocator, whose PASID
tracks hold each PASID's lifetimes (alloc to free); each device has a lane for its own events (no PASID) and a
track per PASID with lanes: `attached` (the domains it was attached to), `page requests` (the outstanding
page-request groups, request to response; overlapping groups take further lanes) and `events` (every event as
an instant with its fields as args, the model's findings with rule, severity, explanation and evidence). Markers
and losses sit on the machine's own lane. A flow (an arrow) joins each request of a group (the one that opened
it and every later one, `Intervals.later_requests`) to the response that answered it. Counters: live PASIDs and
the share of the PASID space they use (on the allocator), outstanding groups per device, and events lost so far
(on the machine).

A merged recording's machines (the host and named guests, `explorer/machines.py`) are Perfetto machines: each
has its own top track, SystemInfo (its name and kernel) and packet sequence, whose packets carry its number as
`machine_id` (none on the first machine's, as on the machine Perfetto records on); a guest's devices, PASIDs and
allocator sit under it. An interval or finding goes to the machine its device names, else to that of the event
that opened (or closed) it.

Every slice is one of the model's intervals (`RecordingIndex.intervals`, the simulator's one interpretation of
the events), written as it is: nothing here matches requests to responses again. Times are the recording's own
nanoseconds on its declared clock; names, categories and arg names are interned (incremental state on each
machine's packet sequence). Packets are written in time order, in batches, as they are made: memory beyond the index is
the intervals' times (16 bytes each) and what is open at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from ..events import COMMON_FIELDS, PASID_SPACE, R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_TS, Kind, machine_of
from ..index import RecordingIndex
from ..intervals import Interval, IntervalKind
from ..machines import HOST, machine_of_device
from ..simulator import RULES
from ..text import line

SEQUENCE = 1  # the first machine's trusted packet sequence; machine m's is SEQUENCE + m
BATCH = 2048  # packets serialised together (a Trace of many packets is the concatenation of one-packet Traces)
# The recording's clock names (header.clock) as Perfetto's builtin clocks; any other (a scenario's, an import's
# guess) is written on BOOTTIME, Perfetto's default trace clock, and named in the trace's metadata.
CLOCKS = {"monotonic": pb.BUILTIN_CLOCK_MONOTONIC, "boottime": pb.BUILTIN_CLOCK_BOOTTIME,
          "realtime": pb.BUILTIN_CLOCK_REALTIME, "monotonic_raw": pb.BUILTIN_CLOCK_MONOTONIC_RAW}
EVENTS_RANK = 1 << 20  # a PASID's events lane comes after its slices' lanes
SHOWN_KINDS = (IntervalKind.LIFETIME, IntervalKind.ATTACHMENT, IntervalKind.GROUP)  # binds are their events
# The order of things at one time: slices end before others begin there (a PASID reallocated at once), and
# begin before the event that opened them (its flow starts inside its group's slice).
_END, _BEGIN, _EVENT, _ANOMALY = range(4)
_INSTANT, _BEGIN_T, _END_T, _COUNTER = (pb.TrackEvent.TYPE_INSTANT, pb.TrackEvent.TYPE_SLICE_BEGIN,
                                        pb.TrackEvent.TYPE_SLICE_END, pb.TrackEvent.TYPE_COUNTER)
_INT64 = range(-(1 << 63), 1 << 63)
_RANK_END = 1 << 31  # a track's sibling_order_rank is an int32


@dataclass(slots=True)
class _Open:
    """A slice begun and not yet ended: its lane, the args its end carries, and what it added to a counter."""

    lane: int
    end_args: dict[str, Any]
    counter: tuple[Any, ...] | None  # a lane key to free afterwards and the counters it moved


class _Packets:
    """Packets, one sequence per machine (Perfetto's `machine_id` on every packet of a machine but the first, as
    a producer on another machine writes them), each sequence with its interned strings; track descriptors;
    written in batches."""

    def __init__(self, out: BinaryIO, clock: int) -> None:
        self.out = out
        self.trace = pb.Trace()
        self.written = 0
        self.clock = clock
        # per machine (sequence): interned event names, categories, arg names
        self._interned: dict[int, tuple[dict[str, int], dict[str, int], dict[str, int]]] = {}
        self._tracks: dict[Any, int] = {}
        self.machine_of_track: dict[int, int] = {}

    def packet(self, ts: int | None = None, machine: int = 0) -> pb.TracePacket:
        if len(self.trace.packet) >= BATCH:
            self.flush()  # before the next is added: the caller fills the packet it is given
        p = self.trace.packet.add()
        p.trusted_packet_sequence_id = SEQUENCE + machine
        if machine:
            p.machine_id = machine
        if machine not in self._interned:  # the sequence's first packet
            self._interned[machine] = ({}, {}, {})
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            p.trace_packet_defaults.timestamp_clock_id = self.clock
        else:
            p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        if ts is not None:
            p.timestamp = ts
        return p

    def flush(self) -> None:
        n = len(self.trace.packet)
        if n:
            self.out.write(self.trace.SerializeToString())
            self.written += n
            self.trace = pb.Trace()

    # -- interning ----------------------------------------------------------------------------------------------
    def iid(self, p: pb.TracePacket, table: int, text: str) -> int:
        """The interned id of `text` in `table` (0 event names, 1 categories, 2 arg names), interned in `p`
        the first time it is used."""
        ids = self._interned[p.trusted_packet_sequence_id - SEQUENCE][table]
        got = ids.get(text)
        if got is None:
            got = ids[text] = len(ids) + 1
            data = p.interned_data
            (data.event_names, data.event_categories, data.debug_annotation_names)[table].add(iid=got, name=text)
        return got

    # -- tracks -------------------------------------------------------------------------------------------------
    def track(self, key: Any, name: str, parent: int | None, rank: int = 0, counter: str | None = None,
              machine: int = 0) -> int:
        """The uuid of the track `key`, its descriptor written the first time (before anything refers to it) on
        its machine's sequence (its parent's machine, or `machine` for a top track)."""
        uuid = self._tracks.get(key)
        if uuid is None:
            uuid = self._tracks[key] = len(self._tracks) + 1
            m = self.machine_of_track[uuid] = machine if parent is None else self.machine_of_track[parent]
            d = self.packet(machine=m).track_descriptor
            d.uuid = uuid
            d.name = line(name)
            if parent is not None:
                d.parent_uuid = parent
            d.sibling_order_rank = rank
            d.child_ordering = pb.TrackDescriptor.EXPLICIT
            if counter is not None:
                d.counter.unit_name = counter
        return uuid


def _annotate(p: pb.TracePacket, out: pb.TrackEvent, packets: _Packets, args: dict[str, Any]) -> None:
    """`args` as debug annotations (names interned, text neutralised, lists and maps as nested values)."""
    for k, v in args.items():
        a = out.debug_annotations.add()
        a.name_iid = packets.iid(p, 2, line(str(k)))
        _value(a, v)


def _value(a: Any, v: Any) -> None:
    if isinstance(v, bool):
        a.bool_value = v
    elif isinstance(v, int) and v in _INT64:
        a.int_value = v
    elif isinstance(v, float):
        a.double_value = v
    elif isinstance(v, (list, tuple)):
        for x in v:
            _value(a.array_values.add(), x)
    elif isinstance(v, dict):
        for k, x in v.items():
            e = a.dict_entries.add()
            e.name = line(str(k))
            _value(e, x)
    elif isinstance(v, (bytes, bytearray)):
        a.string_value = bytes(v).hex()
    else:
        a.string_value = line(str(v))


class PerfettoWriter:
    """Walks the events, the model's intervals (their begins and their ends) and its findings in time order."""

    def __init__(self, idx: RecordingIndex, out: BinaryIO) -> None:
        self.idx = idx
        h = idx.header
        self.clock_name = h.clock
        self.p = _Packets(out, CLOCKS.get(h.clock, pb.BUILTIN_CLOCK_BOOTTIME))
        self.names = [m.name for m in h.machine_table]
        # the top tracks: a recording that names its machines shows their names; an older one, its host's
        self.titles = list(self.names) if h.machines else [h.host.get("hostname") or h.title or h.source or HOST]
        self._kind_names = idx.kind_names
        self._kinds = idx.kinds
        self._response_id = idx.kind_id(Kind.PAGE_RESPONSE)
        self._open: dict[int, _Open] = {}
        self._busy: dict[tuple[Any, Any], list[bool]] = {}  # (device, PASID) -> which group lanes are in use
        self._flows_out: dict[int, int] = {}  # event -> the flow it starts (a request of an answered group)
        self._flows_in: dict[int, list[int]] = {}  # event -> the flows it ends (the response that answered them)
        self._flows = 0  # flow ids handed out
        self._live: dict[int, int] = {}  # machine -> live PASIDs
        self._groups: dict[str, int] = {}  # device -> outstanding groups
        self._lost: dict[int, int] = {}  # machine -> events lost so far

    # -- tracks -------------------------------------------------------------------------------------------------
    def machine(self, m: int = 0) -> int:
        return self.p.track(("machine", m), self.titles[m], None, machine=m)

    def machine_of_device(self, device: str) -> tuple[int, str]:
        """(machine number, the device's own name) of a device name (another machine's are qualified)."""
        name, own = machine_of_device(device, self.names)
        return (0 if name is None else self.names.index(name)), own

    def _parent(self, device: str | None, m: int = 0) -> int:
        if device is None:
            return self.p.track(("allocator", m), "PASID allocator", self.machine(m), 0)
        dm, own = self.machine_of_device(device)
        return self.p.track(("device", device), own, self.machine(dm), 1 + self._device_rank(device))

    def _device_rank(self, device: str) -> int:
        names = self._device_order
        return names.setdefault(device, len(names))

    def pasid_track(self, device: str | None, pasid: int, m: int = 0) -> int:
        """A PASID's track: under its device, or under machine `m`'s allocator when it names no device."""
        return self.p.track(("pasid", device, pasid, m), f"PASID {pasid}", self._parent(device, m),
                            min(pasid + 1, _RANK_END - 1))  # (a PASID past 2^31, which a hostile file may hold, last)

    def lane(self, device: str | None, pasid: int | None, name: str, rank: int, m: int = 0) -> int:
        if pasid is None and device is None:
            return self.p.track(("lane", None, None, name, m), f"allocator {name}", self._parent(None, m), -1)
        if pasid is None:
            return self.p.track(("lane", device, None, name), f"{name} (no PASID)", self._parent(device), -1)
        return self.p.track(("lane", device, pasid, name, m), name, self.pasid_track(device, pasid, m), rank)

    def counter(self, key: Any, name: str, parent: int, unit: str) -> int:
        return self.p.track(("counter", *key), name, parent, -2, counter=unit)

    # -- writing -----------------------------------------------------------------------------------------------
    def event(self, ts: int, track: int, kind: int, name: str, category: str, args: dict[str, Any] | None,
              flows: tuple[list[int], list[int]] = ([], [])) -> pb.TrackEvent:
        p = self.p.packet(ts, self.p.machine_of_track[track])
        te = p.track_event
        te.type = kind
        te.track_uuid = track
        if kind != _END_T:
            te.name_iid = self.p.iid(p, 0, line(name))
            te.category_iids.append(self.p.iid(p, 1, category))
        if args:
            _annotate(p, te, self.p, args)
        if flows[0]:
            te.flow_ids.extend(flows[0])
        if flows[1]:
            te.terminating_flow_ids.extend(flows[1])
        return te

    def count(self, ts: int, track: int, value: float) -> None:
        p = self.p.packet(ts, self.p.machine_of_track[track])
        te = p.track_event
        te.type = _COUNTER
        te.track_uuid = track
        te.double_counter_value = value

    def write(self, tick: Callable[[int], None] | None = None) -> int:
        idx = self.idx
        self._device_order: dict[str, int] = {}
        for d in idx.device_names():
            self._device_rank(d)
        self.prologue()
        ivs = idx.intervals
        closed, open_now = ivs.closed_count, [iv for iv in ivs.open_now() if iv.kind in SHOWN_KINDS]
        starts, ends, shown = self._times(closed, open_now)
        end_ns = idx.end_ns
        anomalies = idx.anomalies
        # one time-ordered list of everything: (time, what, which)
        ts_all = np.concatenate([idx.ts, starts[shown], ends[shown],
                                 np.array([a.ts_ns for a in anomalies], np.int64)])
        phase = np.concatenate([np.full(idx.n, _EVENT, np.int8), np.full(int(shown.sum()), _BEGIN, np.int8),
                                np.full(int(shown.sum()), _END, np.int8), np.full(len(anomalies), _ANOMALY, np.int8)])
        which = np.concatenate([np.arange(idx.n), np.flatnonzero(shown), np.flatnonzero(shown),
                                np.arange(len(anomalies))])
        order = np.lexsort((which, phase, ts_all))
        del ts_all
        done = 0
        for a in range(0, len(order), 65536):
            part = order[a:a + 65536]
            for ph, w in zip(phase[part].tolist(), which[part].tolist(), strict=True):
                if ph == _EVENT:
                    self.instant(w)
                    done += 1
                    if tick is not None and done % 65536 == 0:
                        tick(done)
                elif ph == _BEGIN:
                    # (one row: unbounded, the store makes the 4,096 rows from `w` Python numbers to give the first)
                    iv = next(ivs.closed_since(w, w + 1)) if w < closed else open_now[w - closed]
                    self.begin(w, iv, end_ns)
                elif ph == _END:
                    self.end(w, int(ends[w]))
                else:
                    self.anomaly(anomalies[w])
        self.p.flush()
        return self.p.written

    def _times(self, closed: int, open_now: list[Interval]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each interval's start and end (the recording's end for one still open), and whether it is shown."""
        n = closed + len(open_now)
        starts, ends, shown = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
        end_ns = self.idx.end_ns
        for i, iv in enumerate(self.idx.intervals.closed_since(0)):
            starts[i], ends[i], shown[i] = iv.start_ns, iv.end_or(end_ns), iv.kind in SHOWN_KINDS
        for j, iv in enumerate(open_now):
            starts[closed + j], ends[closed + j], shown[closed + j] = iv.start_ns, max(end_ns, iv.start_ns), True
        return starts, ends, shown

    def prologue(self) -> None:
        """The clock, the machine and what the recording says of itself."""
        h = self.idx.header
        for m, machine in enumerate(h.machine_table):
            snap = self.p.packet(machine=m)  # its sequence's first packet also sets its clock (`_Packets.packet`)
            c = snap.clock_snapshot.clocks.add()
            c.clock_id = self.p.clock
            c.timestamp = self.idx.start_ns
            snap.clock_snapshot.primary_trace_clock = self.p.clock
            info = self.p.packet(machine=m).system_info
            kernel = machine.kernel or (h.host.get("kernel") if m == 0 else None)
            if kernel:
                info.utsname.sysname = "Linux"
                info.utsname.release = line(str(kernel))
            if h.host.get("arch") and m == 0:
                info.utsname.machine = line(str(h.host["arch"]))
            info.machine_name = line(self.titles[m])
            self._parent(None, m)
        for d in self._device_order:
            self._parent(d)
        about = {"source": h.source, "clock": h.clock, "title": h.title, "kernel": h.host.get("kernel"),
                 "start_ns": self.idx.start_ns, "events": self.idx.n}
        self.event(self.idx.start_ns, self.lane_machine(), _INSTANT, "recording", "recording",
                   {k: v for k, v in about.items() if v is not None})

    def lane_machine(self, m: int = 0) -> int:
        return self.p.track(("lane", "machine", m), "markers and losses", self.machine(m), -3)

    # -- events -------------------------------------------------------------------------------------------------
    def instant(self, i: int) -> None:
        row = self.idx.row(i)
        kind, dev, pasid, f = row[R_KIND], row[R_DEVICE], row[R_PASID], row[R_FIELDS] or {}
        args: dict[str, Any] = {"event": i}
        for k, v in zip(COMMON_FIELDS[R_PASID + 1:R_FIELDS], row[R_PASID + 1:R_FIELDS], strict=True):  # cpu... source
            if v is not None:
                args[k] = v
        args.update(f)
        m = machine_of(row)
        global_ = kind in (Kind.MARKER, Kind.LOST)
        track = self.lane_machine(m) if global_ else self.lane(dev, pasid, "events", EVENTS_RANK, m)
        flows = ([self._flows_out.pop(i)] if i in self._flows_out else [], self._flows_in.pop(i, []))
        self.event(row[R_TS], track, _INSTANT, _name(kind, f), str(kind), args, flows)
        if kind == Kind.LOST:
            lost = self._lost[m] = self._lost.get(m, 0) + (f["count"] if isinstance(f.get("count"), int) else 0)
            self.count(row[R_TS], self.counter(("lost", m), "events lost (so far)", self.machine(m), "events"), lost)

    def anomaly(self, a: Any) -> None:
        rule = RULES.get(a.rule)
        title = rule.title if rule is not None else a.rule
        track = self.lane(a.device, a.pasid, "events", EVENTS_RANK, self._machine_of(a, a.evidence[:1]))
        args = {"rule": a.rule, "severity": str(a.severity), "explanation": a.explanation,
                "evidence": list(a.evidence), "count": a.count}
        self.event(a.ts_ns, track, _INSTANT, f"anomaly: {title}", f"anomaly,{a.severity}", args)

    # -- the model's intervals ----------------------------------------------------------------------------------
    def begin(self, n: int, iv: Interval, end_ns: int) -> None:
        args: dict[str, Any] = {"opened_by": iv.open_idx if iv.open_idx >= 0 else "inferred by the model"}
        end_args: dict[str, Any] = {}
        if iv.close_idx is not None:
            end_args["closed_by"] = iv.close_idx if iv.close_idx >= 0 else "inferred by the model"
            if iv.close_idx >= 0:
                end_args["closed_by_kind"] = self._kind_names[int(self._kinds[iv.close_idx])]
        counter = None
        rec = iv.record
        if iv.kind == IntervalKind.LIFETIME:
            who = rec.owner if rec.owner not in (None, "", "unknown") else rec.vm or ""
            name = f"PASID {rec.pasid} {rec.path}" + (f" {who}" if who else "")
            args |= {k: v for k, v in (("path", rec.path), ("owner", rec.owner), ("mm", rec.mm), ("vm", rec.vm))
                     if v is not None}
            m = self._machine_of(iv, [iv.open_idx, iv.close_idx])
            lane, cat = self.lane(None, rec.pasid, "lifetime", 0, m), "pasid"
            self._live[m] = self._live.get(m, 0) + 1
            counter = ("live", m)
            self._live_counters(iv.start_ns, m)
            ended = "reallocated while live" if iv.replaced else "still allocated when the recording ends"
        elif iv.kind == IntervalKind.ATTACHMENT:
            name = f"attached: {rec.domain_type} domain"
            args |= {k: v for k, v in (("domain", rec.domain), ("domain_type", rec.domain_type),
                                       ("guest_pasid", rec.guest_pasid), ("vm", rec.vm),
                                       ("fault_queue", rec.fault_queue), ("route", rec.route)) if v is not None}
            lane, cat = self.lane(iv.device, iv.pasid, "attached", 0), "attach"
            ended = "replaced" if iv.replaced else "still attached when the recording ends"
        else:
            name = f"PRG {rec.prg}" + ("" if rec.pasid is None else f" PASID {rec.pasid}")
            busy = self._busy.setdefault((rec.device, rec.pasid), [])
            k = next((j for j, b in enumerate(busy) if not b), len(busy))
            busy[k:k + 1] = [True]
            lane = self.lane(rec.device, rec.pasid, "page requests" + (f" {k + 1}" if k else ""), 1 + k)
            cat = "page_request"
            args |= {"route": rec.route}
            end_args["requests"] = rec.requests
            if iv.close_idx is not None and iv.close_idx >= 0 and int(self._kinds[iv.close_idx]) == self._response_id:
                f = self.idx.row(iv.close_idx)[R_FIELDS] or {}
                end_args |= {"code": f.get("code"), "by": f.get("by")}
                if iv.open_idx >= 0:  # an arrow from each of its requests to the response
                    self._flow_to(iv.close_idx, [iv.open_idx, *self.idx.intervals.later_requests(iv.open_idx)])
            groups = self._groups[rec.device] = self._groups.get(rec.device, 0) + 1
            self.count(iv.start_ns, self._group_counter(rec.device), groups)
            counter = ("group", rec.device, rec.pasid, k)
            ended = "unanswered when the recording ends"
        if iv.is_open or iv.replaced:
            end_args["ended"] = ended
        self.event(iv.start_ns, lane, _BEGIN_T, name, cat, args)
        # a slice still open at the recording's end ends there, but what it counts is still live then
        self._open[n] = _Open(lane, end_args, None if iv.is_open else counter)
        if iv.end_or(end_ns) <= iv.start_ns:  # ends where it begins: ended here, before anything else there
            self.end(n, iv.start_ns)

    def _flow_to(self, response: int, requests: list[int]) -> None:
        """A flow from each of `requests` to `response` (begun before any of them is written: the group's slice
        begins before its first request, at the same time)."""
        ids = self._flows_in.setdefault(response, [])
        for r in requests:
            self._flows += 1
            self._flows_out[r] = self._flows
            ids.append(self._flows)

    def end(self, n: int, ts: int) -> None:
        o = self._open.pop(n, None)
        if o is None:
            return  # (ended where it began)
        self.event(ts, o.lane, _END_T, "", "", o.end_args)
        c = o.counter
        if c is None:
            return
        if c[0] == "live":
            self._live[c[1]] -= 1
            self._live_counters(ts, c[1])
        else:
            _, device, pasid, k = c
            self._busy[device, pasid][k] = False
            self._groups[device] -= 1
            self.count(ts, self._group_counter(device), self._groups[device])

    def _live_counters(self, ts: int, m: int) -> None:
        alloc = self._parent(None, m)
        self.count(ts, self.counter(("live", m), "live PASIDs", alloc, "PASIDs"), self._live[m])
        self.count(ts, self.counter(("space", m), "PASID space used (%)", alloc, "%"),
                   100.0 * self._live[m] / (PASID_SPACE - 1))

    def _machine_of(self, item: Any, evidence: Iterable[int | None]) -> int:
        """The machine an interval or finding belongs to: its own when it names one, its device's, else that of
        the first event of its evidence (the opening or closing event; the first machine when none)."""
        m = getattr(item, "machine", None)
        if isinstance(m, int):
            return m
        if item.device is not None:
            return self.machine_of_device(item.device)[0]
        i = next((e for e in evidence if e is not None and 0 <= e < self.idx.n), None)
        return 0 if i is None else machine_of(self.idx.row(i))

    def _group_counter(self, device: str) -> int:
        return self.counter(("groups", device), "outstanding page-request groups", self._parent(device), "groups")


def _name(kind: str, f: dict[str, Any]) -> str:
    """An instant's name: its kind, with what tells it apart at a glance."""
    if f.get("error"):
        return f"{kind} failed"
    if kind == Kind.FAULT:
        reason = " ".join(str(f.get("reason") or "").split())[:60]
        return f"fault: {reason}" if reason else "fault"
    if kind in (Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE):
        return f"{kind} PRG {f.get('prg')}"
    if kind == Kind.UAPI and "name" in f:
        return f"uapi {f['name']}"
    if kind == Kind.MARKER:
        return " ".join(str(f.get("title") or f.get("text") or "marker").split())[:72]
    if kind == Kind.LOST:
        return f"lost {f.get('count', '?')} events"
    return str(kind)


def write_perfetto(idx: RecordingIndex, out: BinaryIO, tick: Callable[[int], None] | None = None) -> int:
    """Write the trace (what the input lacks is in `idx.damage` once it is written); returns the packets."""
    return PerfettoWriter(idx, out).write(tick)


def read_packets(data: bytes) -> Iterator[pb.TracePacket]:
    """The packets of a trace written here (for tests and tools that check one)."""
    trace = pb.Trace()
    trace.ParseFromString(data)
    yield from trace.packet
