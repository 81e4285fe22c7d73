"""What tests ask of processes they start: whether one has ended."""

from __future__ import annotations

from pathlib import Path


def ended(pid: int | str) -> bool:
    """Whether process `pid` has ended (gone, or a zombie its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
