"""The allocator model: a deterministic simulator of the kernel's PASID machinery and its invariant checks."""

from ..state_records import LivePasid, PendingGroup
from .checks import RULES, Anomaly, Rule, Severity
from .coverage import LIFECYCLE_KINDS, lifecycle_unobserved, starts_midstream
from .engine import DEFAULT_STALE_NS, STATEFUL_KINDS, Simulator
from .state import Attachment, Bind, SimState

__all__ = [
    "Anomaly", "Attachment", "Bind", "DEFAULT_STALE_NS", "LIFECYCLE_KINDS", "LivePasid",
    "PendingGroup", "RULES", "Rule", "STATEFUL_KINDS", "Severity", "SimState", "Simulator",
    "lifecycle_unobserved", "starts_midstream",
]
