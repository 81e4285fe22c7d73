"""`snapshot`: the kernel's own PASID state on this host, and what could not be read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...events import PASID_BITS
from ...outputs import atomic_output
from ...snapshot import take

ORDER = 45


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "snapshot", help="read the kernel's own PASID state: PCI PASID/PRI/ATS, Intel and AMD IOMMU debugfs",
        description="Read what this host exposes about its PASIDs: each PCI function's PASID capability (width, "
                    "enabled), PRI (enabled, Response Failure, Stopped, PRG Response PASID Required, outstanding "
                    "page request allocation) and ATS, decoded from config space as lspci -vvv does; the Intel "
                    "IOMMU debugfs (PASID table entries per device, the invalidation queue, its latency); the AMD "
                    "IOMMU debugfs where the kernel has it. Says what could not be read and why. `record` and "
                    "`live` take one at the start and at the end and keep them in the recording.",
        epilog="examples:\n  sudo pasid-explorer snapshot\n  sudo pasid-explorer snapshot -o host.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", help="write the snapshot as JSON to this file ('-' for stdout)")
    p.add_argument("--root", default="/", help="read sys/ under this directory instead of / (a copy of "
                                               "another host's /sys)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (Path(args.root) / "sys").is_dir():
        raise InputError(args.root, "", "holds no sys/ folder to read: --root names the folder a copy of a host's "
                                        "/sys lies in, as ROOT/sys")
    snap = take(args.root)
    if args.output == "-":
        print(json.dumps(snap, indent=1))
        return 0
    if args.output:
        with atomic_output(args.output, "w") as f:
            json.dump(snap, f, indent=1)
    out = sys.stderr if args.output else sys.stdout
    print("\n".join(summary(snap)), file=out)
    return 0


def summary(snap: dict[str, Any]) -> list[str]:
    """The snapshot in a few lines a person reads."""
    lines = [f"kernel {snap['kernel']}: {len(snap['pci'])} PCI functions with PASID, PRI or ATS"]
    for name, fn in sorted(snap["pci"].items()):
        parts = []
        if "pasid" in fn:
            p = fn["pasid"]
            beyond = f" (beyond the {PASID_BITS} the PCIe specification allows: the device misreports it)" \
                if p["width"] > PASID_BITS else ""
            parts.append(f"PASID {p['width']} bits{beyond} {'enabled' if p['enabled'] else 'disabled'}")
        if "pri" in fn:
            r = fn["pri"]
            flags = [k for k in ("response_failure", "stopped", "prg_response_pasid_required") if r[k]]
            marks = f" [{', '.join(flags)}]" if flags else ""
            parts.append(f"PRI {'enabled' if r['enabled'] else 'disabled'} {r['outstanding_allocation']} of "
                         f"{r['outstanding_capacity']} requests allocated{marks}")
        if "ats" in fn:
            parts.append(f"ATS {'enabled' if fn['ats']['enabled'] else 'disabled'}")
        lines.append(f"  {name}: {'; '.join(parts)}")
    for name, dev in sorted(snap.get("intel", {}).get("devices", {}).items()):
        pasids = ", ".join(f"{e['pasid']} ({e['pgtt']}, domain {e['domain_id']})" for e in dev["pasids"])
        lines.append(f"  {name} on {dev['iommu']}: PASID table {pasids or 'empty (legacy mode)'}")
    for name, pasids in sorted(snap.get("intel", {}).get("paging_pasids", {}).items()):
        if pasids:
            lines.append(f"  {name}: paging domains on PASIDs {', '.join(map(str, pasids))}")
    for name, dumps in sorted(snap.get("intel", {}).get("translations", {}).items()):
        lines += [f"  {name} PASID {d['pasid']}: {translation_text(d)}" for d in dumps]
    for name, q in sorted(snap.get("intel", {}).get("invalidation_queue", {}).items()):
        lines.append(f"  {name} invalidation queue: head {q['head']}, tail {q['tail']}")
    for name, types in sorted(snap.get("intel", {}).get("latency", {}).items()):
        lines.append(f"  {name} invalidation latency: " + ("; ".join(
            f"{t} {sum(list(c.values())[:7]):,} timed, average {c['average_us']} us, max {c['max_us']} us"
            for t, c in sorted(types.items())) or "not counted (root writes 1 to dmar_perf_latency to start)"))
    for name, q in sorted(snap.get("amd", {}).get("command_buffers", {}).items()):
        lines.append(f"  {name} command buffer: head {q['head']}, tail {q['tail']}")
    dte = snap.get("amd", {}).get("devtbl")
    if dte is not None:
        lines.append(f"  AMD device table entry: {dte['why']}" if dte["device"] is None else
                     f"  {dte['device']} AMD device table entry on {dte['iommu']}: domain {dte['domain_id']}, "
                     f"{dte['mode']}-level page table, " + (f"PASIDs on (GV, a {dte['glx'] + 1}-level GCR3 table)"
                                                            if dte["gv"] else "PASIDs off (GV clear)"))
    for what, why in sorted(snap["unreadable"].items()):
        lines.append(f"  not read: {what}: {why}")
    return lines


def translation_text(d: dict[str, Any]) -> str:
    """One page-table dump (explorer.snapshot.intel_pgtable) in words."""
    if d.get("pgd") is None:
        return d.get("why", "no page table")
    if "same_as" in d:
        return f"page table at {d['pgd']:#x}, the one {d['same_as']} uses"
    sizes = ", ".join(f"{n:,} x {size}" for size, n in d["pages"].items())
    return (f"page table at {d['pgd']:#x}: {d['mappings']:,} mappings ({sizes or 'none'}), {d['writable']:,} "
            f"writable" + (f"; {d['cut']}" if d.get("cut") else ""))
