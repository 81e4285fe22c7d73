"""The kernel lab: real lab kernels built from Debian source packages, booted under QEMU, with real PASID events.

Nothing here imports the terminal UI: the lab makes recordings; the explorer shows them.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).with_name("data")
