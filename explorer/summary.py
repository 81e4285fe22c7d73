"""What `info` and `check` report about a recording, as plain data (JSON-ready) and as text for people."""

from __future__ import annotations

from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from .events import Kind
from .index import RecordingIndex
from .intervals import IntervalKind
from .kernel_facts import applied_facts
from .machines import Alignment, Machine
from .pasid_spaces import by_space, foreign_pasids
from .reconcile import recorded_snapshots, recording_disagreements
from .simulator import Anomaly
from .snapshot import stored
from .text import Streamed, line
from .units import counted, fmt_ns

SHOWN_SAMPLES = 10  # of the lines an import did not understand, how many `info` prints


def recording_info(path: str | Path, idx: RecordingIndex) -> dict[str, Any]:
    """Everything `info --json` prints: counts by kind, devices, PASIDs, time range, capture coverage, damage."""
    h = idx.header
    rec = idx.recording
    footer = (rec.footer if rec is not None else None) or {}
    foreign = foreign_pasids(footer)  # a driver's own numbering (amdgpu): never listed as the IOMMU's PASIDs
    # Counted over the track table's columns: a million PASIDs make no object each here, and each array is let go
    # before the next is made (info's peak is the index's, not this)
    tracks = idx.tracks
    dev_of, pasid_of = tracks.columns()
    own = pasid_of >= 0
    for dev, pasid in foreign:
        d = tracks.device_ids.get(dev)
        if d is not None:
            own &= ~((dev_of == d) & (pasid_of == pasid))
    pasids = _distinct(pasid_of[own])
    del own, pasid_of
    per_track = idx.track_counts()[:len(dev_of)]
    per_device = np.zeros(len(tracks.devices))
    for a in range(0, len(dev_of), 1 << 16):  # a slice at a time: the weights are a float copy of the counts
        per_device += np.bincount(dev_of[a:a + (1 << 16)], weights=per_track[a:a + (1 << 16)],
                                  minlength=len(tracks.devices))
    del per_track, dev_of
    device_events = {dev: int(n) for dev, n in zip(tracks.devices, per_device.tolist(), strict=True)}
    devices = []
    for name in idx.device_names():
        d = idx.devices.get(name)
        entry: dict[str, Any] = {"name": name, "events": device_events.get(name, 0)}
        if d is not None:
            entry.update({k: v for k, v in d.to_dict().items() if k != "name"})
        devices.append(entry)
    info: dict[str, Any] = {
        "file": str(path),
        "format": h.format,
        "version": h.version or None,  # None: a damaged header's (unknown)
        "source": h.source,
        "title": h.title,
        "description": h.description,
        "host": h.host,
        "clock": h.clock,
        "machines": _machines(idx, rec.machines if rec is not None else h.machine_table),
        "events": idx.n,
        "by_kind": dict(sorted(idx.counts_by_kind().items())),
        "devices": devices,
        "pasids": _streamed_ints(pasids),
        "pasid_count": len(pasids),
        "pasid_spaces": by_space(foreign),
        "time_range_ns": [idx.start_ns, idx.end_ns],
        "duration_ns": idx.end_ns - idx.start_ns,
        "chunks": len(rec.chunks) if rec is not None else None,
        "complete": rec.complete if rec is not None else True,
        "end_reason": footer.get("end_reason"),
        "damage": idx.damage,
        "lost": sum(st.lost for st in (idx.sim.root, *idx.sim.root.others.values())),  # on every machine
        "probes": h.probes,
        "lifecycle_unobserved": idx.sim.unobserved,  # why state is uncertain from the start, or None
        "kernel_rules": idx.sim.policy_of(0).describe(),
        "kernel_facts": _facts(h.probes, h.kernel),
    }
    if "import" in footer:
        info["import"] = footer["import"]
    snaps, _ = recorded_snapshots(idx)
    if snaps:
        info["snapshots"] = snaps  # the kernel's own state, at the start and the end of each machine's capture
    for key in ("kernel_counts", "kernel_counts_missed"):  # a capture's exact in-kernel counts
        if key in footer:
            info[key] = footer[key]
    unknown = sorted(k for k in info["by_kind"] if k not in _known_kinds())
    if unknown:
        info["unknown_kinds"] = unknown
    return info


def _machines(idx: RecordingIndex, machines: list[Machine]) -> list[dict[str, Any]]:
    """The machine table; in a merged recording, each other machine with the kernel rules and facts it is judged
    by (its own kernel's: the top-level ones are the first machine's) and why its capture could not see the PASID
    lifecycle, if it could not (its snapshots are left out here: `snapshots` lists them with the rest)."""
    out = []
    for i, m in enumerate(machines):
        d = {k: v for k, v in m.to_dict().items() if k != stored.KEY}
        if i:
            probes = m.extra.get("probes")
            d["kernel_rules"] = idx.sim.policy_of(i).describe()
            d["kernel_facts"] = _facts(probes if isinstance(probes, dict) else None, m.kernel)
            if idx.sim.unobserved_of(i):
                d["lifecycle_unobserved"] = idx.sim.unobserved_of(i)
        out.append(d)
    return out


def _facts(probes: dict[str, Any] | None, kernel: str | None) -> list[dict[str, Any]]:
    """The kernel facts a machine's events are read by, as `info` lists them."""
    return [{"key": f.key, "versions": str(f.span), "text": f.text, "hooks": list(f.hooks), "blind": f.blind}
            for f in applied_facts(probes, kernel)]


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted, found by sorting in place: np.unique's hash set took 30 MB for a million."""
    values.sort()
    keep = np.ones(len(values), bool)
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values if keep.all() else values[keep]


def _streamed_ints(values: np.ndarray) -> Streamed:
    """Numbers as a JSON list written a few thousand at a time: a million PASIDs as one list of Python ints took
    38 MB more at `info`'s peak."""
    return Streamed(lambda: chain.from_iterable(values[a:a + 4096].tolist() for a in range(0, len(values), 4096)))


def _known_kinds() -> set[str]:
    from .events import KINDS

    return {str(k) for k in KINDS}


def check_report(path: str | Path, idx: RecordingIndex) -> dict[str, Any]:
    """`check --json`: the info, every anomaly with its explanation, what the model found open between events
    (`intervals`), and where the kernel's own state (the recording's snapshots) disagrees with the model."""
    report = recording_info(path, idx)
    report["anomalies"] = [a.as_dict() for a in idx.anomalies]
    report["intervals"] = interval_report(idx)
    snaps, problems = recorded_snapshots(idx)
    if snaps or problems:
        report["kernel_state"] = {"snapshots": [s["taken_ns"] for s in snaps], "unusable": problems,
                                  "disagreements": [d.as_dict() for d in recording_disagreements(idx, snaps)]}
    return report


def interval_report(idx: RecordingIndex) -> dict[str, Any]:
    """Per kind of interval, how many the model saw and how many are open at the end; and the page-request groups
    still outstanding then, each with the event that opened it, as a list made only as it is written (`Streamed`):
    a million of them as dicts would take gigabytes."""
    out: dict[str, Any] = {str(kind): {"total": total, "open_at_end": still}
                           for kind, (total, still) in idx.intervals.counts().items()}
    out["outstanding_groups"] = Streamed(lambda: (
        {"device": iv.device, "pasid": iv.pasid, "prg": iv.record.prg, "since_ns": iv.start_ns,
         "requests": iv.record.requests, "opened_by": iv.open_idx}
        for iv in idx.intervals.open_now(kind=IntervalKind.GROUP)))
    return out


_INTERVAL_WORDS = {IntervalKind.LIFETIME: ("PASID lifetime", "still allocated"),
                   IntervalKind.ATTACHMENT: ("attachment", "still attached"), IntervalKind.BIND: ("SVA bind", "held"),
                   IntervalKind.GROUP: ("page-request group", "outstanding")}


def interval_text(report: dict[str, Any]) -> str:
    """One line: what the model saw open between events, and what is still open at the end."""
    parts = []
    for kind, (noun, still) in _INTERVAL_WORDS.items():
        counts = report[str(kind)]
        if counts["total"]:
            parts.append(f"{counts['total']:,} {noun}{'s' if counts['total'] != 1 else ''} "
                         f"({counts['open_at_end']:,} {still} at the end)")
    return "model: " + (", ".join(parts) if parts else "no PASID lifetime, attachment, bind or group")


def info_text(info: dict[str, Any], *, facts: bool = True) -> list[str]:
    """`info`'s text; `facts` False (`check`'s, which comes for the findings) folds each machine's kernel facts
    into one line naming its blind spots, rather than a row each before the first finding."""
    lines = [f"{info['file']}: {info['title'] or 'recording'} ({info['source']}, format v{info['version'] or '?'})"]
    if info.get("description"):
        lines.append(f"  {info['description'].strip().splitlines()[0]}")
    host = info["host"]
    if host:
        lines.append("  host: " + ", ".join(f"{k} {v}" for k, v in host.items() if v is not None))
    lines += _machine_lines(info, facts)
    if len(info["machines"]) < 2:  # (a merged recording's are under each machine)
        lines += _rule_lines(info, "  ", facts=facts)
    a, b = info["time_range_ns"]
    in_file = "" if info["chunks"] is None else f", {counted(info['chunks'], 'chunk')}"  # (a scenario has no file)
    lines.append(f"  {counted(info['events'], 'event')} over {fmt_ns(b - a)} ({info['clock']} clock){in_file}")
    for kind, n in info["by_kind"].items():
        lines.append(f"    {kind:<14} {n:>10,}")
    if info["devices"]:
        lines.append("  devices:")
        for d in info["devices"]:
            width = f"{d['pasid_width']}-bit PASID" if d.get("pasid_width") is not None else "PASID width ?"
            if isinstance(d.get("iommu_max_pasids"), int):  # the IOMMU's own limit narrows it (min of the two)
                width += f" (its IOMMU {d.get('iommu') or ''} allows {d['iommu_max_pasids']:,})"
            caps = "+".join(c for c in ("pri", "ats") if d.get(c)) or "-"
            lines.append(f"    {d['name']:<14} {width:<15} {caps:<8} {d.get('driver') or '':<12} "
                         f"{d['events']:>10,} events")
    n = info["pasid_count"]
    if n:
        shown = ", ".join(map(str, islice(info["pasids"].items(), 20))) + (f" ... ({n} in all)" if n > 20 else "")
        lines.append(f"  PASIDs seen: {shown}")
    for space, pairs in info.get("pasid_spaces", {}).items():
        shown = ", ".join(f"{p['pasid']} on {p['device']}" for p in pairs[:20]) + \
            (f" ... ({len(pairs)} in all)" if len(pairs) > 20 else "")
        lines.append(f"  {space} PASIDs (the driver's own numbering, not the IOMMU's global space): {shown}")
    if len(info["machines"]) < 2:
        lines += _unobserved_hook_lines(info.get("probes"), "  ")
    if info.get("lifecycle_unobserved"):
        lines.append("  state uncertain from the start: the PASID lifecycle was not observed, so findings a missing "
                     "allocation, bind or attach could explain are marked uncertain")
    if "import" in info:
        imp = info["import"]
        lines.append(f"  imported from {imp.get('input')} ({imp.get('format')}): {imp.get('lines', 0):,} lines, "
                     f"{imp.get('parsed', 0):,} parsed, {imp.get('unknown', 0):,} not understood, "
                     f"{imp.get('suppressed', 0):,} suppressed by the kernel")
        lines += _unknown_sample_lines(info["file"], imp)
    if info.get("unknown_kinds"):
        lines.append(f"  kinds from a newer writer (kept, shown as-is): {', '.join(info['unknown_kinds'])}")
    lines += _kernel_count_lines(info)
    lines += _snapshot_lines(info)
    if info["lost"] or info["by_kind"].get(Kind.LOST):  # (a damaged source merged in: events of unknown number)
        how = ("during capture, or unreadable in the file (see 'damaged' below)" if info["damage"] else
               "during capture, or unreadable in a recording merged into this one" if len(info["machines"]) > 1 else
               "during capture")
        many = f"{info['lost']:,} events" if info["lost"] else "events of unknown number"
        lines.append(f"  {many} lost {how}: state after the first loss is uncertain")
    for d in info["damage"]:
        lines.append(f"  damaged: {d}")
    if info["end_reason"] and info["end_reason"] != "complete":
        lines.append(f"  capture ended: {info['end_reason']}")
    return [line(x) for x in lines]  # titles, hosts, devices and samples come from the input: one line each


def _rule_lines(d: dict[str, Any], indent: str, label: str = "rules", *, facts: bool = True) -> list[str]:
    """The kernel rules and facts a machine is judged by (`info`'s, or a merged recording's other machine's)."""
    lines = [f"{indent}{label}: {d['kernel_rules']}"]
    if not facts:
        blind = [f["key"] for f in d.get("kernel_facts", []) if f["blind"]]
        return lines + [f"{indent}  {counted(len(d.get('kernel_facts', [])), 'kernel fact')} ('pasid-explorer info' "
                        f"lists them){'; blind spots, which no hook sees: ' + ', '.join(blind) if blind else ''}"]
    for f in d.get("kernel_facts", []):
        blind = " [blind spot: no hook sees it]" if f["blind"] else ""
        lines.append(f"{indent}  {f['key']} ({f['versions']}): {f['text']}{blind}")
    return lines


def _unobserved_hook_lines(probes: object, indent: str) -> list[str]:
    """The hooks a capture could not attach, with why (a crafted entry of another shape says nothing)."""
    unavailable = probes.get("unavailable") if isinstance(probes, dict) else None
    return [f"{indent}not observed: {hook}: {why}" for hook, why in
            (unavailable.items() if isinstance(unavailable, dict) else ())]


def _machine_lines(info: dict[str, Any], facts: bool) -> list[str]:
    """Which machines the events happened on and whether their clocks can be aligned with another's; a merged
    recording's machines each with the kernel rules it is judged by (its own kernel's) and the hooks its capture
    could not attach."""
    lines = []
    machines = info["machines"]
    for i, d in enumerate(machines):
        m = Machine.from_dict(d, f"machines[{i}]")
        about = ", ".join(x for x in (m.kernel and f"kernel {m.kernel}", m.boot_id and f"boot {m.boot_id}") if x)
        if len(machines) > 1:
            how = "the timeline's clock" if i == 0 else \
                Alignment(m.offset_ns, m.aligned_by or "given", m.error_ns).describe()
        elif m.start is not None:
            how = f"clocks read at the start{' and end' if m.end is not None else ''}: can be aligned with another " \
                  "machine's recording (replay A B, merge)"
        else:
            how = "no clock readings: aligning it with another machine's recording needs --offset"
        lines.append(f"  machine {m.name}{f' ({about})' if about else ''}: {how}")
        if len(machines) > 1:
            rules = info if i == 0 else d
            if i and (d["kernel_rules"], d["kernel_facts"]) == (info["kernel_rules"], info["kernel_facts"]):
                lines.append(f"    its rules: as machine {machines[0].get('name')}'s")
            else:
                lines += _rule_lines(rules, "    ", "its rules", facts=facts)
            lines += _unobserved_hook_lines(info.get("probes") if i == 0 else d.get("probes"), "    ")
        if d.get("lifecycle_unobserved"):
            lines.append(f"    its PASID lifecycle was not observed ({d['lifecycle_unobserved']}): its findings a "
                         "missing allocation, bind or attach could explain are uncertain")
    return lines


def _snapshot_lines(info: dict[str, Any]) -> list[str]:
    """One line per kernel snapshot: when, what it found, what it could not read."""
    lines = []
    for snap in info.get("snapshots", []):
        pci = snap.get("pci", {})
        tables = (snap.get("intel") or {}).get("devices", {})
        found = [f"{len(pci)} functions with PASID, PRI or ATS"]
        if tables:
            found.append(f"PASID tables of {len(tables)} devices")
        when = snap["taken_ns"] - info["time_range_ns"][0]
        at = f"+{fmt_ns(when)}" if when >= 0 else f"{fmt_ns(-when)} before the first event"
        of = f" of machine {snap[stored.MACHINE]}" if stored.MACHINE in snap else ""
        lines.append(f"  kernel snapshot{of} at {at}: {', '.join(found)}"
                     + (f"; not read: {', '.join(sorted(snap.get('unreadable', {})))}" if snap.get("unreadable")
                        else ""))
    return lines


def _kernel_count_lines(info: dict[str, Any]) -> list[str]:
    """A capture's in-kernel counts by event type, beside what was recorded: exact even when the ring buffer
    dropped details under a storm."""
    counts = info.get("kernel_counts")
    if not counts:
        return []
    totals: dict[str, int] = {}
    for c in counts:
        totals[str(c["type"])] = totals.get(str(c["type"]), 0) + int(c["count"])
    lines = ["  counted in the kernel (exact, whatever the ring buffer dropped; --json has them per command, "
             "process, device and PASID):"]
    lines += [f"    {kind:<14} {n:>10,}" for kind, n in sorted(totals.items())]
    if info.get("kernel_counts_missed"):
        lines.append(f"    {info['kernel_counts_missed']:,} events found the count table full and are not counted")
    return lines


def _unknown_sample_lines(path: str, imp: dict[str, Any]) -> list[str]:
    """The first lines an import did not understand, and where the rest are: `info` shows a few of the samples the
    footer keeps; `info --json` prints all of them."""
    samples = imp.get("unknown_samples", [])
    lines = [f"    line {line_no}: {text}" for line_no, text in samples[:SHOWN_SAMPLES]]
    hidden = len(samples) - SHOWN_SAMPLES
    if hidden > 0:
        lines.append(f"    ... and {hidden:,} more kept in the recording (pasid-explorer info --json {path} lists "
                     f"them)")
    if imp.get("unknown", 0) > len(samples):
        lines.append(f"    (only the first {len(samples)} lines not understood are kept as samples)")
    return lines


def anomaly_text(a: Anomaly, idx: RecordingIndex, evidence: int = 3) -> list[str]:
    machines = idx.header.machines
    on = f"{machines[a.machine].name}:" if a.machine and a.device is None and a.machine < len(machines) else None
    where = " ".join(x for x in (on, a.device, None if a.pasid is None else f"PASID {a.pasid}") if x)
    lines = [f"{a.severity.upper():<9} {fmt_ns(a.ts_ns - idx.start_ns):>12}  {a.title}" + (f" ({where})" if where
                                                                                           else ""),
             f"          {a.explanation}"]
    lines += [f"          evidence {evidence_brief(idx, i)}" for i in a.evidence[:evidence] if 0 <= i < idx.n]
    if a.repeats.count:
        lines.append(f"          and {a.repeats.count:,} more like it here, the last at "
                     f"{fmt_ns((a.repeats.last_ns or a.ts_ns) - idx.start_ns)}")
    return [line(x) for x in lines]  # owners and devices come from the input


def evidence_brief(idx: RecordingIndex, i: int) -> str:
    """One evidence event, as the check report and the explorer's explanations cite it."""
    ev = idx.event(i)
    return f"#{i} at {fmt_ns(ev.ts_ns - idx.start_ns)}: {ev.brief()}"
