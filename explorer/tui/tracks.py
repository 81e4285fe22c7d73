"""The rows of the timeline: the allocator and each device, each expandable into one row per PASID.

A row aggregates one or more index tracks (a device's row sums all its PASIDs while collapsed). Filters hide rows;
nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..index import RecordingIndex
from ..machines import machine_of_device
from ..pasid_spaces import foreign_pasids
from ..text import line, searchable
from ..units import fmt_ns
from .filters import Filter
from .spans import Spans, lifetime_key

ALLOCATOR = "allocator"


@dataclass(slots=True)
class TrackRow:
    """One timeline row. `group` rows (allocator, a device) have children; `span_key` names its bars."""

    key: tuple[object, ...]
    label: str
    tracks: list[int]
    depth: int = 0
    device: str | None = None
    pasid: int | None = None
    span_key: tuple[object, object] | None = None
    children: list[TrackRow] = field(default_factory=list)
    only: frozenset[int | None] | None = None  # a group under a filter: the PASIDs of the children that passed

    def __post_init__(self) -> None:
        self.label = line(self.label)  # device names and owners come from the recording: one line, no controls

    @property
    def is_group(self) -> bool:
        return self.depth == 0


def build_rows(index: RecordingIndex, spans: Spans | None = None) -> list[TrackRow]:
    """The allocator row (its children: one per PASID number, with its lifetimes) then one row per device; in a
    merged recording, each machine's devices follow a row of that machine (`machine_rows`)."""
    tracks = index.tracks
    by_device: dict[str | None, list[tuple[int | None, int]]] = {}
    for tid, t in enumerate(tracks):
        by_device.setdefault(t.device, []).append((t.pasid, tid))
    machines = [m.name for m in index.header.machines]
    of_first = {d for d in by_device if d is None or machine_of_device(d, machines)[0] is None}
    # a driver's own PASIDs (amdgpu's GPU VMs) are no numbers of the IOMMU's space: not under the allocator
    foreign = foreign_pasids(index.recording.footer if index.recording is not None else None)
    pasids = sorted({t.pasid for t in tracks if t.pasid is not None and t.device in of_first
                     and (t.device, t.pasid) not in foreign})
    own = {p: tid for p, tid in by_device.get(None, []) if p is not None}
    alloc = TrackRow((ALLOCATOR,), ALLOCATOR, [tid for _, tid in by_device.get(None, [])], device=None)
    for p in pasids:
        owner = _owner_text(spans, ("pasid", p))
        alloc.children.append(TrackRow((ALLOCATOR, p), f"PASID {p}{owner}", [own[p]] if p in own else [], 1, None, p,
                                  ("pasid", p)))
    if (None, None) in {(t.device, t.pasid) for t in tracks}:
        host = [tid for p, tid in by_device[None] if p is None]
        alloc.children.insert(0, TrackRow((ALLOCATOR, "host"), "host-wide", host, 1, None, None, None))
    rows = [alloc]
    device_rows = [_device_row(index, spans, dev, by_device, foreign) for dev in index.device_names()]
    return rows + (machine_rows(index, spans, device_rows) if len(machines) > 1 else device_rows)


def _device_row(index: RecordingIndex, spans: Spans | None, dev: str,
                by_device: dict[str | None, list[tuple[int | None, int]]],
                foreign: dict[tuple[str | None, int], str]) -> TrackRow:
    """A device's row, its children one per PASID it used (a driver's own PASID named with its space)."""
    entries = sorted(by_device.get(dev, []), key=lambda x: -1 if x[0] is None else x[0])
    info = index.devices.get(dev)
    label = dev if info is None or not info.driver else f"{dev} {info.driver}"
    row = TrackRow(("device", dev), label, [tid for _, tid in entries], 0, dev)
    for p, tid in entries:
        space = f"{foreign[dev, p]} " if (dev, p) in foreign else ""
        label = "no PASID" if p is None else f"{space}PASID {p}{_owner_text(spans, (dev, p))}"
        row.children.append(TrackRow(("device", dev, p), label, [tid], 1, dev, p,
                                     (dev, p) if p is not None else None))
    return row


def machine_rows(index: RecordingIndex, spans: Spans | None, device_rows: list[TrackRow]) -> list[TrackRow]:
    """A merged recording's devices under their machines: a row for each machine (its marks: all its devices'
    events; a guest's opens into its allocator's PASIDs, whose lifetimes are its own), then its devices."""
    table = index.header.machines
    names = [m.name for m in table]
    out: list[TrackRow] = []
    for number, m in enumerate(table):
        mine = [r for r in device_rows if machine_of_device(r.device or "", names)[0] == (m.name if number else None)]
        how = "the timeline's clock" if not number else \
            f"{fmt_ns(m.offset_ns)} {'as given' if m.error_ns is None else f'±{fmt_ns(m.error_ns)}'}"
        label = f"machine {m.name}{f' {m.kernel}' if m.kernel else ''} · {how}"
        row = TrackRow(("machine", m.name), label, [t for r in mine for t in r.tracks], 0, None)
        if number:
            numbers = sorted({p for r in mine for c in r.children if (p := c.pasid) is not None})
            row.children = [TrackRow(("machine", m.name, p), f"PASID {p}{_owner_text(spans, lifetime_key(p, number))}",
                                     [], 1, None, p, lifetime_key(p, number)) for p in numbers]
        out += [row, *mine]
    return out


def _owner_text(spans: Spans | None, key: tuple[object, object]) -> str:
    """The process or VM holding the row's PASID (the number, or its use on one device), when it only ever had one
    holder."""
    holders = spans.holders.get(key) if spans is not None else None
    if not holders:
        return ""
    return f" {next(iter(holders.values()))}" if len(holders) == 1 else f" ({len(holders)} holders)"


def matches(row: TrackRow, flt: Filter, index: RecordingIndex, spans: Spans | None,
            kind_tracks: set[int] | None) -> bool:
    """Whether a row without children survives the filter: every given criterion must hold (a group survives
    through its children: see `visible_rows`). Names match as shown and raw (`searchable`)."""
    if flt.devices and not (row.device and any(d in searchable(row.device) for d in flt.devices)):
        return False
    if flt.pasids and row.pasid not in flt.pasids:
        return False
    owners = spans.owners.get(row.span_key, ()) if spans is not None and row.span_key is not None else ()
    names = {searchable(n) for n in owners} if flt.pids or flt.comms or flt.words else set()
    if flt.pids and not any(str(p) in names for p in flt.pids):
        return False
    if flt.comms and not any(c in n for c in flt.comms for n in names):
        return False
    if kind_tracks is not None and not kind_tracks.intersection(row.tracks):
        return False
    if flt.words:
        info = index.devices.get(row.device) if row.device else None
        hay = " ".join([row.label.lower(), *names, searchable(info.driver or "") if info else ""])
        return all(w in hay for w in flt.words)
    return True


def visible_rows(rows: Iterable[TrackRow], expanded: set[tuple[object, ...]], flt: Filter, index: RecordingIndex,
                 spans: Spans | None, kind_tracks: set[int] | None = None) -> list[TrackRow]:
    """The rows on screen, in order: groups, then the children of expanded groups, filters applied (a group then
    sums only the children that passed)."""
    out: list[TrackRow] = []
    for row in rows:
        kept = row.children
        if flt.active:
            kept = [c for c in row.children if matches(c, flt, index, spans, kind_tracks)]
            if not (kept if row.children else matches(row, flt, index, spans, kind_tracks)):
                continue
            if row.children:
                row = narrowed(row, kept)
        out.append(row)
        if row.key in expanded:
            out.extend(kept)
    return out


def narrowed(group: TrackRow, kept: list[TrackRow]) -> TrackRow:
    """A copy of `group` whose marks and anomalies come from the `kept` children only."""
    return TrackRow(group.key, group.label, [t for c in kept for t in c.tracks], group.depth, group.device, group.pasid,
               group.span_key, group.children, frozenset(c.pasid for c in kept))
