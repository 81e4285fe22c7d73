"""The boundary check of event rows: one schema per kind, applied once where rows enter (the recording reader,
the importers' sink, the live decoder's batches), so that nothing past it meets a value of the wrong type or
range.

Recordings arrive in bug reports from strangers, and process names are written by any user of the traced host;
the rest of the tool (formatters, the model, the explorer's widgets) trusts rows. A row that breaks the schema is
refused: it becomes a one-event loss at its place (`lost_row`), and its problem, named by place, is the damage
the caller shows. Kinds and fields this version does not know are kept as they are; a field this version does
know keeps its meaning whatever the kind, so it is checked wherever it appears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .events import KINDS, R_MACHINE, R_TS, Kind
from .machines import MAX_MACHINES

TS_END = 1 << 63  # times are int64 nanoseconds, never negative
U32_END = 1 << 32
_NAME_MAX = 64  # a kind's name
_LABEL_MAX = 256  # a device, comm or source
_COMMON = (("comm", _LABEL_MAX), ("source", _LABEL_MAX))

Check = Callable[[Any], bool]


def _integer(v: Any) -> bool:
    """An int (an IntEnum too), never a bool."""
    return isinstance(v, int) and v.__class__ is not bool


def _int(lo: int, hi: int) -> Check:
    return lambda v: _integer(v) and lo <= v < hi


def _is(*types: type) -> Check:
    """Of one of `types` (subclasses too: StrEnum values are strings); a bool only where bool is named."""
    if int in types and bool not in types:
        return lambda v: isinstance(v, types) and v.__class__ is not bool
    return lambda v: isinstance(v, types)


_ANY_INT = _is(int)  # msgpack holds -2^63 .. 2^64-1, which every consumer takes
_RANGES: dict[str, Check] = {
    "count": _int(0, TS_END),  # events lost: a sum, never negative
    "suppressed": _int(0, TS_END),
    "step": _int(0, U32_END),
    "prg": _int(0, U32_END),
    "guest_pasid": _int(0, U32_END),
    "fault_queue": _int(0, U32_END),
    "vmid": _int(0, U32_END),
    "evidence": lambda v: isinstance(v, list) and all(_integer(i) and 0 <= i < TS_END for i in v),
    "same_as": lambda v: isinstance(v, list) and len(v) == 3 and _integer(v[0]) and 0 <= v[0] < TS_END and
    _integer(v[1]) and 0 <= v[1] < MAX_MACHINES and (v[2] is None or isinstance(v[2], str)),
    "args": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "ret": lambda v: v is None or _integer(v),
}


def _check_of(typ: type | tuple[type, ...]) -> Check:
    types = typ if isinstance(typ, tuple) else (typ,)
    return _ANY_INT if types == (int,) else _is(*types)


def _field_checks() -> dict[str, tuple[Check, str]]:
    """Every field name the event model defines, with its check and the words for what it expects. A name's
    type is the same in every kind that uses it (the table below would say otherwise)."""
    out: dict[str, tuple[Check, str]] = {}
    for spec in KINDS.values():
        for f in spec:
            types = f.type if isinstance(f.type, tuple) else (f.type,)
            expected = " or ".join("nil" if t is type(None) else t.__name__ for t in types)
            out.setdefault(f.name, (_RANGES.get(f.name) or _check_of(f.type), expected))
    return out


FIELDS = _field_checks()
REQUIRED: dict[str, tuple[str, ...]] = {str(k): tuple(f.name for f in spec if f.required)
                                        for k, spec in KINDS.items()}


def _shown(value: Any) -> str:
    return f"{value!r:.40}, a {type(value).__name__}"


def key_problem(kind: Any, device: Any, pasid: Any) -> str | None:
    """What is wrong with an event's (kind, device, PASID), the key the index files it under, or None."""
    if not isinstance(kind, str) or not 0 < len(kind) <= _NAME_MAX:
        return f"kind is {_shown(kind)}" if not isinstance(kind, str) else f"kind is {len(kind)} characters long"
    if device is not None and (not isinstance(device, str) or len(device) > _LABEL_MAX):
        return f"device is {_shown(device)}" if not isinstance(device, str) else \
            f"device is {len(device)} characters long (at most {_LABEL_MAX})"
    if pasid is not None and not (_integer(pasid) and 0 <= pasid < U32_END):
        return f"pasid is {_shown(pasid)}" if not _integer(pasid) else f"pasid {pasid} is outside 0..2^32-1"
    return None


def row_problem(row: Any) -> str | None:
    """What makes `row` unusable, in words, or None when every position and every known field fits the schema.
    A tenth item is the row's machine number (explorer/machines.py); items after it (a newer writer's extra
    columns) are kept as they are."""
    if type(row) is not list or len(row) < 9:
        return f"not an event row (a {type(row).__name__} of {len(row) if isinstance(row, list) else 1} items)"
    ts, kind, _, pasid, cpu, pid, _, _, fields = row[:9]
    if not _integer(ts):
        return f"ts_ns is {_shown(ts)}"
    if not 0 <= ts < TS_END:
        return f"ts_ns {ts} does not fit in 64 bits" if ts >= TS_END else f"ts_ns {ts} is negative"
    problem = key_problem(kind, row[2], pasid)
    if problem is not None:
        return problem
    for name, value in (("cpu", cpu), ("pid", pid)):
        if value is not None and not (_integer(value) and 0 <= value < U32_END):
            return f"{name} is {_shown(value)}" if not _integer(value) else f"{name} {value} is outside 0..2^32-1"
    for (name, longest), value in zip(_COMMON, (row[6], row[7]), strict=True):
        if value is not None and (not isinstance(value, str) or len(value) > longest):
            return f"{name} is {_shown(value)}" if not isinstance(value, str) else \
                f"{name} is {len(value)} characters long (at most {longest})"
    if fields is None:
        fields = {}
    elif not isinstance(fields, dict):
        return f"fields is {_shown(fields)}"
    checks = FIELDS
    for key, value in fields.items():
        if not isinstance(key, str):
            return f"a field is named {_shown(key)}"
        known = checks.get(key)
        if known is not None and value is not None and not known[0](value):
            return f"field {key} is {_shown(value)}, not a valid {known[1]}"
    for name in REQUIRED.get(kind, ()):
        if fields.get(name) is None:
            return f"{kind} lacks its field {name!r}"
    if len(row) > R_MACHINE and not (_integer(row[R_MACHINE]) and 0 <= row[R_MACHINE] < MAX_MACHINES):
        return f"machine is {_shown(row[R_MACHINE])}, not a machine number (0..{MAX_MACHINES - 1})"
    return None


def lost_row(ts: int, problem: str) -> list[Any]:
    """The one-event loss that stands in for a refused row: the model stops trusting its state there."""
    return [ts, str(Kind.LOST), None, None, None, None, None, "recording",
            {"count": 1, "why": f"malformed event: {problem}"}]


def checked(rows: list[Any], refused: Callable[[int, str], None], last_ts: int = 0) -> list[Any]:
    """`rows` with each one that breaks the schema replaced by a one-event loss at its time (or, when its time
    is what is wrong, the previous row's), `refused(position, problem)` told of each."""
    out = rows
    for j, row in enumerate(rows):
        problem = row_problem(row)
        if problem is None:
            last_ts = row[R_TS]
            continue
        if out is rows:
            out = list(rows)
        ts = row[R_TS] if isinstance(row, list) and row and _integer(row[R_TS]) and 0 <= row[R_TS] < TS_END \
            else last_ts
        out[j] = lost_row(ts, problem)
        refused(j, problem)
    return out
