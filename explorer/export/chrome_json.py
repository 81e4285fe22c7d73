"""A Chrome JSON trace (which ui.perfetto.dev and chrome://tracing open): the recording as Perfetto tracks.

Layout: one process for the PASID allocator, holding one thread per PASID whose slices are that PASID's
lifetimes (allocation to free); one process per device, holding a thread for the device's own events and one per
PASID, whose slices are the intervals the PASID was attached to a domain. Outstanding page-request groups
(first request to response) are async slices in the device's process, since several can be open at once on
the same PASID. Faults, anomalies, binds and other events are instants on their thread; markers and losses are
global instants. Times are microseconds from the recording's first event (its absolute start is in otherData).

The slices are the model's intervals (`RecordingIndex.intervals`), written as they are: a response the model
matched to a group by its index alone ends that group here too, and a lifetime the model inferred (a bind
without a seen allocation) is a slice like any other. Each slice's args name the events that opened and closed
it (`opened_by`, `closed_by`, event indices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TextIO

import numpy as np

from ..events import R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_TS, Kind, Row
from ..index import RecordingIndex
from ..intervals import Interval, IntervalKind
from ..simulator import RULES
from ..text import json_encoder, json_text

ALLOCATOR_PID = 1
# Kinds drawn as slices; they appear as instants only when they failed.
SLICED_KINDS = frozenset({Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.PASID_ATTACH, Kind.PASID_DETACH,
                          Kind.PASID_REPLACE, Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE})
_ENCODER = json_encoder(separators=(",", ":"))


def _dumps(value: Any) -> str:
    return json_text(value, _ENCODER)


def _short(text: str, n: int = 72) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


@dataclass(slots=True)
class _Tracks:
    """Process and thread ids, and the metadata events that name them."""

    meta: list[dict[str, Any]] = field(default_factory=list)
    pids: dict[str | None, int] = field(default_factory=dict)
    tids: dict[tuple[str, str | None, int | None], int] = field(default_factory=dict)
    _next_pid: Iterator[int] = field(default_factory=lambda: count(ALLOCATOR_PID))
    _next_tid: Iterator[int] = field(default_factory=lambda: count(1))

    def pid(self, device: str | None) -> int:
        pid = self.pids.get(device)
        if pid is None:
            pid = self.pids[device] = next(self._next_pid)
            name = "PASID allocator" if device is None else device
            self.meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}})
            self.meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                              "args": {"sort_index": pid}})
        return pid

    def tid(self, role: str, device: str | None, pasid: int | None) -> tuple[int, int]:
        if device is None and pasid is not None:
            role = "lifetime"  # events about a PASID but no device sit on that PASID's allocator thread
        pid = self.pid(device)
        key = (role, device, pasid)
        tid = self.tids.get(key)
        if tid is None:
            tid = self.tids[key] = next(self._next_tid)
            if role == "lifetime":
                name = f"PASID {pasid}"
            elif pasid is None:
                name = "allocator events" if device is None else "device (no PASID)"
            else:
                name = f"PASID {pasid}"
            self.meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
            self.meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                              "args": {"sort_index": -1 if pasid is None else pasid}})
        return pid, tid


class ChromeJsonWriter:
    """Walks the events in time order for the instants, then writes the model's intervals as slices."""

    def __init__(self, idx: RecordingIndex, out: TextIO) -> None:
        self.idx = idx
        self.out = out
        self.t0 = idx.start_ns
        self.tracks = _Tracks()
        self._ids = count(1)
        self._first = True
        self.written = 0
        # responses that closed a group: the rest are instants ("no open group")
        self._kind_names = idx.kind_names
        self._answers = {iv.close_idx for iv in idx.intervals.of(IntervalKind.GROUP) if iv.close_idx is not None}

    def _kind_of(self, i: int) -> str:
        return self._kind_names[int(self.idx.kinds[i])]


    def us(self, ts: int) -> float:
        return round((ts - self.t0) / 1000, 3)

    def emit(self, ev: dict[str, Any]) -> None:
        self.out.write("\n" if self._first else ",\n")
        self._first = False
        self.out.write(_dumps(ev))
        self.written += 1

    def _instant(self, row: Row, name: str, cat: str, args: dict[str, Any], scope: str = "t") -> None:
        pid, tid = self.tracks.tid("events", row[R_DEVICE], row[R_PASID])
        self.emit({"name": name, "cat": cat, "ph": "i", "s": scope, "ts": self.us(row[R_TS]), "pid": pid,
                   "tid": tid, "args": args})

    # -- the walk -----------------------------------------------------------------------------------------------
    def write(self, tick: Callable[[int], None] | None = None) -> int:
        idx = self.idx
        self.out.write('{"traceEvents":[')
        self.tracks.pid(None)  # the allocator comes first, then devices in the recording's order
        for d in idx.device_names():
            self.tracks.pid(d)
        ts = idx.ts
        order = np.argsort(ts, kind="stable") if idx.n and np.any(np.diff(ts) < 0) else range(idx.n)
        for k, i in enumerate(order):
            self.event(int(i), idx.row(int(i)))
            if tick is not None and k % 65536 == 0:
                tick(k)
        for iv in idx.intervals:
            self.interval(iv)
        for a in idx.anomalies:
            self.anomaly(a)
        for m in self.tracks.meta:
            self.emit(m)
        other = {"source": idx.header.source, "clock": idx.header.clock, "start_ns": self.t0,
                 "title": idx.header.title, "kernel": idx.header.kernel}
        self.out.write(f'\n],"displayTimeUnit":"ns","otherData":{_dumps(other)}}}\n')
        return self.written

    def event(self, i: int, row: Row) -> None:
        """Every event that is not (only) part of a slice shows as an instant where it happened."""
        kind, pasid, f = row[R_KIND], row[R_PASID], row[R_FIELDS] or {}
        failed = bool(f.get("error"))
        if kind == Kind.FAULT:
            self._instant(row, f"fault: {_short(f.get('reason') or 'fault', 60)}", "fault", dict(f))
        elif kind == Kind.MARKER:
            self._instant(row, _short(f.get("title") or f.get("text", "marker")), "marker", dict(f), "g")
        elif kind == Kind.LOST:
            self._instant(row, f"lost {f.get('count', '?')} events", "lost", dict(f), "g")
        elif kind == Kind.PAGE_RESPONSE and i not in self._answers:
            self._instant(row, f"page_response PRG {f.get('prg')} (no open group)", "page_response", dict(f))
        elif kind in SLICED_KINDS:
            if failed or pasid is None and kind not in (Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE):
                self._instant(row, f"{kind} failed" if failed else str(kind), str(kind), dict(f))
        else:
            name = str(kind) + (f" {f['name']}" if kind == Kind.UAPI and "name" in f else "")
            self._instant(row, name, str(kind), dict(f))

    # -- the model's intervals ----------------------------------------------------------------------------------
    def _evidence(self, iv: Interval) -> dict[str, Any]:
        """The events that opened and closed it, and how it ended when no event of its own ended it."""
        out: dict[str, Any] = {"opened_by": iv.open_idx if iv.open_idx >= 0 else "inferred by the model"}
        if iv.close_idx is not None:
            out["closed_by"] = iv.close_idx if iv.close_idx >= 0 else "inferred by the model"
            if iv.close_idx >= 0:
                out["closed_by_kind"] = self._kind_of(iv.close_idx)
        return out

    def interval(self, iv: Interval) -> None:
        if iv.kind == IntervalKind.LIFETIME:
            self._lifetime(iv)
        elif iv.kind == IntervalKind.ATTACHMENT:
            self._attachment(iv)
        elif iv.kind == IntervalKind.GROUP:
            self._group(iv)
        # binds show as their events' instants and as the SVA attachment the model gives them

    def _slice(self, pid: int, tid: int, iv: Interval, name: str, cat: str, args: dict[str, Any]) -> None:
        end = iv.end_or(self.idx.end_ns)
        self.emit({"name": name, "cat": cat, "ph": "X", "ts": self.us(iv.start_ns),
                   "dur": max(0.0, self.us(end) - self.us(iv.start_ns)), "pid": pid, "tid": tid,
                   "args": args | self._evidence(iv)})

    def _lifetime(self, iv: Interval) -> None:
        live = iv.record
        who = live.owner if live.owner not in (None, "", "unknown") else live.vm or ""
        args = {k: v for k, v in (("path", live.path), ("owner", live.owner), ("mm", live.mm), ("vm", live.vm))
                if v is not None}
        if iv.replaced:
            args["ended"] = "reallocated while live"
        elif iv.is_open:
            args["ended"] = "still allocated when the recording ends"
        pid, tid = self.tracks.tid("lifetime", None, live.pasid)
        self._slice(pid, tid, iv, f"PASID {live.pasid} {live.path}" + (f" {who}" if who else ""), "pasid", args)

    def _attachment(self, iv: Interval) -> None:
        att = iv.record
        args = {k: v for k, v in (("domain", att.domain), ("domain_type", att.domain_type),
                                  ("guest_pasid", att.guest_pasid), ("vm", att.vm), ("fault_queue", att.fault_queue),
                                  ("route", att.route)) if v is not None}
        if iv.replaced:
            args["ended"] = "replaced"
        elif iv.is_open:
            args["ended"] = "still attached when the recording ends"
        pid, tid = self.tracks.tid("events", iv.device, iv.pasid)
        self._slice(pid, tid, iv, f"attached: {att.domain_type} domain", "attach", args)

    def _group(self, iv: Interval) -> None:
        g = iv.record
        name = f"PRG {g.prg}" + ("" if g.pasid is None else f" PASID {g.pasid}")
        pid, tid = self.tracks.tid("events", g.device, g.pasid)
        first = self.idx.row(iv.open_idx)[R_FIELDS] if iv.open_idx >= 0 else {}
        gid = next(self._ids)
        self.emit({"name": name, "cat": "page_request", "ph": "b", "id": gid, "ts": self.us(iv.start_ns),
                   "pid": pid, "tid": tid, "args": {"first_addr": first.get("addr"), "perm": first.get("perm")}})
        if iv.is_open:
            args: dict[str, Any] = {"unanswered": True, "requests": g.requests}
        elif iv.close_idx is not None and iv.close_idx >= 0 and self._kind_of(iv.close_idx) == Kind.PAGE_RESPONSE:
            f = self.idx.row(iv.close_idx)[R_FIELDS]
            args = {"code": f.get("code"), "by": f.get("by"), "requests": g.requests}
        else:
            args = {"requests": g.requests}
        self.emit({"name": name, "cat": "page_request", "ph": "e", "id": gid,
                   "ts": self.us(iv.end_or(self.idx.end_ns)), "pid": pid, "tid": tid,
                   "args": args | self._evidence(iv)})

    def anomaly(self, a: Any) -> None:
        rule = RULES.get(a.rule)
        title = rule.title if rule is not None else a.rule
        pid, tid = self.tracks.tid("events", a.device, a.pasid)
        self.emit({"name": f"anomaly: {title}", "cat": f"anomaly,{a.severity}", "ph": "i",
                   "s": "t" if a.device is not None else "p", "ts": self.us(a.ts_ns), "pid": pid, "tid": tid,
                   "args": {"rule": a.rule, "severity": str(a.severity), "explanation": a.explanation,
                            "evidence": list(a.evidence)}})


def write_chrome_json(idx: RecordingIndex, out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    """Write the trace (what the input lacks is in `idx.damage` once it is written)."""
    return ChromeJsonWriter(idx, out).write(tick)
