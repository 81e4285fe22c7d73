"""Snapshots kept in a recording: the one taken at the start in the header (so a capture killed with SIGKILL keeps
it), the one taken at the end in the footer, both under the key "snapshots" (a list; docs/recording-format.md).
Recordings from before snapshots existed have neither key and read as having none. A merged recording keeps each
other machine's in its machine entry, under the same key, on the timeline (`moved`); read, each names its machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..machines import Machine, qualified

KEY = "snapshots"
MACHINE = "machine"  # a snapshot read from a merged recording's other machine's entry: the machine's name


def valid(snap: Any) -> str | None:
    """Why `snap` is not a snapshot this version can use, or None."""
    if not isinstance(snap, dict):
        return f"a snapshot must be a map, found {type(snap).__name__}"
    if type(snap.get("taken_ns")) is not int:
        return "a snapshot's taken_ns must be an integer"
    if "done_ns" in snap and type(snap["done_ns"]) is not int:
        return "a snapshot's done_ns must be an integer"
    if not isinstance(snap.get("unreadable", {}), dict):
        return "a snapshot's unreadable must be a map"
    pci = snap.get("pci", {})
    if not _by_device(pci) or not all(map(_caps_ok, pci.values())):
        return "a snapshot's pci must map devices to their capabilities (a PASID one with an integer width)"
    intel = snap.get("intel", {})
    if not isinstance(intel, dict) or not _by_device(intel.get("devices", {})) or \
            not all(map(_table_ok, intel.get("devices", {}).values())):
        return "a snapshot's intel.devices must map devices to their IOMMU and PASID table entries"
    if not _by_device(intel.get("iommus", {})):
        return "a snapshot's intel.iommus must map IOMMUs to what they say"
    paging = intel.get("paging_pasids", {})
    if not isinstance(paging, dict) or not all(isinstance(v, list) and all(type(p) is int for p in v)
                                               for v in paging.values()):
        return "a snapshot's intel.paging_pasids must map devices to lists of PASIDs"
    dumps = intel.get("translations", {})
    if not isinstance(dumps, dict) or not all(isinstance(v, list) and all(map(_dump_ok, v)) for v in dumps.values()):
        return "a snapshot's intel.translations must map devices to lists of page-table dumps"
    return None


def _by_device(v: Any) -> bool:
    """A map from names (devices, IOMMUs) to maps: what the checks beside the model read by name."""
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, dict) for k, x in v.items())


def _caps_ok(fn: dict[str, Any]) -> bool:
    """A PCI function's capabilities as explorer.snapshot.pci_caps decodes them, where the checks read them."""
    pasid, pri = fn.get("pasid"), fn.get("pri")
    return (pasid is None or isinstance(pasid, dict) and type(pasid.get("width")) is int and "enabled" in pasid) and \
        (pri is None or isinstance(pri, dict))


def _table_ok(entry: dict[str, Any]) -> bool:
    """A device's VT-d PASID table as explorer.snapshot.intel_debugfs reads it."""
    pasids = entry.get("pasids", [])
    return (entry.get("iommu") is None or isinstance(entry["iommu"], str)) and isinstance(pasids, list) and \
        all(isinstance(e, dict) and type(e.get("pasid")) is int for e in pasids)


def _dump_ok(d: Any) -> bool:
    """A page-table dump as explorer.snapshot.intel_pgtable makes it, in one of its three forms."""
    return isinstance(d, dict) and type(d.get("pasid")) is int and (
        d.get("pgd") is None or isinstance(d.get("same_as"), str) or type(d.get("mappings")) is int)


def snapshots(header_extra: dict[str, Any], footer: dict[str, Any] | None,
              machines: Sequence[Machine] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """The recording's snapshots in time order (of every machine of `machines`, the header's table; each of a
    machine but the first naming it), and a line for each one that could not be used."""
    found, problems = [], []
    holders = [("header", header_extra, {}), ("footer", footer or {}, {}),
               *((f"machine {m.name}", m.extra, {MACHINE: m.name}) for m in machines[1:])]
    for where, holder, of in holders:
        listed = holder.get(KEY, [])
        if not isinstance(listed, list):
            problems.append(f"{where} key {KEY}: expected a list, found {type(listed).__name__}")
            continue
        for i, snap in enumerate(listed):
            why = valid(snap)
            if why is None:  # (the machine is the holder's to say: a first machine's snapshot names none)
                found.append({**snap, **of} if of else {k: v for k, v in snap.items() if k != MACHINE})
            else:
                problems.append(f"{where} key {KEY}[{i}]: {why}")
    return sorted(found, key=lambda s: s["taken_ns"]), problems


def moved(snap: dict[str, Any], offset_ns: int, machine: str) -> dict[str, Any]:
    """A snapshot of a machine merged as `machine` (not the first), whose times move by `offset_ns`, as the merged
    recording keeps it: on the timeline, its devices named as the machine's rows name them (everywhere `valid`
    and explorer.reconcile read a device's name)."""
    out = {**snap, "taken_ns": snap["taken_ns"] + offset_ns,
           "pci": _renamed(snap.get("pci", {}), machine)}
    if type(snap.get("done_ns")) is int:
        out["done_ns"] = snap["done_ns"] + offset_ns
    if "intel" in snap:
        intel = out["intel"] = {**snap["intel"]}
        for key in ("devices", "paging_pasids"):
            if key in intel:
                intel[key] = _renamed(intel[key], machine)
        if "translations" in intel:  # a dump of a page table read already names that one's device
            intel["translations"] = {qualified(machine, dev): [
                {**d, "same_as": qualified(machine, d["same_as"])} if isinstance(d.get("same_as"), str) else d
                for d in dumps]
                for dev, dumps in intel["translations"].items()}
    amd = snap.get("amd")
    if isinstance(amd, dict) and isinstance(amd.get("devtbl"), dict) and isinstance(amd["devtbl"].get("device"), str):
        out["amd"] = {**amd, "devtbl": {**amd["devtbl"], "device": qualified(machine, amd["devtbl"]["device"])}}
    return out


def _renamed(by_device: dict[str, Any], machine: str) -> dict[str, Any]:
    return {qualified(machine, dev): value for dev, value in by_device.items()}
