"""Take a snapshot of the kernel's own PASID state: what PCI config space, the Intel IOMMU debugfs and the AMD
IOMMU debugfs say right now, with what could not be read and why (no debugfs, no such driver, not root).

A snapshot is a plain dict, stored as is in recordings (see docs/recording-format.md) and by `snapshot -o`:

    taken_ns       CLOCK_MONOTONIC when taken (a live capture's clock)     taken_unix, kernel
    done_ns        CLOCK_MONOTONIC when the last file was read
    pci            {device: {vendor, device_id, class, pasid: {width, enabled, ...}, pri: {...}, ats: {...}}}
                   (functions with a PASID, PRI or ATS capability only)
    intel          {iommus, devices: {device: {iommu, pasids: [{pasid, pgtt, domain_id}]}}, invalidation_queue,
                    latency: {iommu: {type: {bucket: count}}}, paging_pasids: {device: [PASID with a paging domain]},
                    translations: {device: [{pasid, pgd, mappings, bytes, writable, pages, iova_pfns, first, cut?}
                                            | {pasid, pgd: None, why} | {pasid, pgd, same_as}]}}  (intel_pgtable)
    amd            {command_buffers: {iommu: {head, tail}}, devtbl: {device, gv, ...} (amd_debugfs)}  (6.17 on)
    iommus         {iommu: {driver, max_pasids, from | why}}: each IOMMU's own PASID limit from sysfs (iommu_limits)
                   (and each pci entry names its `iommu`)
    unreadable     {what: why}
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from . import amd_debugfs, intel_debugfs, intel_pgtable, iommu_limits, pci_caps

_PCI_NAME = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_HEX = re.compile(r"[0-9a-f]{1,5}")
TEXT_LIMIT = 256 << 10  # a debugfs file read beyond this is cut (the invalidation queue alone can be 100s of KiB)
PGTABLE_LIMIT = 64 << 10  # of each page-table dump (about 700 mappings); the rest is counted as cut
PGTABLE_BUDGET = 4 << 20  # of all page-table dumps in one snapshot: a host with hundreds of devices stays bounded
_CMDBUF = re.compile(r"CMD Buffer Head Offset:(?P<head>\d+) Tail Offset:(?P<tail>\d+)")


def take(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Read what this host (or a copy of its /sys under `root`) exposes."""
    base = Path(root)
    snap: dict[str, Any] = {"taken_ns": time.monotonic_ns(), "taken_unix": time.time(),
                            "kernel": _kernel(base), "pci": {}, "unreadable": {}}
    _pci(base / "sys/bus/pci/devices", snap)
    snap["iommus"], unreadable = iommu_limits.read_units(base / "sys/class/iommu")
    snap["unreadable"].update(unreadable)
    debugfs = base / "sys/kernel/debug"
    why = _debugfs_missing(debugfs)
    if why is not None:
        snap["unreadable"]["iommu debugfs"] = why
    else:
        units = _units(base / "sys/class/iommu")
        _intel(debugfs / "iommu/intel", snap, [u for u in units if u.startswith("dmar")])
        _amd(debugfs / "iommu/amd", snap, [u for u in units if u.startswith("ivhd")])
    snap["done_ns"] = time.monotonic_ns()  # what changed between taken_ns and this may show either way
    return snap


def _kernel(base: Path) -> str:
    """The kernel's release: this host's, or, for a copy, the one its proc/sys/kernel/osrelease names (never this
    host's, which would label another host's state with it)."""
    if base.resolve() == Path("/"):
        return os.uname().release
    try:
        return (base / "proc/sys/kernel/osrelease").read_text(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _units(iommus: Path) -> list[str]:
    """The IOMMUs sysfs lists (dmar0 for Intel, ivhd0 for AMD): whether a missing debugfs means no such IOMMU or
    a kernel built without its debugfs."""
    try:
        return sorted(p.name for p in iommus.iterdir())
    except OSError:
        return []


def _no_debugfs(vendor: str, units: list[str], option: str, since: str = "") -> str:
    if units:
        return (f"this kernel has no {vendor} IOMMU debugfs ({option} off{since}), though {', '.join(units)} "
                "is there")
    return f"no such driver: no {vendor} IOMMU on this host (none in /sys/class/iommu)"


def _debugfs_missing(debugfs: Path) -> str | None:
    try:
        entries = list(debugfs.iterdir())
    except PermissionError:
        return "not root: debugfs is readable by root only"
    except OSError:
        return f"no debugfs: it is not mounted at {debugfs} (mount -t debugfs none /sys/kernel/debug)"
    if not entries:
        return f"no debugfs: {debugfs} is empty (not mounted: mount -t debugfs none /sys/kernel/debug)"
    return None


def _read(path: Path, snap: dict[str, Any], what: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(TEXT_LIMIT).decode("utf-8", "replace")
    except PermissionError:
        snap["unreadable"][what] = f"not root: {path} is readable by root only"
    except OSError as e:
        snap["unreadable"][what] = f"{path}: {e.strerror or e}"
    return None


def _pci(devices: Path, snap: dict[str, Any]) -> None:
    try:
        names = sorted(p.name for p in devices.iterdir())
    except OSError as e:
        snap["unreadable"]["pci config space"] = f"{devices}: {e.strerror or e}"
        return
    not_root = conventional = 0
    for name in names:
        try:
            config = (devices / name / "config").read_bytes()[:pci_caps.CONFIG_SIZE]
        except OSError as e:
            snap["unreadable"][f"pci {name}"] = f"config space: {e.strerror or e}"
            continue
        try:
            fn = pci_caps.decode(config)
        except pci_caps.BadConfig as e:
            snap["unreadable"][f"pci {name}"] = f"config space: {e}"
            continue
        if not fn.pop("extended"):
            not_root += len(config) <= pci_caps.USER_VISIBLE
            conventional += len(config) > pci_caps.USER_VISIBLE
        if fn.keys() & {"pasid", "pri", "ats"}:
            unit = iommu_limits.device_unit(devices / name)
            snap["pci"][name] = fn | ({"iommu": unit} if unit else {})
    if not_root:
        snap["unreadable"]["pci extended capabilities"] = (
            f"not root: {not_root} of {len(names)} functions gave only the first {pci_caps.USER_VISIBLE} bytes of "
            "config space, which hold no PASID, PRI or ATS capability")
    if conventional:
        snap["unreadable"]["pci conventional functions"] = (
            f"{conventional} of {len(names)} functions have no extended config space (conventional PCI, or a "
            "virtual bus that offers only 256 bytes), so no PASID, PRI or ATS capability")


def _intel(path: Path, snap: dict[str, Any], units: list[str]) -> None:
    if not path.is_dir():
        snap["unreadable"]["intel iommu debugfs"] = _no_debugfs("Intel", units, "CONFIG_INTEL_IOMMU_DEBUGFS")
        return
    intel: dict[str, Any] = {}
    text = _read(path / "dmar_translation_struct", snap, "intel dmar_translation_struct")
    if text is not None:
        try:
            intel.update(intel_debugfs.translation_struct(text, _segments(path.parents[3] / "class/iommu")))
        except intel_debugfs.BadDump as e:
            snap["unreadable"]["intel dmar_translation_struct"] = f"{path / 'dmar_translation_struct'}: {e}"
    text = _read(path / "invalidation_queue", snap, "intel invalidation_queue")
    if text is not None:
        intel["invalidation_queue"] = intel_debugfs.invalidation_queue(text)
    text = _read(path / "dmar_perf_latency", snap, "intel dmar_perf_latency")
    if text is not None:
        try:
            intel["latency"] = intel_debugfs.latency(text)
        except intel_debugfs.BadDump as e:
            snap["unreadable"]["intel dmar_perf_latency"] = f"{path / 'dmar_perf_latency'}: {e}"
    intel["paging_pasids"] = _paging_pasids(path)
    intel["translations"] = _translations(path, intel["paging_pasids"], snap)
    snap["intel"] = intel


def _segments(iommus: Path) -> dict[str, dict[str, str]]:
    """{iommu: {"bus:dev.fn": full device name}}, from sysfs's links of each IOMMU to its devices: the debugfs dump
    prints no PCI segment, and a host with several segments has IOMMUs on each."""
    out: dict[str, dict[str, str]] = {}
    try:
        units = list(iommus.iterdir())
    except OSError:
        return out
    for unit in units:
        try:
            names = [d.name for d in (unit / "devices").iterdir() if _PCI_NAME.fullmatch(d.name)]
        except OSError:
            continue
        out[unit.name] = {n[5:]: n for n in names}
    return out


def _paging_pasids(path: Path) -> dict[str, list[int]]:
    """{device: PASIDs}: since 6.7 debugfs.c makes a directory per device and, under it, one per PASID attached to
    a paging domain, named by the PASID in hex (intel_iommu_debugfs_create_dev_pasid()); SVA domains get none."""
    out: dict[str, list[int]] = {}
    for dev in sorted(p for p in path.iterdir() if p.is_dir() and _PCI_NAME.fullmatch(p.name)):
        out[dev.name] = sorted(int(p.name, 16) for p in dev.iterdir() if p.is_dir() and _HEX.fullmatch(p.name))
    return out


def _translations(path: Path, paging: dict[str, list[int]], snap: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{device: [page-table dump of its own domain (PASID 0), then of each paging PASID]}, each read to
    PGTABLE_LIMIT and all to PGTABLE_BUDGET. Devices in one domain print the same table: after its first line
    names a page table already read, the dump says which device's it is and is not read further."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: dict[int, str] = {}
    budget, skipped = PGTABLE_BUDGET, []
    for dev, pasids in sorted(paging.items()):
        for pasid, where in [(0, path / dev)] + [(p, path / dev / f"{p:x}") for p in pasids]:
            file = where / "domain_translation_struct"
            if not file.exists():
                continue
            if budget <= 0:
                skipped.append(f"{dev} PASID {pasid}")
                continue
            try:
                entry, used = _pgtable(file, seen, dev)
            except OSError as e:
                snap["unreadable"][f"intel {dev} PASID {pasid} page table"] = f"{file}: {e.strerror or e}"
                continue
            except intel_debugfs.BadDump as e:
                snap["unreadable"][f"intel {dev} PASID {pasid} page table"] = f"{file}: {e}"
                continue
            budget -= used
            out.setdefault(dev, []).append({"pasid": pasid} | entry)
    if skipped:
        snap["unreadable"]["intel page tables"] = (f"{len(skipped)} dumps not read ({', '.join(skipped[:4])}"
                                                   f"{', ...' if len(skipped) > 4 else ''}): this snapshot's "
                                                   f"{PGTABLE_BUDGET >> 20} MiB for page tables was spent")
    return out


def _pgtable(file: Path, seen: dict[int, str], dev: str) -> tuple[dict[str, Any], int]:
    """One dump, parsed, and the bytes read for it; `seen` maps each page table read so far to its device."""
    with open(file, "rb") as f:
        data = f.read(4096)
        head = intel_pgtable.first_line(data.decode("utf-8", "replace"))
        if head is not None and head["pgd"] in seen:
            return {"pgd": head["pgd"], "same_as": seen[head["pgd"]]}, len(data)
        data += f.read(PGTABLE_LIMIT + 1 - len(data)) if len(data) == 4096 else b""
    cut = len(data) > PGTABLE_LIMIT
    entry = intel_pgtable.dump(data[:PGTABLE_LIMIT].decode("utf-8", "replace"), PGTABLE_LIMIT if cut else 0)
    if entry["pgd"] is not None:
        seen[entry["pgd"]] = dev
        entry.pop("pasid", None)  # the file's place names it; legacy mode prints none
    return entry, len(data)


def _amd(path: Path, snap: dict[str, Any], units: list[str]) -> None:
    """drivers/iommu/amd/debugfs.c (files from 6.17, "Introduce debugfs support in IOMMU", applied July 2025;
    before, only the directories): per IOMMU, "cmdbuf" shows the command buffer's head and tail (head == tail:
    every queued command, invalidations included, is done); at the top, "devtbl" shows the device table entry of
    the device last written to "devid" (its GCR3/GV bits say whether PASIDs translate for it). Nothing is written
    here: a snapshot only reads."""
    if not path.is_dir():
        snap["unreadable"]["amd iommu debugfs"] = _no_debugfs("AMD", units, "CONFIG_AMD_IOMMU_DEBUGFS",
                                                              ", or a kernel before 6.17")
        return
    amd: dict[str, Any] = {"command_buffers": {}}
    for unit in sorted(p for p in path.iterdir() if p.is_dir()):
        text = _read(unit / "cmdbuf", snap, f"amd {unit.name}/cmdbuf") if (unit / "cmdbuf").exists() else None
        if text is None:
            continue
        if (m := _CMDBUF.match(text)) is not None:
            amd["command_buffers"][unit.name] = {"head": int(m["head"]), "tail": int(m["tail"])}
        else:
            first = text.splitlines()[0][:80] if text else ""
            snap["unreadable"][f"amd {unit.name}/cmdbuf"] = f"{unit / 'cmdbuf'}: line 1: not a line debugfs.c " \
                                                         f"prints: {first!r}"
    if (path / "devtbl").exists() and (text := _read(path / "devtbl", snap, "amd devtbl")) is not None:
        amd["devtbl"] = amd_debugfs.devtbl(text)
    if not (path / "devtbl").exists() and not any((u / "cmdbuf").exists() for u in path.iterdir() if u.is_dir()):
        snap["unreadable"]["amd iommu debugfs"] = (f"{path} holds only the per-IOMMU directories: a kernel before "
                                                   "6.17 makes no files there")
    snap["amd"] = amd
