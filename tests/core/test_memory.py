"""Memory per distinct item (issue 16): a live PASID, an open page-request group and a small chunk each cost the
index and the model a bounded number of bytes, and the tables that make that so keep every track right."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from explorer import track_table
from explorer.index import RecordingIndex
from explorer.recording import DeviceInfo, Header, Recording, RecordingWriter

DEV = "0000:00:01.0"


def _write(path: Path, rows: Iterator[list[Any]], chunk: int = 4096) -> Path:
    header = Header(source="test", devices=[DeviceInfo(DEV, 20, True, True, "t"), DeviceInfo("0000:00:02.0", 20,
                                                                                             True, True, "t")])
    with RecordingWriter(path, header, chunk_events=chunk) as w:
        for r in rows:
            w.append_row(r)
    return path


def test_tracks_keep_their_keys_across_merges_of_the_track_table(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of PASIDs on two devices, the allocator's track and a device's own, in chunks of seven events,
    with the table merging its new tracks every few chunks: each event's track is its own (device, PASID)."""
    monkeypatch.setattr(track_table, "MERGE_AT", 16)
    keys = [(DEV, None), (None, 3)] + [(d, p) for p in range(3000) for d in (DEV, "0000:00:02.0")]
    rows = [[i, "fault", dev, pasid, 0, 1, "a", "t", {}] for i, (dev, pasid) in enumerate(keys + keys[::-7])]
    idx = RecordingIndex.build(Recording(_write(tmp_path / "t.pasidrec", iter(rows), chunk=7)))
    assert list(idx.tracks) == keys  # numbered as they first appear
    assert [tuple(idx.tracks[t]) for t in idx.track_of.tolist()] == [(r[2], r[3]) for r in rows]
    assert idx.tracks_of_device("0000:00:02.0") == [t for t, k in enumerate(keys) if k[0] == "0000:00:02.0"]
    assert idx.device_names() == [DEV, "0000:00:02.0"]  # the header's; the allocator's track is no device


def _bytes_per_item(path: Path, items: int) -> float:
    """What indexing and modelling `path` leaves allocated (Python's own count), per item."""
    gc.collect()
    tracemalloc.start()
    try:
        idx = RecordingIndex.build(Recording(path))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert idx.n
    return held / items


N = 20_000
CASES: dict[str, tuple[Callable[[int], list[Any]], int, int, float]] = {
    # name: (row i, chunk size, items, bound in bytes per item; after it, what the item took before the change that
    # set the bound, in the same measure)
    "live PASID": (lambda i: [i, "pasid_alloc", DEV, i + 1, 0, 1, "a", "t", {"path": "iommufd"}], 4096, N, 160),  # 190
    "open group": (lambda i: [i, "page_request", DEV, (i >> 9) + 1, 0, 1, "a", "t", {"prg": i & 511, "addr": 4096}],
                   4096, N, 165),  # 160
    # one live PASID to each 256-number page: the pages of slots that hold crowded PASIDs must not cost each (8 KiB)
    "scattered PASID": (lambda i: [i, "pasid_alloc", DEV, (i % 4000) * 256 + 1 + i // 4000, 0, 1, "a", "t",
                                   {"path": "iommufd"}], 4096, N, 250),  # 1,756 with a page made for each
    "five-event chunk": (lambda i: [i, "pasid_alloc" if i % 2 == 0 else "pasid_free", DEV, 1, 0, 1, "a", "t",
                                    {"path": "iommufd"}], 5, N // 5, 700),  # 1,100
}


@pytest.mark.parametrize("case", list(CASES))
def test_memory_per_live_pasid_open_group_and_small_chunk_stays_bounded(tmp_path: Path, case: str) -> None:
    make, chunk, items, bound = CASES[case]
    path = _write(tmp_path / "m.pasidrec", (make(i) for i in range(N)), chunk=chunk)
    assert _bytes_per_item(path, items) < bound
