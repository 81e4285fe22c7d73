"""Open whatever a user points the explorer at: a recording, or a YAML teaching scenario simulated on the fly."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .index import ProgressHook, RecordingIndex
from .recording import Recording

FIRST_SCREEN = 100_000  # events the explorer indexes before its first screen; the rest are indexed behind it


def open_index(path: str | os.PathLike[str], *, progress: ProgressHook | None = None,
               stale_ns: int | None = None, model: bool = True, first: int | None = None) -> RecordingIndex:
    """Index `path`: a .pasidrec file, or a scenario .yaml (simulated in memory, nothing written). With `model`
    False a recording's model is left to `RecordingIndex.run_model` (a scenario is always modelled), and with
    `first` only the chunks holding the first `first` events are indexed (see `RecordingIndex.build`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "", "no such file")
    kw = {} if stale_ns is None else {"stale_ns": stale_ns}
    if p.suffix in (".yaml", ".yml"):
        from .scenarios import load_scenario

        scenario = load_scenario(p)
        return scenario.index(**kw)
    return RecordingIndex.build(Recording(p), progress=progress, model=model, first=first, **kw)
