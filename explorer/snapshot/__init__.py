"""The kernel's own view of its PASIDs, read from the host (`take`), kept in recordings (`stored`) and set beside
the model (explorer.reconcile)."""

from . import stored
from .take import take

__all__ = ["stored", "take"]
