"""Which kernel rules apply: when an mm's SVA PASID is freed and which allocator hands PASIDs out.

Kernel history (torvalds/linux):
- up to 5.17 the Intel SVM driver freed an mm's PASID at its last unbind (ioasid_put in intel_svm_unbind_mm);
- 5.18 ("iommu/sva: Assign a PASID to mm on PASID allocation and free it on mm exit") keeps one PASID per mm
  for the mm's whole life and frees it in mm_pasid_drop() when the mm is torn down;
- 6.5 replaced the ioasid allocator with the global IDA (iommu_alloc_global_pasid), lowest free first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..events import AllocPath


@dataclass(frozen=True, slots=True)
class KernelPolicy:
    """The PASID rules of one kernel release."""

    release: str | None
    sva_free_at: str  # "mm_exit" (5.18 onwards) or "last_unbind" (before)
    allocator: str  # AllocPath.IOASID before 6.5, else "ida"

    def describe(self) -> str:
        when = ("when its mm goes away, not at the last unbind" if self.sva_free_at == "mm_exit"
                else "at the process's last unbind")
        alloc = "the global IDA (lowest free first)" if self.allocator == "ida" else "the ioasid allocator"
        return f"kernel {self.release or '(unknown, assuming current)'}: an SVA PASID is freed {when}; " \
               f"PASIDs come from {alloc}"


def parse_release(release: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def policy_for(release: str | None) -> KernelPolicy:
    """Rules for a kernel release string such as '6.18.44-fc'; unknown releases get current rules."""
    version = parse_release(release)
    if version is None:
        return KernelPolicy(release, "mm_exit", "ida")
    return KernelPolicy(
        release,
        "mm_exit" if version >= (5, 18) else "last_unbind",
        "ida" if version >= (6, 5) else str(AllocPath.IOASID),
    )
