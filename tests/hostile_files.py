"""Recordings a stranger could craft: valid magic, frames and CRCs around rows of the wrong types and footers that
lie. Shared by the hostile-input tests and `benchmarks/hostile.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from explorer.events import KINDS
from explorer.recording import DeviceInfo, Header
from explorer.recording.columns import columns_of
from explorer.recording.framing import MAGIC, TAG_CHUNK, TAG_FOOTER, TAG_HEADER, frame, tail
from explorer.recording.header import PACKED_VERSION
from explorer.recording.packed import Packer

DEV = "0000:6a:01.0"
GOOD = [
    [1000, "pasid_alloc", DEV, 1, 0, 1, "a", "t", {"path": "iommufd", "owner": "x"}],
    [2000, "pasid_attach", DEV, 1, 0, 1, "a", "t", {"domain": 7, "domain_type": "paging"}],
    [3000, "fault", DEV, 1, 0, 1, "a", "t", {"addr": 4096, "reason": "r", "code": 5}],
    [4000, "page_request", DEV, 1, 0, 1, "a", "t", {"prg": 3, "addr": 8192, "perm": 3, "last": True}],
    [5000, "page_response", DEV, 1, 0, 1, "a", "t", {"prg": 3, "code": 0}],
    [6000, "uapi", None, None, 0, 1, "a", "t", {"cmd": 1, "name": "IOMMU_IOAS_ALLOC", "args": {"out_ioas_id": 2},
                                                 "ret": 0}],
    [7000, "marker", None, None, None, None, None, "t", {"text": "m", "title": "t", "step": 1}],
    [8000, "pasid_free", None, 1, None, None, None, "t", {}],
]
# Values of every type msgpack carries, and numbers at the edges of what it holds
HOSTILE_VALUES: list[Any] = ["x", 1.5, float("nan"), [1], {"a": 1}, None, b"\x00", -1, (1 << 64) - 1, True,
                             -(1 << 63), "\x1b]52;c;cHduZWQ=\x07"]
POSITIONS = ("ts_ns", "kind", "device", "pasid", "cpu", "pid", "comm", "source", "fields")


def header() -> Header:
    return Header(source="test", host={"kernel": "6.18.0"}, devices=[DeviceInfo(DEV, pasid_width=20)])


def chunk_payload(rows: list[Any], seq: int = 0) -> bytes:
    # (times of the rows that have one: a bool is none, and a chunk whose own t0 were False would be refused whole)
    t = [r[0] for r in rows if isinstance(r, list) and r and type(r[0]) is int] or [0]
    return msgpack.packb({"seq": seq, "t0": min(t), "t1": max(t), "n": len(rows), "counts": {}, "events": rows},
                         use_bin_type=True)


def packed_payload(rows: list[Any], seq: int = 0) -> bytes:
    """The chunk a format 2 writer makes of `rows` (compressed columns), or format 1's when they do not fit."""
    t = [r[0] for r in rows if isinstance(r, list) and r and type(r[0]) is int] or [0]
    meta = {"seq": seq, "t0": min(t), "t1": max(t), "n": len(rows), "counts": {}}
    return Packer().chunk(rows, meta, columns_of(rows)) or chunk_payload(rows, seq)


def write_crafted(path: Path, chunks: list[list[Any] | bytes], *, index: list[Any] | None = None,
                  footer: dict[str, Any] | None = None, head: dict[str, Any] | None = None,
                  packed: bool = False) -> Path:
    """A recording holding exactly `chunks` of rows (format 1 without columns, so every row is read; `packed`:
    format 2's compressed columns where the rows fit them) or of ready-made chunk payloads (bytes), with valid
    frames and CRCs; `index` replaces the footer's true chunk list, `footer` adds or replaces its other keys."""
    out = bytearray(MAGIC)
    head = head or {**header().to_dict(), **({"version": PACKED_VERSION} if packed else {})}
    out += frame(TAG_HEADER, msgpack.packb(head, use_bin_type=True))
    true_index = []
    for seq, rows in enumerate(chunks):
        payload = rows if isinstance(rows, bytes) else (packed_payload if packed else chunk_payload)(rows, seq)
        meta = msgpack.unpackb(payload, strict_map_key=False)
        t0, t1 = (t if 0 <= t < 1 << 63 else 0 for t in (meta["t0"], meta["t1"]))
        true_index.append([len(out), len(payload), t0, max(t0, t1), meta["n"]])
        out += frame(TAG_CHUNK, payload)
    foot = {"chunks": true_index if index is None else index, "events": sum(e[4] for e in true_index), "counts": {},
            "devices": [], "end_reason": "complete", **(footer or {})}
    at = len(out)
    out += frame(TAG_FOOTER, msgpack.packb(foot, use_bin_type=True)) + tail(at)
    path.write_bytes(bytes(out))
    return path


def with_value(row: list[Any], place: str, value: Any) -> list[Any]:
    """`row` with one position (a name in POSITIONS) or one field (any other name) set to `value`."""
    out = list(row)
    if place in POSITIONS:
        out[POSITIONS.index(place)] = value
    else:  # (a fields position already replaced by a non-mapping becomes a mapping of this one field)
        out[8] = {**(out[8] if isinstance(out[8], dict) else {}), place: value}
    return out


FIELD_NAMES = sorted({f.name for spec in KINDS.values() for f in spec})
scalars = st.one_of(st.integers(-(1 << 63), (1 << 64) - 1), st.floats(allow_nan=True), st.text(max_size=20),
                    st.binary(max_size=8), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@st.composite
def hostile_rows(draw: st.DrawFn) -> list[Any]:
    """A row that starts well-formed and has one to three of its positions or fields replaced by anything."""
    row = list(draw(st.sampled_from(GOOD)))
    row[8] = dict(row[8])
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(POSITIONS + tuple(FIELD_NAMES)))
        row = with_value(row, place, draw(values))
    return row


# Text a process, a log or a bug reporter controls: a window title (OSC 0), a screen clear, a clipboard write
# (OSC 52), a bell, a carriage return over the line, a line separator, Rich markup, a spreadsheet formula
ESCAPES = {"title": "\x1b]0;pwned\x07", "clear": "\x1b[2J", "clipboard": "\x1b]52;c;cHduZWQ=\x07", "bell": "\x07",
           "cr": "over\rwritten", "markup": "[bold red]x[/]", "formula": "=HYPERLINK(\"http://x\")",
           "separator": "a line\u2028that splits"}
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u2028")


def write_injecting(path: Path) -> Path:
    """A valid recording whose every text (title, host, device, comm, owner, log line, marker) carries escapes."""
    from explorer.events import make
    from explorer.recording import write_events

    bad = "".join(ESCAPES.values())
    dev = "0000:6a:01.0" + ESCAPES["clear"]
    head = Header(source="test", title="t" + bad, description="d" + bad, host={"kernel": "6.18.0", "hostname": bad},
                  devices=[DeviceInfo(dev, pasid_width=20, driver=ESCAPES["title"])])
    events = [
        make("pasid_alloc", 1000, device=dev, pasid=1, pid=7, comm=ESCAPES["title"], path="iommufd", owner=bad),
        make("marker", 1500, text="step" + bad, title=ESCAPES["markup"]),
        make("fault", 2000, device=dev, pasid=1, pid=7, comm=ESCAPES["clipboard"], addr=4096, reason=bad, raw=bad),
        make("pasid_free", 3000, pasid=1, pid=7, comm=ESCAPES["formula"], owner=ESCAPES["formula"]),
        make("pasid_free", 4000, pasid=1, pid=7, comm=ESCAPES["cr"], owner=bad),  # a double free: a finding
    ]
    write_events(path, head, events)
    return path
