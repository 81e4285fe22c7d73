"""PASIDs a driver numbers itself, outside the IOMMU's global space, so that no view files them with the IOMMU's.

amdgpu hands each GPU VM a PASID from an IDA private to the driver (amdgpu_pasid_alloc() in
drivers/gpu/drm/amd/amdgpu/amdgpu_ids.c); its fault lines print that number. The importer marks such events
(`pasid_space`) and lists the (device, PASID) pairs of each space in the footer's import entry; the timeline, `info`
and `check` read them from here. A capture never holds any: the probes see only the IOMMU's PASIDs.
"""

from __future__ import annotations

from typing import Any


def foreign_pasids(footer: dict[str, Any] | None) -> dict[tuple[str | None, int], str]:
    """{(device, PASID): space} for every pair a recording's import saw in a driver's own space."""
    spaces = ((footer or {}).get("import") or {}).get("pasid_spaces")
    out: dict[tuple[str | None, int], str] = {}
    if not isinstance(spaces, dict):
        return out
    for space, pairs in spaces.items():
        for pair in pairs if isinstance(space, str) and isinstance(pairs, list) else ():
            if isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[1], int) and \
                    (pair[0] is None or isinstance(pair[0], str)):
                out[(pair[0], pair[1])] = space
    return out


def by_space(pairs: dict[tuple[str | None, int], str]) -> dict[str, list[dict[str, Any]]]:
    """The same pairs grouped by space, for `info --json`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for (device, pasid), space in sorted(pairs.items(), key=lambda kv: (kv[1], kv[0][0] or "", kv[0][1])):
        out.setdefault(space, []).append({"device": device, "pasid": pasid})
    return out
