"""Where the kernel's own view of its PASIDs (snapshots a capture took, explorer.snapshot) and the model disagree.

Each snapshot is set beside the simulated state at its time:
  - a (device, PASID) the model holds attached but the device's PASID table (Intel debugfs) lacks, or a PASID table
    entry the model never saw attached, when it appeared during the recording (the first snapshot's entries predate
    the recording: the model cannot know them, so they are no finding);
  - PRI Response Failure or Stopped set where the previous snapshot had it clear and no failure response to the
    device (ResponseCode.FAILURE) came between them: the model cannot explain the device's stopped page requests;
  - a PASID capability width other than the width the model uses for the device;
  - (Intel debugfs, 6.7 on) a PASID the model holds attached to a paging domain with no page table for it in the
    kernel's per-PASID directory, or such a page table, made during the recording, on a PASID the model never saw
    attached to a paging domain. On a healthy kernel the two match: intel_iommu_set_dev_pasid() makes the directory
    for every paging domain it attaches and for no other (6.12.118 drivers/iommu/intel/iommu.c:4417
    "if (domain->type & __IOMMU_DOMAIN_PAGING) intel_iommu_debugfs_create_dev_pasid()"; 7.3.4 iommu.c:3698, where
    SVA and nested domains have their own set_dev_pasid that makes none), and domain_remove_dev_pasid() removes it
    (7.3.4 iommu.c:3599; 6.12.118 intel_iommu_remove_dev_pasid(), iommu.c:4360). A (device, PASID) whose
    attachment changed while the snapshot was being read (between its taken_ns and done_ns) is no finding: the
    directory may show either side;
  - (AMD debugfs, 6.17 on) a PASID the model holds attached to the device whose device table entry `devtbl` shows
    (the one last written to `devid`) while that entry's GV bit is clear: the device then has no GCR3 table, so no
    PASID of it can translate. On a healthy kernel a PASID attach writes the PASID's entry in that table (7.3.4
    drivers/iommu/amd/pasid.c iommu_sva_set_dev_pasid() -> amd_iommu_set_gcr3()), which exists only once the
    device's domain set it up (iommu.c:2397 init_gcr3_table()), and set_dte_gcr3_table() sets GV with it
    (iommu.c:2129).
PASID 0 is the kernel's own (RID_PASID, the device's default domain) and never a finding. A finding the model's
uncertainty (lost or unseen events) could explain is marked uncertain, as the simulator's own findings are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .events import R_DEVICE, R_FIELDS, R_KIND, R_TS, DomainType, Kind, ResponseCode
from .simulator.state import SimState
from .snapshot import stored

if TYPE_CHECKING:
    from .index import RecordingIndex

RID_PASID = 0


@dataclass(frozen=True, slots=True)
class Disagreement:
    rule: str  # table_missing/_unexplained, pri_unexplained, width_differs, translation_missing/_unexplained, dte_no_gv
    ts_ns: int
    device: str
    pasid: int | None
    explanation: str
    severity: str  # error, warning or uncertain

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recorded_snapshots(idx: RecordingIndex) -> tuple[list[dict[str, Any]], list[str]]:
    """Every snapshot of the recording (of each of a merged recording's machines), in time order, and a line for
    each one that could not be used."""
    rec = idx.recording
    return stored.snapshots(idx.header.extra, rec.footer if rec is not None else None, idx.header.machines)


def _machine_number(idx: RecordingIndex, snap: dict[str, Any]) -> int | None:
    """The number of the machine a snapshot is of (0: the first, whose snapshots name none; None: a name the
    machine table lacks)."""
    name = snap.get(stored.MACHINE)
    if name is None:
        return 0
    return next((n for n, m in enumerate(idx.header.machines) if n and m.name == name), None)


def state_beside(idx: RecordingIndex, snap: dict[str, Any], t_ns: int) -> SimState:
    """The modelled state at `t_ns` of the machine `snap` is of: in a merged recording a guest's own (before its
    first event an empty one, uncertain from the start where its recording could not see the PASID lifecycle)."""
    state = idx.state_at(t_ns)
    machine = _machine_number(idx, snap)
    if not machine:  # (the first's, or one of no machine known: the whole state, as a single recording's)
        return state
    return state.of_machine(machine) or SimState(uncertain_since=0 if idx.sim.unobserved_of(machine) else None)


def recording_disagreements(idx: RecordingIndex, snaps: list[dict[str, Any]]) -> list[Disagreement]:
    """Each machine's snapshots of `snaps` beside its own modelled state, in time order."""
    rows = idx.recording.iter_rows if idx.recording is not None else list  # (a scenario in memory keeps none)
    found: list[Disagreement] = []
    for number in range(max(len(idx.header.machines), 1)):
        mine = [s for s in snaps if _machine_number(idx, s) == number]
        if mine:
            found += reconcile(mine, lambda t, snap=mine[0]: state_beside(idx, snap, t),
                               lambda: failure_responses(rows()))
    return sorted(found, key=lambda d: d.ts_ns)


def reconcile(snaps: list[dict[str, Any]], state_at: Callable[[int], SimState],
              failures: Callable[[], Iterable[tuple[int, str]]]) -> list[Disagreement]:
    """Every disagreement between `snaps` (in time order) and the model; `failures` yields (ts, device) of each
    failure response, read only when a PRI flag needs explaining."""
    out: list[Disagreement] = []
    failed: list[tuple[int, str]] | None = None
    previous: dict[str, Any] | None = None
    for snap in snaps:
        ts = snap["taken_ns"]
        state = state_at(ts)
        doubt = "uncertain" if state.uncertain_since is not None and state.uncertain_since <= ts else "error"
        tables = _tables(snap, previous, state, ts, doubt)
        out += tables + _translations(snap, previous, state, state_at, doubt, {(d.device, d.pasid) for d in tables})
        out += _widths(snap, state, ts)
        out += _amd_dte(snap, state, state_at, doubt)
        if previous is not None:
            for dev, fn in sorted(snap.get("pci", {}).items()):
                flags = _pri_flags(fn) - _pri_flags(previous.get("pci", {}).get(dev, {}))
                if not flags:
                    continue
                if failed is None:
                    failed = list(failures())
                if not any(previous["taken_ns"] <= t <= ts and d == dev for t, d in failed):
                    out.append(Disagreement(
                        "pri_unexplained", ts, dev, None,
                        f"{dev}'s PRI status shows {' and '.join(sorted(flags))}, clear at the previous snapshot, but "
                        "no failure response reached it in between: the device stopped issuing page requests for a "
                        "reason the recording does not show", doubt))
        previous = snap
    return out


def _pri_flags(fn: dict[str, Any]) -> set[str]:
    pri = fn.get("pri") or {}
    return {name for key, name in (("response_failure", "Response Failure"), ("stopped", "Stopped")) if pri.get(key)}


def _tables(snap: dict[str, Any], previous: dict[str, Any] | None, state: SimState, ts: int,
            doubt: str) -> list[Disagreement]:
    intel = snap.get("intel") or {}
    iommus = intel.get("iommus", {})
    out = []
    for dev, entry in sorted(intel.get("devices", {}).items()):
        if not iommus.get(entry.get("iommu"), {}).get("scalable"):
            continue  # legacy mode: no PASID table to compare
        table = {e["pasid"] for e in entry.get("pasids", [])} - {RID_PASID}
        modelled = {p for (d, p) in state.attachments if d == dev} - {RID_PASID}
        for pasid in sorted(modelled - table):
            out.append(Disagreement("table_missing", ts, dev, pasid,
                                    f"the model holds PASID {pasid} attached to {dev}, but the device's PASID table "
                                    f"on {entry['iommu']} has no entry for it", doubt))
        if previous is None:
            continue  # entries made before the recording began: the model could not have seen them
        before = {e["pasid"] for e in (previous.get("intel") or {}).get("devices", {}).get(dev, {}).get("pasids", [])}
        for pasid in sorted(table - modelled - before):
            out.append(Disagreement("table_unexplained", ts, dev, pasid,
                                    f"{dev}'s PASID table on {entry['iommu']} has an entry for PASID {pasid} made "
                                    "during the recording, which the model never saw attached", doubt))
    return out


def _paging(state: SimState, dev: str) -> set[int]:
    """The PASIDs (RID_PASID left out) the model holds attached to a paging domain on `dev`, as the kernel said."""
    return {p for (d, p), a in state.attachments.items()
            if d == dev and p != RID_PASID and a.domain_type == DomainType.PAGING and not a.inferred}


def _translations(snap: dict[str, Any], previous: dict[str, Any] | None, state: SimState,
                  state_at: Callable[[int], SimState], doubt: str,
                  reported: set[tuple[str, int | None]]) -> list[Disagreement]:
    """Paging domains the model holds (`state`, at the snapshot's taken_ns) against the kernel's per-PASID
    page-table directories (see the module's docstring); a (device, PASID) the PASID table rules already reported
    is not reported twice."""
    intel = snap.get("intel") or {}
    if "translations" not in intel:
        return []  # a snapshot from before page tables were read
    before = (previous or {}).get("intel", {}).get("paging_pasids", {})
    found = []
    for dev, kernel in sorted(intel.get("paging_pasids", {}).items()):
        held, dirs = _paging(state, dev), set(kernel) - {RID_PASID}
        found += [("translation_missing", dev, p) for p in sorted(held - dirs)]
        if previous is not None:
            found += [("translation_unexplained", dev, p) for p in sorted(dirs - held - set(before.get(dev, [])))]
    found = [f for f in found if (f[1], f[2]) not in reported]
    if not found:
        return []
    ts = snap["taken_ns"]
    done = state_at(snap.get("done_ns", ts))
    out = []
    for rule, dev, pasid in found:
        if (pasid in _paging(done, dev)) != (pasid in _paging(state, dev)):
            continue  # attached or detached while the snapshot was read
        why = (f"the model holds PASID {pasid} attached to a paging domain on {dev}, but the kernel has no page "
               "table for it (no per-PASID domain_translation_struct): whatever the kernel attached there is not "
               "a paging domain" if rule == "translation_missing" else
               f"the kernel has a paging domain's page table for PASID {pasid} on {dev}, made during the "
               "recording, which the model never saw attached to a paging domain")
        out.append(Disagreement(rule, ts, dev, pasid, why, doubt))
    return out


def _amd_dte(snap: dict[str, Any], state: SimState, state_at: Callable[[int], SimState],
             doubt: str) -> list[Disagreement]:
    """PASIDs the model holds on the device AMD's devtbl shows with GV clear (see the module's docstring)."""
    dte = (snap.get("amd") or {}).get("devtbl")
    if not isinstance(dte, dict) or not isinstance(dte.get("device"), str) or dte.get("gv") is not False:
        return []
    dev = dte["device"]

    def held(st: SimState) -> set[int]:
        return {p for (d, p), a in st.attachments.items() if d == dev and p != RID_PASID and not a.inferred}

    pasids = held(state)
    if pasids:
        pasids &= held(state_at(snap.get("done_ns", snap["taken_ns"])))  # not changed while the snapshot was read
    return [Disagreement("dte_no_gv", snap["taken_ns"], dev, p,
                         f"the model holds PASID {p} attached to {dev}, but its AMD device table entry on "
                         f"{dte.get('iommu')} has GV clear: the device has no GCR3 table, so no PASID of it "
                         "translates", doubt) for p in sorted(pasids)]


def _widths(snap: dict[str, Any], state: SimState, ts: int) -> list[Disagreement]:
    out = []
    for dev, fn in sorted(snap.get("pci", {}).items()):
        width, modelled = (fn.get("pasid") or {}).get("width"), state.devices.get(dev)
        if width is not None and modelled is not None and width != modelled:
            out.append(Disagreement("width_differs", ts, dev, None,
                                    f"{dev}'s PASID capability says {width} bits; the model uses {modelled}",
                                    "warning"))
    return out


def failure_responses(rows: Iterable[list[Any]]) -> Iterable[tuple[int, str]]:
    """(ts, device) of each failure response among recording rows."""
    for row in rows:
        if row[R_KIND] == Kind.PAGE_RESPONSE and row[R_FIELDS].get("code") == ResponseCode.FAILURE and \
                row[R_DEVICE] is not None:
            yield row[R_TS], row[R_DEVICE]


def kernel_rows(snap: dict[str, Any], state: SimState) -> list[tuple[str, str, str]]:
    """(device, what the kernel says, what the model held at the snapshot's time) for each device the snapshot or
    the model names: PASIDs in the device's PASID table (RID_PASID left out) against those attached in the model,
    the PASID capability's width and enable against the model's width, and PRI flags that stop page requests."""
    intel = (snap.get("intel") or {}).get("devices", {})
    dumps = (snap.get("intel") or {}).get("translations", {})
    pci = snap.get("pci", {})
    attached: dict[str, list[int]] = {}
    for dev, pasid in state.attachments:
        attached.setdefault(dev, []).append(pasid)
    rows = []
    for dev in sorted(set(intel) | set(pci) | set(attached)):
        kernel = []
        if dev in intel:
            table = [e["pasid"] for e in intel[dev].get("pasids", []) if e["pasid"] != RID_PASID]
            kernel.append(f"table {', '.join(map(str, table)) or 'empty'}")
        kernel += [_mapped(d) for d in dumps.get(dev, []) if d.get("pgd") is not None]
        cap = (pci.get(dev) or {}).get("pasid")
        if cap is not None:
            kernel.append(f"{cap['width']}-bit {'on' if cap['enabled'] else 'off'}")
        flags = _pri_flags(pci.get(dev, {}))
        if flags:
            kernel.append("PRI " + " ".join(sorted(flags)))
        model = [f"PASIDs {', '.join(map(str, sorted(attached[dev])))}" if dev in attached else "no PASID attached"]
        if state.devices.get(dev) is not None:
            model.append(f"{state.devices[dev]}-bit")
        rows.append((dev, " · ".join(kernel) or "-", " · ".join(model)))
    return rows


def _mapped(dump: dict[str, Any]) -> str:
    """A page-table dump (explorer.snapshot.intel_pgtable) in a few words: PASID, mappings, whether cut."""
    if "same_as" in dump:
        return f"PASID {dump['pasid']}: {dump['same_as']}'s page table"
    return f"PASID {dump['pasid']}: {dump['mappings']:,}{'+' if dump.get('cut') else ''} mappings"
