"""Snapshots kept in a recording: the one taken at the start in the header (so a capture killed with SIGKILL keeps
it), the one taken at the end in the footer, both under the key "snapshots" (a list; docs/recording-format.md).
Recordings from before snapshots existed have neither key and read as having none."""

from __future__ import annotations

from typing import Any

KEY = "snapshots"


def valid(snap: Any) -> str | None:
    """Why `snap` is not a snapshot this version can use, or None."""
    if not isinstance(snap, dict):
        return f"a snapshot must be a map, found {type(snap).__name__}"
    if type(snap.get("taken_ns")) is not int:
        return "a snapshot's taken_ns must be an integer"
    for key in ("pci", "unreadable"):
        if not isinstance(snap.get(key, {}), dict):
            return f"a snapshot's {key} must be a map"
    intel = snap.get("intel", {})
    if not isinstance(intel, dict) or not isinstance(intel.get("devices", {}), dict):
        return "a snapshot's intel.devices must be a map"
    paging = intel.get("paging_pasids", {})
    if not isinstance(paging, dict) or not all(isinstance(v, list) and all(type(p) is int for p in v)
                                               for v in paging.values()):
        return "a snapshot's intel.paging_pasids must map devices to lists of PASIDs"
    dumps = intel.get("translations", {})
    if not isinstance(dumps, dict) or not all(isinstance(v, list) and all(map(_dump_ok, v)) for v in dumps.values()):
        return "a snapshot's intel.translations must map devices to lists of page-table dumps"
    return None


def _dump_ok(d: Any) -> bool:
    """A page-table dump as explorer.snapshot.intel_pgtable makes it, in one of its three forms."""
    return isinstance(d, dict) and type(d.get("pasid")) is int and (
        d.get("pgd") is None or isinstance(d.get("same_as"), str) or type(d.get("mappings")) is int)


def snapshots(header_extra: dict[str, Any], footer: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The recording's snapshots in time order, and a line for each one that could not be used."""
    found, problems = [], []
    for where, holder in (("header", header_extra), ("footer", footer or {})):
        listed = holder.get(KEY, [])
        if not isinstance(listed, list):
            problems.append(f"{where} key {KEY}: expected a list, found {type(listed).__name__}")
            continue
        for i, snap in enumerate(listed):
            why = valid(snap)
            if why is None:
                found.append(snap)
            else:
                problems.append(f"{where} key {KEY}[{i}]: {why}")
    return sorted(found, key=lambda s: s["taken_ns"]), problems
