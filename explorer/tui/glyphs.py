"""How each event kind looks on a timeline: a glyph, a colour and a priority (the most telling kind wins a cell)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import Kind
from .palette import ink


@dataclass(frozen=True, slots=True)
class Mark:
    """A kind's look. Its place in MARKS is its priority: later entries win a shared cell."""

    glyph: str
    role: str  # its ink (palette.INK), a shade per theme
    meaning: str  # for the legend in the help screen

    def colour(self, dark: bool) -> str:
        return ink(self.role, dark)


MARKS: dict[str, Mark] = {
    Kind.MAP: Mark("·", "grey", "map (DMA mapping)"),
    Kind.UNMAP: Mark("·", "grey", "unmap"),
    Kind.UAPI: Mark("u", "cyan", "iommufd / VFIO ioctl"),
    Kind.GROUP_ADD: Mark("g", "grey", "device joins an IOMMU group"),
    Kind.GROUP_REMOVE: Mark("g", "grey", "device leaves an IOMMU group"),
    Kind.DOMAIN_ATTACH: Mark("d", "grey", "device attached to a domain"),
    Kind.PAGE_RESPONSE: Mark("◂", "green", "page response (the group is answered)"),
    Kind.PAGE_REQUEST: Mark("▸", "amber", "page request (a group opens)"),
    Kind.SVA_BIND: Mark("b", "blue", "SVA bind"),
    Kind.SVA_UNBIND: Mark("x", "blue", "SVA unbind"),
    Kind.PASID_ATTACH: Mark("[", "blue", "PASID attached to a domain"),
    Kind.PASID_REPLACE: Mark("|", "blue", "PASID domain replaced"),
    Kind.PASID_DETACH: Mark("]", "blue", "PASID detached"),
    Kind.MM_EXIT: Mark("†", "purple", "process (mm) exit"),
    Kind.PASID_ALLOC: Mark("A", "green", "PASID allocated"),
    Kind.PASID_FREE: Mark("F", "green", "PASID freed"),
    Kind.MARKER: Mark("◆", "purple", "scenario marker (a teaching step)"),
    Kind.FAULT: Mark("✖", "red", "unrecoverable DMA fault"),
    Kind.LOST: Mark("?", "red", "events lost by the capture"),
    Kind.ANOMALY: Mark("!", "red", "anomaly found by the simulator"),
}
UNKNOWN = Mark("•", "grey", "a kind this version does not know")
_BY_PRIORITY = list(MARKS.values())
DENSITY = "▁▂▃▄▅▆▇█"  # low-priority cells show how many events they hold


def priority_table(kind_names: list[str]) -> np.ndarray:
    """Priority per kind id of an index: 1 + the kind's place in MARKS, 0 for kinds this version does not know."""
    order = {name: i + 1 for i, name in enumerate(MARKS)}
    table = np.zeros(256, dtype=np.uint8)
    for i, name in enumerate(kind_names):
        table[i] = order.get(name, 0)
    return table


def mark_of_priority(priority: int) -> Mark:
    return UNKNOWN if priority <= 0 else _BY_PRIORITY[priority - 1]


def density_glyph(count: int) -> str:
    """A bar whose height grows with log2 of the count, so 1 and 10,000 events look different."""
    level = min(int(np.log2(max(count, 1))) // 2, len(DENSITY) - 1)
    return DENSITY[level]
