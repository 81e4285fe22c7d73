"""A Chrome JSON trace (which ui.perfetto.dev and chrome://tracing open): the recording as Perfetto tracks.

Layout: one process for the PASID allocator, holding one thread per PASID whose slices are that PASID's
lifetimes (allocation to free); one process per device, holding a thread for the device's own events and one per
PASID, whose slices are the intervals the PASID was attached to a domain. Outstanding page-request groups
(first request to response) are async slices in the device's process, since several can be open at once on
the same PASID. Faults, anomalies, binds and other events are instants on their thread; markers and losses are
global instants. Times are microseconds from the recording's first event (its absolute start is in otherData).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TextIO

import numpy as np

from ..events import R_DEVICE, R_FIELDS, R_KIND, R_PASID, R_TS, Kind, Row
from ..index import RecordingIndex
from ..simulator import RULES
from .jsonl import json_default

ALLOCATOR_PID = 1
# Kinds drawn as slices; they appear as instants only when they failed.
SLICED_KINDS = frozenset({Kind.PASID_ALLOC, Kind.PASID_FREE, Kind.PASID_ATTACH, Kind.PASID_DETACH,
                          Kind.PASID_REPLACE, Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE})
_DUMPS = json.JSONEncoder(separators=(",", ":"), default=json_default).encode


def _short(text: str, n: int = 72) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


@dataclass(slots=True)
class _Open:
    """A slice waiting for its end: when it began, what it is called, what to say about it."""

    ts: int
    name: str
    args: dict[str, Any]
    requests: int = 1


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


class PerfettoWriter:
    """Walks the events in time order and writes trace events as slices close."""

    def __init__(self, idx: RecordingIndex, out: TextIO) -> None:
        self.idx = idx
        self.out = out
        self.t0 = idx.start_ns
        self.tracks = _Tracks()
        self.lifetimes: dict[int, _Open] = {}
        self.attached: dict[tuple[str, int], _Open] = {}
        self.groups: dict[tuple[str, int | None, int], tuple[_Open, int]] = {}
        self._ids = count(1)
        self._first = True
        self.written = 0

    def us(self, ts: int) -> float:
        return round((ts - self.t0) / 1000, 3)

    def emit(self, ev: dict[str, Any]) -> None:
        self.out.write("\n" if self._first else ",\n")
        self._first = False
        self.out.write(_DUMPS(ev))
        self.written += 1

    def _slice(self, pid: int, tid: int, o: _Open, end: int, cat: str) -> None:
        self.emit({"name": o.name, "cat": cat, "ph": "X", "ts": self.us(o.ts),
                   "dur": max(0.0, self.us(end) - self.us(o.ts)), "pid": pid, "tid": tid, "args": o.args})

    def _instant(self, row: list[Any], name: str, cat: str, args: dict[str, Any], scope: str = "t") -> None:
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
        end = idx.end_ns
        self._close_all(end)
        for a in idx.anomalies:
            self.anomaly(a)
        for m in self.tracks.meta:
            self.emit(m)
        other = {"source": idx.header.source, "clock": idx.header.clock, "start_ns": self.t0,
                 "title": idx.header.title, "kernel": idx.header.kernel}
        self.out.write(f'\n],"displayTimeUnit":"ns","otherData":{_DUMPS(other)}}}\n')
        return self.written

    def event(self, i: int, row: Row) -> None:
        kind, ts, dev, pasid, f = row[R_KIND], row[R_TS], row[R_DEVICE], row[R_PASID], row[R_FIELDS] or {}
        if kind == Kind.PASID_ALLOC and pasid is not None and not f.get("error"):
            self._end_lifetime(pasid, ts, "reallocated while live")
            who = f.get("owner") or f.get("vm") or ""
            self.lifetimes[pasid] = _Open(ts, f"PASID {pasid} {f.get('path', '?')}" + (f" {who}" if who else ""),
                                          {k: v for k, v in f.items() if k in ("path", "owner", "mm", "vm")})
        elif kind == Kind.PASID_FREE and pasid is not None:
            self._end_lifetime(pasid, ts, None)
        elif kind in (Kind.PASID_ATTACH, Kind.PASID_REPLACE) and dev is not None and pasid is not None:
            if not f.get("error"):
                self._end_attach(dev, pasid, ts, "replaced" if kind == Kind.PASID_REPLACE else "attached again")
                self.attached[(dev, pasid)] = _Open(ts, f"attached: {f.get('domain_type', '?')} domain",
                                                    {k: v for k, v in f.items() if k != "error"})
        elif kind == Kind.PASID_DETACH and dev is not None and pasid is not None:
            self._end_attach(dev, pasid, ts, None)
        elif kind == Kind.PAGE_REQUEST and dev is not None:
            self._request(row, f)
        elif kind == Kind.PAGE_RESPONSE and dev is not None:
            self._response(row, f)
        self._instant_for(row, kind, pasid, f)

    def _instant_for(self, row: list[Any], kind: str, pasid: int | None, f: dict[str, Any]) -> None:
        """Every event that is not (only) part of a slice shows as an instant where it happened."""
        failed = bool(f.get("error"))
        if kind == Kind.FAULT:
            self._instant(row, f"fault: {_short(f.get('reason') or 'fault', 60)}", "fault", dict(f))
        elif kind == Kind.MARKER:
            self._instant(row, _short(f.get("title") or f.get("text", "marker")), "marker", dict(f), "g")
        elif kind == Kind.LOST:
            self._instant(row, f"lost {f.get('count', '?')} events", "lost", dict(f), "g")
        elif kind in SLICED_KINDS:
            if failed or pasid is None and kind != Kind.PAGE_REQUEST:
                self._instant(row, f"{kind} failed" if failed else str(kind), str(kind), dict(f))
        else:
            name = str(kind) + (f" {f['name']}" if kind == Kind.UAPI and "name" in f else "")
            self._instant(row, name, str(kind), dict(f))

    def _end_lifetime(self, pasid: int, ts: int, why: str | None) -> None:
        o = self.lifetimes.pop(pasid, None)
        if o is not None:
            if why:
                o.args["ended"] = why
            pid, tid = self.tracks.tid("lifetime", None, pasid)
            self._slice(pid, tid, o, ts, "pasid")

    def _end_attach(self, dev: str, pasid: int, ts: int, why: str | None) -> None:
        o = self.attached.pop((dev, pasid), None)
        if o is not None:
            if why:
                o.args["ended"] = why
            pid, tid = self.tracks.tid("events", dev, pasid)
            self._slice(pid, tid, o, ts, "attach")

    def _request(self, row: list[Any], f: dict[str, Any]) -> None:
        key = (row[R_DEVICE], row[R_PASID], f.get("prg", -1))
        open_ = self.groups.get(key)
        if open_ is None:
            o = _Open(row[R_TS], f"PRG {f.get('prg')}" + ("" if row[R_PASID] is None else f" PASID {row[R_PASID]}"),
                      {"first_addr": f.get("addr"), "perm": f.get("perm")})
            gid = next(self._ids)
            self.groups[key] = (o, gid)
            pid = self.tracks.pid(row[R_DEVICE])
            self.emit({"name": o.name, "cat": "page_request", "ph": "b", "id": gid, "ts": self.us(o.ts),
                       "pid": pid, "tid": self.tracks.tid("events", row[R_DEVICE], row[R_PASID])[1],
                       "args": dict(o.args)})
        else:
            open_[0].requests += 1

    def _response(self, row: list[Any], f: dict[str, Any]) -> None:
        key = (row[R_DEVICE], row[R_PASID], f.get("prg", -1))
        open_ = self.groups.pop(key, None)
        if open_ is None:
            self._instant(row, f"page_response PRG {f.get('prg')} (no open group)", "page_response", dict(f))
            return
        o, gid = open_
        self._end_group(row[R_DEVICE], row[R_PASID], o, gid, row[R_TS],
                        {"code": f.get("code"), "by": f.get("by"), "requests": o.requests})

    def _end_group(self, dev: str, pasid: int | None, o: _Open, gid: int, ts: int, args: dict[str, Any]) -> None:
        pid, tid = self.tracks.tid("events", dev, pasid)
        self.emit({"name": o.name, "cat": "page_request", "ph": "e", "id": gid, "ts": self.us(max(ts, o.ts)),
                   "pid": pid, "tid": tid, "args": args})

    def _close_all(self, end: int) -> None:
        for pasid in list(self.lifetimes):
            self._end_lifetime(pasid, end, "still allocated when the recording ends")
        for dev, pasid in list(self.attached):
            self._end_attach(dev, pasid, end, "still attached when the recording ends")
        for (dev, pasid, _), (o, gid) in list(self.groups.items()):
            self._end_group(dev, pasid, o, gid, end, {"unanswered": True, "requests": o.requests})
        self.groups.clear()

    def anomaly(self, a: Any) -> None:
        rule = RULES.get(a.rule)
        title = rule.title if rule is not None else a.rule
        pid, tid = self.tracks.tid("events", a.device, a.pasid)
        self.emit({"name": f"anomaly: {title}", "cat": f"anomaly,{a.severity}", "ph": "i",
                   "s": "t" if a.device is not None else "p", "ts": self.us(a.ts_ns), "pid": pid, "tid": tid,
                   "args": {"rule": a.rule, "severity": str(a.severity), "explanation": a.explanation,
                            "evidence": list(a.evidence)}})


def write_perfetto(idx: RecordingIndex, out: TextIO, tick: Callable[[int], None] | None = None) -> int:
    """Write the trace (what the input lacks is in `idx.damage` once it is written)."""
    return PerfettoWriter(idx, out).write(tick)
