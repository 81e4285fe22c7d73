"""Builds raw probe records as the BPF programs write them, for the decoding tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from probes.record import REC, TEXT_BYTES, Ev


def record(type: Ev, ts: int, **fields: Any) -> np.ndarray:
    """One record; bytes fields (`in`, `out`, `comm`) are padded, `in_bytes`/`out_bytes` set n_in/n_out too."""
    rec = np.zeros(1, REC)
    rec["type"], rec["ts"] = int(type), ts
    rec["comm"] = fields.pop("comm", b"test")
    for name in ("in", "out"):
        raw = fields.pop(name, None)
        if raw is not None:
            rec[name] = np.frombuffer(raw.ljust(TEXT_BYTES, b"\0")[:TEXT_BYTES], np.uint8).tobytes()
            rec["n_" + name] = min(len(raw), TEXT_BYTES)
    for name, value in fields.items():
        rec[name] = value
    return rec


def batch(*recs: np.ndarray) -> np.ndarray:
    return np.concatenate(recs) if recs else np.zeros(0, REC)
