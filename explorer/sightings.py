"""One kernel event seen by several hooks is one event: the rule a live capture (probes/decode.py) and an import of
a trace (importers/ftrace.py) both fold their sightings by.

Each hook sees the event deeper in the same call chain, on the same thread, for the same PASID (and group),
microseconds later: a deeper sighting is folded into the event as evidence (`seen_by`). An mm's free
(mm_pasid_drop, then iommu_free_global_pasid inside it, 6.6+); a page request (iommu_report_device_fault, then a
vendor tree's iommu:dev_fault inside it, then VT-d's prq_report); a page response (the core's, then a vendor tree's
iommu:dev_page_response or the driver's page_response op, then VT-d's qi_submit of the descriptor). How deep each
hook is comes from the kernel facts table (`HookFact.sighting_of`). A sighting no shallower hook saw first is an
event of its own (a response the core sends itself through the driver op, a driver's own free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from .events import R_FIELDS, R_PASID, Row
from .kernel_facts import HOOK_FACTS

SIGHTING_WINDOW_NS = 10_000_000  # the second hook fires microseconds after the first, on the same thread
MAX_FIRST_SIGHTINGS = 4096


@cache
def tier(hook: str) -> int:
    """How deep in the kernel's call chain `hook` sees its event: 0 for the first sighting, one more than the
    hooks it is a sighting of (the core's response 0, the driver's page_response op 1, VT-d's qi_submit 2)."""
    return 1 + max((tier(s) for s in HOOK_FACTS[hook].sighting_of), default=-1)


@dataclass(slots=True)
class Sightings:
    """The kernel events seen lately, by thread, topic (free, request, response) and PRG index: each with its time,
    PASID, row and the deepest tier that saw it."""

    _first: dict[tuple[int | None, str, int | None], tuple[int, int | None, Row, int]] = field(
        default_factory=dict, repr=False)

    def fold(self, topic: str, depth: int, ts: int, tid: int | None, row: Row, seen_as: str) -> list[Row]:
        """`row`, seen at `ts` on thread `tid` by a hook at tier `depth` named `seen_as`: [] when it is a deeper
        sighting of an event already seen (then `seen_as` is added to that event's `seen_by`), else [row]."""
        key = (tid, topic, row[R_FIELDS].get("prg"))
        pasid = row[R_PASID]
        first = self._first.get(key)
        if first is not None and first[3] < depth and ts - first[0] <= SIGHTING_WINDOW_NS and (
                first[1] is None or pasid is None or first[1] == pasid):
            first[2][R_FIELDS].setdefault("seen_by", []).append(seen_as)
            self._first[key] = (first[0], first[1], first[2], depth)
            return []
        self._first[key] = (ts, pasid, row, depth)
        if len(self._first) > MAX_FIRST_SIGHTINGS:
            del self._first[next(iter(self._first))]
        return [row]
