"""The allocator panel: the simulator's state at the cursor, in the model's own words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ..events import PASID_SPACE
from ..explain import model_progress, uncertainty
from ..index import RecordingIndex
from ..machines import machine_of_device
from ..reconcile import Disagreement, kernel_rows, recorded_snapshots, recording_disagreements, state_beside
from ..simulator import SimState
from ..snapshot import stored
from ..text import line
from ..units import fmt_ns
from .palette import ink
from .panel import Panel, PanelText, columns

if TYPE_CHECKING:
    from .session import Session

MAX_LISTED = 40
_WAITING = {"kernel": "to be answered by the kernel", "user": "waiting for user space (its iommufd fault queue)",
            "guest": "waiting for the guest", "auto": "no fault handler: the kernel answers it itself"}


class AllocatorPanel(Panel):
    NAME = TITLE = "allocator"
    DOC = "the simulated allocator's state at the cursor"

    def depends_on(self, s: Session) -> tuple[object, ...]:
        known = s.index.covers(s.cursor)
        return (s.cursor, s.index.n, None if known else s.index.modelled, machine_of_row(s))  # (the progress it shows)

    def fill(self, s: Session) -> None:
        st = s.state_at(s.cursor) if s.index.covers(s.cursor) else None
        machines = s.index.header.machines
        if st is not None and len(machines) > 1:  # a merged recording: the state of the selected row's machine
            m = machine_of_row(s)
            st = st.of_machine(m) or SimState(machine=m)
        self.show_state(s.index, st, s.cursor)
    _kernel: tuple[RecordingIndex, KernelState] | None = None

    def show_state(self, index: RecordingIndex, st: SimState | None, cursor: int) -> None:
        """`st` None: the model, still running, has not reached the cursor yet."""
        if st is None:
            self.set_body(PanelText(f"at +{fmt_ns(cursor - index.start_ns)} · {model_progress(index)} "
                                    f"({index.modelled:,} of {index.n:,} events): the allocator's state here shows "
                                    "when it gets this far", style="dim"))
            return
        alarm = ink("red", self.dark)
        body = render_state(index, st, cursor, alarm)
        if len(index.header.machines) > 1:
            name = line(index.header.machines[st.machine].name)
            body = PanelText("\n").join([PanelText(f"machine {name} (the selected row's; each machine has its own)",
                                                    style="bold"), body])
        if self._kernel is None or self._kernel[0] is not index:
            self._kernel = (index, KernelState(index))
        kernel = self._kernel[1].render(cursor, alarm)
        self.set_body(body if kernel is None else PanelText("\n").join([body, kernel]))


def machine_of_row(s: Session) -> int:
    """The number of the machine the selected row belongs to in a merged recording (0: the first's)."""
    names = [m.name for m in s.index.header.machines]
    row = s.row
    if row is None or len(names) < 2:
        return 0
    if row.key[0] == "machine":
        return names.index(str(row.key[1]))
    name = machine_of_device(row.device, names)[0] if row.device else None
    return names.index(name) if name else 0


class KernelState:
    """The recording's snapshots of the kernel's own PASID state, each beside the model at its time (read once:
    the model's state at a snapshot's time and the disagreements do not change as the cursor moves)."""

    def __init__(self, index: RecordingIndex) -> None:
        self.index = index
        self.snaps, self.problems = recorded_snapshots(index)
        self._states: dict[tuple[int, str | None], SimState] = {}  # by time and machine (None: the first)
        self._disagreements: list[Disagreement] | None = None

    def render(self, cursor: int, alarm: str) -> Text | None:
        """The snapshot nearest `cursor` (the end's, at the end of the recording), or None when there is none."""
        if not self.snaps:
            return None
        snap = min(self.snaps, key=lambda s: abs(s["taken_ns"] - cursor))
        ts, machine = snap["taken_ns"], snap.get(stored.MACHINE)
        if (ts, machine) not in self._states:
            self._states[ts, machine] = state_beside(self.index, snap, ts)
        if self._disagreements is None:
            self._disagreements = recording_disagreements(self.index, self.snaps)
        when = f"+{fmt_ns(ts - self.index.start_ns)}" if ts >= self.index.start_ns else \
            f"{fmt_ns(self.index.start_ns - ts)} before the first event"
        of = f" of machine {machine}" if machine is not None else ""
        out = [PanelText(f"kernel snapshot{of} at {when} (the nearest of {len(self.snaps)}), beside the model "
                         "then:", style="bold")]
        rows = kernel_rows(snap, self._states[ts, machine])
        out.append(columns(rows, ("device", "kernel", "model")) if rows else
                   PanelText("no device with a PASID table, a PASID capability or an attachment", style="dim"))
        names = [m.name for m in self.index.header.machines]
        for d in self._disagreements:  # (this snapshot's: at its time, on its machine's devices)
            if d.ts_ns == ts and machine_of_device(d.device, names)[0] == machine:
                out.append(PanelText(f"  {d.rule}: {d.explanation}", style=alarm if d.severity == "error" else ""))
        out += [PanelText(f"  unusable snapshot: {why}", style="dim") for why in self.problems]
        unread = snap.get("unreadable", {})
        if unread:
            out.append(PanelText(f"  not read: {'; '.join(sorted(unread))}", style="dim"))
        for part in out:
            part.rstrip()
        return PanelText("\n").join(out)


def render_state(index: RecordingIndex, st: SimState, cursor: int, alarm: str) -> Text:
    """The state at `cursor`; `alarm` is the theme's colour for what needs attention."""
    parts: list[Text] = []
    head = PanelText(f"at +{fmt_ns(cursor - index.start_ns)} · {index.index_at(cursor):,} of {index.n:,} events")
    if st.uncertain:
        head.append(f"\nUNCERTAIN: {uncertainty(index, st)}; state below may be incomplete", style=f"bold {alarm}")
    parts.append(head)
    peak = f" (PASID {st.high_water_pasid})" if st.high_water else ""  # (none yet: no PASID to name)
    parts.append(PanelText(f"space: {len(st.pasids):,} live of {PASID_SPACE - 1:,} · high-water {st.high_water:,}"
                           f"{peak} · {st.allocs:,} allocs, {st.frees:,} frees · next free {st.lowest_free()}",
                           style="dim"))
    listed = []
    for p in st.pasids.lowest(MAX_LISTED):
        live = st.pasids[p]
        devs = ", ".join(f"{d} {a.domain_type}" + (f" guest PASID {a.guest_pasid}" if a.guest_pasid is not None else "")
                         for d, a in sorted(st.devices_of(p).items())) or "none"
        owner = live.owner + (f" vm {live.vm}" if live.vm else "") + ("" if live.certain else " (inferred)")
        listed.append((str(p), live.path, owner, devs))
    parts.append(columns(listed, ("PASID", "path", "owner", "attached (domain)")) if listed
                 else PanelText("no PASID is allocated", style="dim"))
    if len(st.pasids) > MAX_LISTED:
        parts.append(PanelText(f"… and {len(st.pasids) - MAX_LISTED:,} more live PASIDs", style="dim"))
    groups = st.outstanding(cursor)
    if groups:
        parts.append(PanelText(f"outstanding page-request groups: {len(groups)}", style="bold"))
        for g, age in groups[:MAX_LISTED // 4]:
            stale = age >= index.stale_ns
            parts.append(PanelText(f"  {line(g.device)} PASID {g.pasid} PRG {g.prg}: age {fmt_ns(age)}, "
                                   f"{g.requests} req, {_WAITING.get(g.route, f'to be answered by {g.route}')}"
                                   f"{' (waiting for Last)' if not g.closed else ''}{'  STALE' if stale else ''}",
                                   style=alarm if stale else ""))
    else:
        parts.append(PanelText("no page-request group outstanding", style="dim"))
    devices = []
    names = [m.name for m in index.header.machines]
    mine = names[st.machine] if len(names) > 1 else None
    for name in index.device_names():
        if len(names) > 1 and machine_of_device(name, names)[0] != (mine if st.machine else None):
            continue  # another machine's device: its own state shows it
        width = st.devices.get(name, index.devices[name].pasid_width if name in index.devices else None)
        info = index.devices.get(name)
        drv = f" {info.driver}" if info and info.driver else ""
        wtext = "?" if width is None else f"{width}-bit ({1 << width:,})" if width else "no PASID"
        devices.append((f"{name}{drv}", wtext, ", ".join(map(str, sorted(st.pasids_on(name))[:12])) or "-"))
    parts.append(columns(devices, ("device", "width", "PASIDs on it")))
    mms = [(mm, p) for mm, p in st.mm_pasid.items()]
    if mms:
        parts.append(PanelText("processes (mm → SVA PASID, binds):", style="bold"))
        for mm, p in mms[:MAX_LISTED // 4]:
            binds = ", ".join(f"{d} ×{b.refs}" for d, b in sorted(st.binds_of(mm).items())) or "no binds"
            parts.append(PanelText(f"  {line(st.mm_owner.get(mm, f'mm {mm}'))} → PASID {p}: {line(binds)}"))
    if st.uapi_objects:
        objs = ", ".join(f"{o.kind} {oid}" for (_pid, oid), o in list(st.uapi_objects.items())[:12])
        parts.append(PanelText(f"iommufd objects: {objs}", style="dim"))
    for part in parts:
        part.rstrip()
    return PanelText("\n").join(parts)

