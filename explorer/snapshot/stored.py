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
    return None


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
