"""Recordings of several machines (a host and its VMs' guests) as one: clocks aligned, devices named by machine,
and the page-request groups a VMM passed between host and guest linked.

The first recording's machine is the reference: its clock is the merged timeline. Every other machine's times
are moved by the offset its clock snapshots give (`machines.align_by_clocks`), or by one the user gives; its
devices are named `machine/device` and its rows carry its machine's number, so that a guest's PASID 5 and the
host's are two things in every consumer. A VMM reads a page request from the host's iommufd fault queue and
injects it into its guest, then carries the guest's answer back: such a pair is linked (each event's `same_as`)
only where nothing else could be meant (see `find_links`).
"""

from __future__ import annotations

import heapq
import os
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError, placed
from .events import R_DEVICE, R_FIELDS, R_KIND, R_MACHINE, R_PASID, R_TS, Kind, Row, make
from .machines import Alignment, Machine, align_by_clocks, qualified
from .outputs import atomic_output
from .recording import DeviceInfo, Header, Recording, RecordingWriter
from .schema import TS_END
from .snapshot import stored

LINK_WINDOW_NS = 100_000_000  # how long a VMM may take to pass a group between host and guest
_LINKED = (Kind.PAGE_REQUEST, Kind.PAGE_RESPONSE)
Progress = Callable[[int, int], None]


@dataclass
class Source:
    """One recording to merge, its machine as it will be named, and how its clock was aligned."""

    path: str
    recording: Recording
    machine: Machine
    alignment: Alignment | None  # None for the reference

    @property
    def offset_ns(self) -> int:
        return 0 if self.alignment is None else self.alignment.offset_ns


def open_sources(paths: list[str], offsets: dict[str, int] | None = None,
                 names: dict[str, str] | None = None) -> list[Source]:
    """Open and align the recordings (the first is the reference), refusing with one clear line: a recording of
    several machines, one name or one boot given twice, a machine with neither clock readings nor an offset."""
    offsets, names = dict(offsets or {}), dict(names or {})
    if len(paths) < 2:
        raise InputError(paths[0] if paths else "merge", "", "give two or more recordings to merge")
    sources: list[Source] = []
    try:
        for path in paths:
            rec = Recording(path)
            table = rec.machines
            if rec.header_unread:  # (its machines, clocks and kernel are unknown: nothing to align it by)
                rec.close()
                raise InputError(path, "", "its header frame is damaged, so its machines, clocks and kernel "
                                           "are unknown: merge the recordings it was made from, or an "
                                           "undamaged copy")
            if len(table) > 1:
                raise InputError(path, "", f"already a merged recording of {len(table)} machines "
                                           f"({', '.join(m.name for m in table)}): merge the recordings it was "
                                           "made from")
            machine = replace(table[0], name=names.pop(path, table[0].name))
            sources.append(Source(path, rec, machine, None))
        if names:
            raise InputError(next(iter(names)), "", "--name names a file that is not among the recordings merged")
        _refuse_twice(sources)
        reference = sources[0]
        for s in sources[1:]:
            given = offsets.pop(s.machine.name, None)
            s.alignment = Alignment(given, "given", None) if given is not None else \
                align_by_clocks(reference.machine, s.machine)
            if s.alignment is None:
                raise InputError(s.path, "", f"machine {s.machine.name!r} cannot be aligned with "
                                             f"{reference.machine.name!r}: {_why_no_clock(reference, s)}; give "
                                             f"its offset, e.g. --offset {s.machine.name}=+1.5s (added to its "
                                             f"times)")
        if offsets:
            raise InputError(paths[0], "", f"--offset names machine {next(iter(offsets))!r}, which is not one of "
                                           f"the others merged ({', '.join(s.machine.name for s in sources[1:])}); "
                                           f"the first recording's machine is the reference and has no offset")
    except BaseException:
        for s in sources:
            s.recording.close()
        raise
    return sources


def _refuse_twice(sources: list[Source]) -> None:
    seen_names: dict[str, str] = {}
    seen_boots: dict[str, str] = {}
    for s in sources:  # the same boot first: the same file given twice has one name too
        boot = s.machine.boot_id
        if boot is not None and boot in seen_boots:
            raise InputError(s.path, "", f"recorded in the same boot (boot id {boot}) as {seen_boots[boot]}: "
                                         "one machine's recordings are one machine, not two to align")
        if boot is not None:
            seen_boots[boot] = s.path
    for s in sources:
        name = s.machine.name
        if name in seen_names:
            raise InputError(s.path, "", f"its machine is named {name!r}, as {seen_names[name]}'s is: name one "
                                         f"apart with --name {s.path}=NAME")
        seen_names[name] = s.path


def _why_no_clock(reference: Source, other: Source) -> str:
    for s in (other, reference):
        if s.machine.start is None and s.machine.end is None:
            return f"{s.path} carries no clock readings (recorded before machines, or imported)"
        if s.machine.clock != "monotonic":
            return f"{s.path}'s times are not on a known clock"
    return "their clock readings do not fit"


def _file_rows(source: Source, losses: list[str] | None) -> Iterator[Row]:
    """A source's readable rows, and a loss where its damage lost events (an unreadable chunk's, or events of
    unknown number in bytes skipped before a chunk), each added to `losses`: the merged file keeps them as
    losses on that machine, and its model stops trusting that machine's state there."""
    rec, why = source.recording, f"unreadable in {os.path.basename(source.path)}"
    for i, chunk in enumerate(rec.chunks):
        skipped = rec.loss_before(i)
        rows = rec.try_chunk_rows(i)
        lost = ([(*skipped, 0)] if skipped is not None else []) + \
            ([(chunk.t0, rec.said_of(i), chunk.n)] if rows is None else [])
        for ts, said, n in lost:
            if losses is not None:
                losses.append(f"{placed(source.path, said)}; the merged file keeps this as a loss on machine "
                              f"{source.machine.name}")
            yield make(Kind.LOST, ts, source="recording", count=n, why=why).to_row()
        yield from rows or ()


def _rows(source: Source, number: int, losses: list[str] | None = None) -> Iterator[Row]:
    """A source's rows as the merged recording holds them: moved onto the timeline, devices and machine named,
    its losses to damage included (`_file_rows`)."""
    offset, name = source.offset_ns, source.machine.name
    for row in _file_rows(source, losses):
        ts = row[R_TS] + offset
        if not 0 <= ts < TS_END:
            raise InputError(source.path, "", f"an event at {row[R_TS]} ns moved by {offset} ns falls outside the "
                                              "timeline (before its start): check the offset")
        row[R_TS] = ts
        if number:
            if row[R_DEVICE] is not None:
                row[R_DEVICE] = qualified(name, row[R_DEVICE])
            if len(row) > R_MACHINE:
                row[R_MACHINE] = number
            else:
                row.append(number)
        yield row


# -- links between host and guest ------------------------------------------------------------------------------
LinkKey = tuple[int, int, str, Any, Any, int | None, Any]  # (machine, ts, kind, device, pasid, prg, addr or code)


def _link_key(row: Row) -> LinkKey:
    f = row[R_FIELDS]
    detail = f.get("addr") if row[R_KIND] == Kind.PAGE_REQUEST else f.get("code")
    return (row[R_MACHINE] if len(row) > R_MACHINE else 0, row[R_TS], row[R_KIND], row[R_DEVICE], row[R_PASID],
            f.get("prg"), detail)


def find_links(keys: list[LinkKey], error_ns: dict[int, int],
               window_ns: int = LINK_WINDOW_NS) -> dict[LinkKey, LinkKey]:
    """Pairs of one reference (host) event and one other machine's (guest) that are the same page-request group's
    request, or its response, as a VMM passed it on; both ways in the result.

    A guest request is linked to a host request with the same kind, PASID, PRG index and address that came before
    it by at most `window_ns` (plus the guest's alignment error either way); a guest response to a host response
    with the same code that came after it as late. A link is claimed only when each is the other's only
    candidate, and never for an event whose every field matches another's: the same PRG index and address
    recur, and two that could be meant are not a link."""
    counts: defaultdict[LinkKey, int] = defaultdict(int)
    for k in keys:
        counts[k] += 1
    groups: defaultdict[tuple[Any, ...], dict[int, list[LinkKey]]] = defaultdict(lambda: defaultdict(list))
    for k in keys:  # (an event twice over is a candidate twice: it makes its group ambiguous, never linked)
        if k[5] is not None:
            groups[(k[2], k[4], k[5], k[6])][k[0]].append(k)
    links: dict[LinkKey, LinkKey] = {}
    for by_machine in groups.values():
        hosts = sorted(by_machine.get(0, []), key=lambda k: k[1])
        host_ts = [k[1] for k in hosts]
        guests = {m: sorted(ks, key=lambda k: k[1]) for m, ks in by_machine.items() if m}
        guest_ts = {m: [k[1] for k in ks] for m, ks in guests.items()}
        for machine, mine in guests.items():
            before, after = _reach(mine[0][2], window_ns, error_ns.get(machine, 0)) if mine else (0, 0)
            for g in mine:
                lo, hi = bisect_left(host_ts, g[1] - before), bisect_right(host_ts, g[1] + after)
                if hi - lo != 1 or counts[g] > 1:
                    continue
                h = hosts[lo]
                # the mirror: every guest event, of any machine, this host event could have been passed to
                if sum(bisect_right(ts, h[1] + early) - bisect_left(ts, h[1] - late)
                       for m, ts in guest_ts.items()
                       for early, late in [_reach(g[2], window_ns, error_ns.get(m, 0))]) == 1:
                    links[g], links[h] = h, g
    return links


def _reach(kind: str, window_ns: int, err: int) -> tuple[int, int]:
    """How far before and after a guest event its host partner may lie: a request reaches the guest after the
    host saw it, an answer the host after the guest gave it."""
    return (window_ns + err, err) if kind == Kind.PAGE_REQUEST else (err, window_ns + err)


# -- writing ------------------------------------------------------------------------------------------------------
@dataclass
class Merged:
    """What `merge` wrote: events per machine and the links it found."""

    events: dict[str, int]
    links: int
    losses: list[str]  # each source's damage kept as a loss, one line each (its file and place)


def merge(sources: list[Source], out: str | os.PathLike[str], *, window_ns: int = LINK_WINDOW_NS,
          progress: Progress | None = None, keep: bool = False) -> Merged:
    """Write the merged recording of `sources` (from `open_sources`) to `out`; `keep`: never over a file made under
    that name meanwhile (`outputs.atomic_output`)."""
    keys = [_link_key(r) for i, s in enumerate(sources) for r in _rows(s, i) if r[R_KIND] in _LINKED]
    errors = {i: s.alignment.error_ns or 0 for i, s in enumerate(sources) if s.alignment is not None}
    links = find_links(keys, errors, window_ns)
    reference = sources[0]
    table = [replace(reference.machine, aligned_by="reference", offset_ns=0, error_ns=0)]
    table += [replace(s.machine, offset_ns=s.offset_ns, aligned_by=s.alignment.by if s.alignment else None,
                      error_ns=s.alignment.error_ns if s.alignment else None, extra=_own(s))
              for s in sources[1:]]
    devices = [d for i, s in enumerate(sources) for d in _devices(s, i)]
    head = reference.recording.header
    header = Header(head.source, host=head.host, clock=head.clock, title=head.title or "merged recording",
                    description=f"merged from {', '.join(os.path.basename(s.path) for s in sources)}",
                    probes=head.probes, devices=devices, machines=table, extra=dict(head.extra))
    # the first machine's snapshot at its end, where its recording kept it (the others' are in their entries)
    end = {stored.KEY: ends} if (ends := (reference.recording.footer or {}).get(stored.KEY)) is not None else {}
    total = sum(s.recording.event_count for s in sources)
    per_machine = {s.machine.name: 0 for s in sources}
    names = [s.machine.name for s in sources]
    losses: list[str] = []
    with atomic_output(out, "wb", reads=[s.path for s in sources], keep=keep) as f, RecordingWriter(f, header) as w:
        rows = heapq.merge(*(_rows(s, i, losses) for i, s in enumerate(sources)), key=lambda r: r[R_TS])
        for n, row in enumerate(rows):
            if row[R_KIND] in _LINKED and links:
                partner = links.get(_link_key(row))
                if partner is not None:
                    row[R_FIELDS] = {**row[R_FIELDS], "same_as": [partner[1], partner[0], partner[3]]}
            per_machine[names[row[R_MACHINE] if len(row) > R_MACHINE else 0]] += 1
            w.append_row(row)
            if progress is not None and n % 65536 == 0:
                progress(n, total)
        w.close(**end)
    return Merged(per_machine, len(links) // 2, losses)


def _own(source: Source) -> dict[str, Any]:
    """What a machine other than the first keeps of its own recording in its entry: what its probes could see
    (the model judges its events by it: simulator.coverage) and its kernel snapshots, on the timeline and with
    its devices named as in its rows."""
    rec = source.recording
    snaps, _ = stored.snapshots(rec.header.extra, rec.footer)  # (one the reader cannot use is left out)
    return {**source.machine.extra, "source": rec.header.source, "probes": rec.header.probes,
            stored.KEY: [stored.moved(s, source.offset_ns, source.machine.name) for s in snaps]}


def _devices(source: Source, number: int) -> list[DeviceInfo]:
    if not number:
        return source.recording.devices
    return [replace(d, name=qualified(source.machine.name, d.name), extra={**d.extra, "machine": source.machine.name})
            for d in source.recording.devices]
