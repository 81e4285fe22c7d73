"""Open whatever a user points the explorer at: a recording, or a YAML teaching scenario simulated on the fly."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .index import ProgressHook, RecordingIndex
from .recording import Recording
from .snapshot import stored

FIRST_SCREEN = 100_000  # events the explorer indexes before its first screen; the rest are indexed behind it


def open_index(path: str | os.PathLike[str], *, progress: ProgressHook | None = None,
               stale_ns: int | None = None, model: bool = True, first: int | None = None,
               history: bool | None = True) -> RecordingIndex:
    """Index `path`: a .pasidrec file, or a scenario .yaml (simulated in memory, nothing written). With `model`
    False a recording's model is left to `RecordingIndex.run_model` (a scenario is always modelled), and with
    `first` only the chunks holding the first `first` events are indexed (see `RecordingIndex.build`). `history`
    False keeps no checkpoints to seek in, None only when the recording holds the kernel's own snapshots (which
    `check` sets beside the model's state at their times)."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(p), "", "no such file")
    kw = {} if stale_ns is None else {"stale_ns": stale_ns}
    if p.suffix in (".yaml", ".yml"):
        from .scenarios import load_scenario

        scenario = load_scenario(p)
        return scenario.index(**kw)
    rec = Recording(p)
    if history is None:
        history = bool(stored.snapshots(rec.header.extra, rec.footer, rec.header.machines)[0])
    return RecordingIndex.build(rec, progress=progress, model=model, first=first, history=history, **kw)
