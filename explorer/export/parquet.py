"""Parquet tables for fleets: one typed row per event, plus the model's findings and intervals, so that DuckDB,
Spark or Trino query a directory of many hosts' recordings as one dataset.

`export --to parquet -o DIR` writes DIR/events.parquet, DIR/anomalies.parquet and DIR/intervals.parquet. Every
row carries the recording's name, host and kernel, so tables from many recordings stack. The schema is in
docs/parquet-schema.md and versioned: each file's metadata holds `pasid_explorer.schema` (SCHEMA_VERSION; a
column added is a minor change, one renamed or retyped a major one) and the recording's header as JSON.

Each event field has one typed column (its type from the event model, `explorer/events.py`): a value that does
not fit it (a number beyond 64 bits, a field of a kind this version does not know) goes to `extra` as JSON, never
dropped. Control characters in text are escaped as in CSV (`explorer/text.py`, newlines kept); a cell starting like
a formula keeps its text exactly (a typed cell no spreadsheet evaluates; docs/parquet-schema.md says why).
Rows are written in batches as they are read: memory beyond the index is one batch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..events import COMMON_FIELDS, KINDS, R_FIELDS, R_MACHINE, Kind, machine_of
from ..index import RecordingIndex
from ..intervals import IntervalKind
from ..simulator import RULES
from ..text import json_encoder, json_text, lines

SCHEMA_VERSION = "1.1"
BATCH = 65536
TABLES = ("events", "anomalies", "intervals")
_JSON = json_encoder(separators=(",", ":"))
# Integer fields that are addresses, pointers or bit sets: unsigned 64-bit (the rest are signed: errors are < 0).
UNSIGNED = frozenset({"mm", "handle", "domain", "old_domain", "addr", "iova", "paddr", "size", "flags", "cmd"})
_U64, _I64 = range(0, 1 << 64), range(-(1 << 63), 1 << 63)


def _arrow_type(name: str, typ: type | tuple[type, ...]) -> pa.DataType:
    types = typ if isinstance(typ, tuple) else (typ,)
    if bool in types:
        return pa.bool_()
    if int in types:
        return pa.uint64() if name in UNSIGNED else pa.int64()
    if float in types:
        return pa.float64()
    return pa.string()  # text, and lists and maps as JSON


def _field_types() -> dict[str, pa.DataType]:
    out: dict[str, pa.DataType] = {}
    for spec in KINDS.values():
        for f in spec:
            if f.name not in COMMON_FIELDS and f.name not in out:
                out[f.name] = _arrow_type(f.name, f.type)
    return out


FIELD_TYPES = _field_types()
RECORDING_COLUMNS = [pa.field("recording", pa.string()), pa.field("host", pa.string()),
                     pa.field("kernel", pa.string())]
EVENTS = pa.schema([*RECORDING_COLUMNS, pa.field("event", pa.int64()), pa.field("machine", pa.string()),
                    pa.field("ts_ns", pa.int64()),
                    pa.field("kind", pa.string()), pa.field("device", pa.string()), pa.field("pasid", pa.int64()),
                    pa.field("cpu", pa.int64()), pa.field("pid", pa.int64()), pa.field("comm", pa.string()),
                    pa.field("source", pa.string()),
                    *(pa.field(n, t) for n, t in FIELD_TYPES.items()), pa.field("extra", pa.string())])
ANOMALIES = pa.schema([*RECORDING_COLUMNS, pa.field("ts_ns", pa.int64()), pa.field("rule", pa.string()),
                       pa.field("title", pa.string()), pa.field("severity", pa.string()),
                       pa.field("device", pa.string()), pa.field("pasid", pa.int64()),
                       pa.field("explanation", pa.string()), pa.field("evidence", pa.list_(pa.int64())),
                       pa.field("count", pa.int64())])
INTERVALS = pa.schema([*RECORDING_COLUMNS, pa.field("kind", pa.string()), pa.field("device", pa.string()),
                       pa.field("pasid", pa.int64()), pa.field("start_ns", pa.int64()), pa.field("end_ns", pa.int64()),
                       pa.field("duration_ns", pa.int64()), pa.field("opened_by", pa.int64()),
                       pa.field("closed_by", pa.int64()), pa.field("closed_by_kind", pa.string()),
                       pa.field("replaced", pa.bool_()), pa.field("path", pa.string()),
                       pa.field("owner", pa.string()), pa.field("vm", pa.string()),
                       pa.field("domain", pa.uint64()), pa.field("domain_type", pa.string()),
                       pa.field("route", pa.string()), pa.field("prg", pa.int64()), pa.field("requests", pa.int64()),
                       pa.field("response_code", pa.int64()), pa.field("response_by", pa.string())])
SCHEMAS = {"events": EVENTS, "anomalies": ANOMALIES, "intervals": INTERVALS}


def _text(v: Any) -> str | None:
    return None if v is None else lines(v if isinstance(v, str) else json_text(v, _JSON))


def _fits(v: Any, t: pa.DataType) -> bool:
    """Whether `v` goes in a column of type `t` as it is."""
    if t == pa.bool_():
        return isinstance(v, bool)
    if t == pa.int64() or t == pa.uint64():
        return isinstance(v, int) and not isinstance(v, bool) and v in (_U64 if t == pa.uint64() else _I64)
    if t == pa.float64():
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True  # text: anything, written as text or JSON


class _Table:
    """Rows of one table gathered column by column and written a batch at a time."""

    def __init__(self, path: Path, schema: pa.Schema, meta: dict[str, str]) -> None:
        self.schema = schema.with_metadata(meta)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.cols: dict[str, list[Any]] = {f.name: [] for f in schema}
        self.rows = 0
        self.written = 0

    def add(self, row: dict[str, Any]) -> None:
        for name, col in self.cols.items():
            col.append(row.get(name))
        self.rows += 1
        if self.rows >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows or not self.written:
            arrays = [pa.array(self.cols[f.name], type=f.type) for f in self.schema]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            self.written += self.rows
            for col in self.cols.values():
                col.clear()
            self.rows = 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def event_row(i: int, row: list[Any], machines: list[str]) -> dict[str, Any]:
    """One event as a row of the events table (the recording's columns are added by the writer)."""
    m = machine_of(row)
    out: dict[str, Any] = {"event": i, "machine": lines(machines[m]) if 0 <= m < len(machines) else str(m)}
    for name, v in zip(COMMON_FIELDS, row[:R_FIELDS], strict=True):
        out[name] = v if not isinstance(v, str) else lines(v)
    for name in ("pasid", "cpu", "pid"):
        if not _fits(out[name], pa.int64()):
            out[name] = None  # (the schema refuses such rows where they are read; kept safe here too)
    extra: dict[str, Any] = {}
    for k, v in (row[R_FIELDS] or {}).items():
        t = FIELD_TYPES.get(k)
        if t is None or not _fits(v, t):
            extra[k] = v
        elif v is not None:
            out[k] = _text(v) if t == pa.string() else v
    if len(row) > R_MACHINE + 1:
        extra["_extra"] = list(row[R_MACHINE + 1:])
    if extra:
        out["extra"] = _text(extra)
    return out


def interval_rows(idx: RecordingIndex) -> Iterator[dict[str, Any]]:
    """The model's intervals (explorer/intervals.py) as rows: closed ones in closing order, then open ones."""
    kinds, names = idx.kinds, idx.kind_names
    response = idx.kind_id(Kind.PAGE_RESPONSE)
    for iv in idx.intervals:
        rec = iv.record
        closed = iv.close_idx if iv.close_idx is not None and iv.close_idx >= 0 else None
        row: dict[str, Any] = {
            "kind": str(iv.kind), "device": iv.device, "pasid": iv.pasid, "start_ns": iv.start_ns,
            "end_ns": iv.end_ns, "duration_ns": None if iv.end_ns is None else iv.end_ns - iv.start_ns,
            "opened_by": iv.open_idx if iv.open_idx >= 0 else None, "closed_by": closed,
            "closed_by_kind": None if closed is None else names[int(kinds[closed])], "replaced": iv.replaced}
        for name in ("path", "owner", "vm", "domain_type", "route"):
            v = getattr(rec, name, None)
            row[name] = None if v is None else lines(str(v))
        if iv.kind == IntervalKind.ATTACHMENT:
            row["domain"] = rec.domain if _fits(rec.domain, pa.uint64()) else None
        if iv.kind == IntervalKind.GROUP:
            row["prg"], row["requests"] = rec.prg, rec.requests
            if closed is not None and int(kinds[closed]) == response:
                f = idx.row(closed)[R_FIELDS] or {}
                code = f.get("code")
                row["response_code"] = code if _fits(code, pa.int64()) else None
                row["response_by"] = _text(f.get("by"))
        yield row


def anomaly_rows(idx: RecordingIndex) -> Iterator[dict[str, Any]]:
    for a in idx.anomalies:
        rule = RULES.get(a.rule)
        yield {"ts_ns": a.ts_ns, "rule": a.rule, "title": rule.title if rule else a.rule,
               "severity": str(a.severity), "device": a.device, "pasid": a.pasid,
               "explanation": lines(a.explanation), "evidence": list(a.evidence), "count": a.count}


def write_parquet(idx: RecordingIndex, name: str, out: str, tick: Callable[[int], None] | None = None) -> int:
    """Write the three tables into the directory `out` (made, or its tables replaced, only once all three are
    complete); returns the events written."""
    if out == "-":
        raise InputError(out, "", "--to parquet writes a directory of tables (events, anomalies, intervals): "
                                  "name it with -o DIR")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(out, "", "exists and is not a directory: --to parquet writes a directory of tables")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:  # the folders above it are made (a fleet's fleet/host1, fleet/host2...)
        tmp.mkdir(parents=True)
    except OSError as e:
        raise InputError(out, "", f"cannot be written ({e.strerror})") from None
    try:
        n = _write_tables(idx, name, tmp, tick)
        if target.is_dir():
            for t in TABLES:
                os.replace(tmp / f"{t}.parquet", target / f"{t}.parquet")
            tmp.rmdir()
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return n


def _write_tables(idx: RecordingIndex, name: str, folder: Path, tick: Callable[[int], None] | None) -> int:
    h = idx.header
    common = {"recording": lines(name), "host": _text(h.host.get("hostname")), "kernel": _text(h.host.get("kernel"))}
    header = json_text(h.to_dict(), _JSON)

    def table(t: str, rows: Iterable[dict[str, Any]]) -> int:
        meta = {"pasid_explorer.schema": SCHEMA_VERSION, "pasid_explorer.table": t, "pasid_explorer.header": header}
        out = _Table(folder / f"{t}.parquet", SCHEMAS[t], meta)
        for k, row in enumerate(rows):
            out.add(common | row)
            if tick is not None and t == "events" and k % BATCH == 0:
                tick(k)
        out.close()
        return out.written

    machines = [m.name for m in h.machine_table]
    n = table("events", (event_row(i, row, machines) for i, row in enumerate(idx.iter_rows())))
    table("anomalies", anomaly_rows(idx))
    table("intervals", interval_rows(idx))
    return n


def read_schema_version(path: str | Path) -> str | None:
    """The schema version a table written here says it follows (None: not one of ours)."""
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(b"pasid_explorer.schema")
    return None if v is None else v.decode()


def header_of(path: str | Path) -> dict[str, Any]:
    """The recording's header as the table keeps it."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"pasid_explorer.header", b"{}"))


