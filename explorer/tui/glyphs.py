"""How each event kind looks on a timeline: a glyph, a colour and a priority (the most telling kind wins a cell)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import Kind


@dataclass(frozen=True, slots=True)
class Mark:
    """A kind's look. Its place in MARKS is its priority: later entries win a shared cell."""

    glyph: str
    color: str  # a colour that reads on dark and light backgrounds alike
    meaning: str  # for the legend in the help screen


MARKS: dict[str, Mark] = {
    Kind.MAP: Mark("·", "#808080", "map (DMA mapping)"),
    Kind.UNMAP: Mark("·", "#808080", "unmap"),
    Kind.UAPI: Mark("u", "#2aa1b3", "iommufd / VFIO ioctl"),
    Kind.GROUP_ADD: Mark("g", "#808080", "device joins an IOMMU group"),
    Kind.GROUP_REMOVE: Mark("g", "#808080", "device leaves an IOMMU group"),
    Kind.DOMAIN_ATTACH: Mark("d", "#808080", "device attached to a domain"),
    Kind.PAGE_RESPONSE: Mark("◂", "#3c9a3c", "page response (the group is answered)"),
    Kind.PAGE_REQUEST: Mark("▸", "#c88a00", "page request (a group opens)"),
    Kind.SVA_BIND: Mark("b", "#5a7fe0", "SVA bind"),
    Kind.SVA_UNBIND: Mark("x", "#5a7fe0", "SVA unbind"),
    Kind.PASID_ATTACH: Mark("[", "#5a7fe0", "PASID attached to a domain"),
    Kind.PASID_REPLACE: Mark("|", "#5a7fe0", "PASID domain replaced"),
    Kind.PASID_DETACH: Mark("]", "#5a7fe0", "PASID detached"),
    Kind.MM_EXIT: Mark("†", "#a05ad0", "process (mm) exit"),
    Kind.PASID_ALLOC: Mark("A", "#3c9a3c", "PASID allocated"),
    Kind.PASID_FREE: Mark("F", "#3c9a3c", "PASID freed"),
    Kind.MARKER: Mark("◆", "#a05ad0", "scenario marker (a teaching step)"),
    Kind.FAULT: Mark("✖", "#d03c3c", "unrecoverable DMA fault"),
    Kind.LOST: Mark("?", "#d03c3c", "events lost by the capture"),
    Kind.ANOMALY: Mark("!", "#ff3030", "anomaly found by the simulator"),
}
UNKNOWN = Mark("•", "#808080", "a kind this version does not know")
_BY_PRIORITY = list(MARKS.values())
DENSITY = "▁▂▃▄▅▆▇█"  # low-priority cells show how many events they hold


def priority_table(kind_names: list[str]) -> np.ndarray:
    """Priority per kind id of an index: 1 + the kind's place in MARKS, 0 for kinds this version does not know."""
    order = {name: i + 1 for i, name in enumerate(MARKS)}
    table = np.zeros(256, dtype=np.int16)
    for i, name in enumerate(kind_names):
        table[i] = order.get(name, 0)
    return table


def mark_of_priority(priority: int) -> Mark:
    return UNKNOWN if priority <= 0 else _BY_PRIORITY[priority - 1]


def density_glyph(count: int) -> str:
    """A bar whose height grows with log2 of the count, so 1 and 10,000 events look different."""
    level = min(int(np.log2(max(count, 1))) // 2, len(DENSITY) - 1)
    return DENSITY[level]
