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
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from .events import KINDS, R_FIELDS, R_KIND, R_MACHINE, R_TS, Kind
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
INT_RANGES: dict[str, tuple[int, int]] = {
    "count": (0, TS_END),  # events lost: a sum, never negative
    "suppressed": (0, TS_END),
    "step": (0, U32_END),
    "prg": (0, U32_END),
    "guest_pasid": (0, U32_END),
    "fault_queue": (0, U32_END),
    "vmid": (0, U32_END),
}
_SHAPED: dict[str, Check] = {  # fields whose values have inner structure: checked value by value, even in bulk
    "evidence": lambda v: isinstance(v, list) and all(_integer(i) and 0 <= i < TS_END for i in v),
    "same_as": lambda v: isinstance(v, list) and len(v) == 3 and _integer(v[0]) and 0 <= v[0] < TS_END and
    _integer(v[1]) and 0 <= v[1] < MAX_MACHINES and (v[2] is None or isinstance(v[2], str)),
    "args": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "seen_by": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),  # hook names, joined as text
}
ColumnCheck = Callable[[list[Any]], bool]


class NamedMap:
    """The class of a map known from its bytes to hold text names only (a field map's layout: `fieldmaps`), whose
    values are not made: never a value's own class, so only a column known that way is judged by it."""


_SHAPED_EXACT: dict[str, frozenset[type]] = {"args": frozenset({NamedMap})}  # what passes a shaped rule outright
_SHAPED_COLUMNS: dict[str, ColumnCheck] = {  # whether a column of such values (no None) passes outright
    "args": lambda vs: set(map(type, vs)) == {dict} and set(map(type, chain.from_iterable(vs))) <= {str},
}


@dataclass(frozen=True, slots=True)
class Rule:
    """What one field name's values must be: `check`, the definition, value by value; and for the bulk path the
    classes whose values pass it outright (`exact`) within `lo` .. `hi` - 1 when those are set, or, for values
    with inner structure, whether a column of them passes outright (`column`; it may say no of good ones). Both
    are made from one table, so they cannot say different things."""

    check: Check
    expected: str  # the words for what it expects
    exact: frozenset[type] = frozenset()
    lo: int | None = None
    hi: int | None = None
    column: ColumnCheck | None = None


def _check_of(typ: type | tuple[type, ...]) -> Check:
    types = typ if isinstance(typ, tuple) else (typ,)
    return _ANY_INT if types == (int,) else _is(*types)


def _rule(name: str, typ: type | tuple[type, ...]) -> Rule:
    types = typ if isinstance(typ, tuple) else (typ,)
    expected = " or ".join("nil" if t is type(None) else t.__name__ for t in types)
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        return Rule(_int(lo, hi), expected, frozenset({int}), lo, hi)
    if name in _SHAPED:
        return Rule(_SHAPED[name], expected, _SHAPED_EXACT.get(name, frozenset()), column=_SHAPED_COLUMNS.get(name))
    return Rule(_check_of(typ), expected, frozenset(types) - {type(None)})


def _field_checks() -> dict[str, Rule]:
    """Every field name the event model defines, with its rule. A name's type is the same in every kind that
    uses it (the table below would say otherwise)."""
    out: dict[str, Rule] = {}
    for spec in KINDS.values():
        for f in spec:
            out.setdefault(f.name, _rule(f.name, f.type))
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
        if known is not None and value is not None and not known.check(value):
            return f"field {key} is {_shown(value)}, not a valid {known.expected}"
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


# -- judging rows in bulk --------------------------------------------------------------------------------------
# A chunk's rows are judged a column at a time with C-level passes (sets of classes, min and max, numpy over the
# field maps' flattened names and values); only rows these cannot clear are judged one by one by `row_problem`,
# which stays the definition and names the problem. The bulk path may suspect a good row, never clear a bad one.

def _fits(values: list[Any], classes: frozenset[type], lo: int | None = None, hi: int | None = None,
          check: Check | None = None) -> bool:
    """Whether every value but None in a column passes: of one of `classes` exactly, within lo .. hi - 1 where
    those are set; else, where `check` is given, by `check` value by value."""
    kinds = set(map(type, values))
    if _NONE in kinds:
        kinds.discard(_NONE)
        values = [v for v in values if v is not None]
    if kinds <= classes and (lo is None or hi is None or not values or (min(values) >= lo and max(values) < hi)):
        return True
    return check is not None and all(map(check, values))


_NONE = type(None)
_STR = frozenset({str})
_INT = frozenset({int})
_A_STR: Check = lambda v: isinstance(v, str)  # noqa: E731
_U32 = _int(0, U32_END)
_TS = _int(0, TS_END)


def _labels_fit(values: list[Any], longest: int, shortest: int = 0) -> bool:
    """Strings (or None) of `shortest` .. `longest` characters; judged on the distinct values (a value equal to a
    str is a str, or a subclass of one, which the row-by-row check takes too). TypeError: an unhashable one."""
    distinct = set(values)
    distinct.discard(None)
    return _fits(list(distinct), _STR, check=_A_STR) and all(shortest <= len(v) <= longest for v in distinct)


def common_fit(ts: list[Any], kinds: list[Any], devices: list[Any], pasids: list[Any], cpus: list[Any],
               pids: list[Any], comms: list[Any], sources: list[Any]) -> bool:
    """Whether columns of the common items (a chunk's, or the distinct values of its tables) all fit the schema."""
    try:
        return None not in ts and _fits(ts, _INT, 0, TS_END, _TS) and None not in kinds and \
            _labels_fit(kinds, _NAME_MAX, 1) and _labels_fit(devices, _LABEL_MAX) and \
            all(_fits(c, _INT, 0, U32_END, _U32) for c in (pasids, cpus, pids)) and \
            _labels_fit(comms, _LABEL_MAX) and _labels_fit(sources, _LABEL_MAX)
    except TypeError:  # an unhashable label
        return False


@dataclass(frozen=True, slots=True)
class Known:
    """A column of values of one class (never None) whose least and greatest are at hand without making the values
    (a decoder's numpy column): judged from those, its values made only when its rule must see each one."""

    cls: type
    bounds: Callable[[], tuple[Any, Any]]
    values: Callable[[], list[Any]]


def _clears(rule: Rule, classes: set[type], bounds: Callable[[], tuple[Any, Any]]) -> bool:
    """Whether values of `classes` pass `rule` outright: of classes it takes, within its range where it has one
    (`bounds()`: their least and greatest, asked only then)."""
    if not classes <= rule.exact:
        return False
    if rule.lo is None or rule.hi is None:
        return True
    lo, hi = bounds()
    return bool(lo >= rule.lo and hi < rule.hi)


def _column_suspects(rule: Rule, column: list[Any] | Known, members: list[int]) -> list[int]:
    """The rows (of `members`, one per value) whose value in one field's column may break `rule`: none when
    every value but None is of a class the rule takes outright and within its range, else those its check
    refuses."""
    if isinstance(column, Known):
        if _clears(rule, {column.cls}, column.bounds):
            return []
        column = column.values()
    classes = set(map(type, column))
    values = column
    if _NONE in classes:
        classes.discard(_NONE)
        values = [v for v in column if v is not None]
    if not values:
        return []
    if _clears(rule, classes, lambda: (min(values), max(values))) or rule.column is not None and rule.column(values):
        return []
    check = rule.check
    return [j for j, v in zip(members, column, strict=True) if v is not None and not check(v)]


def _grouped(keys: list[Any]) -> list[tuple[Any, list[int]]]:
    """Each distinct key (hashable) in order of first appearance, with the positions that hold it."""
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    if len(ids) == 1:
        return [(keys[0], list(range(len(keys))))]
    of = np.fromiter(map(ids.__getitem__, keys), np.intp, len(keys))
    order = np.argsort(of, kind="stable")
    bounds = np.cumsum(np.bincount(of, minlength=len(ids))).tolist()
    return [(k, order[a:b].tolist()) for k, a, b in zip(ids, [0, *bounds[:-1]], bounds, strict=True)]


def shape_suspects(kind: Any, column_of: dict[str, list[Any] | Known], members: list[int]) -> list[int]:
    """The rows (`members`, of one kind, whose maps all have the names of `column_of`, each name's values one
    column, or known without them) whose fields may break the schema: each known name's values judged as one
    column, the kind's required names present and not nil."""
    out: list[int] = []
    for name, column in column_of.items():
        rule = FIELDS.get(name)
        if rule is not None:
            out += _column_suspects(rule, column, members)
    for name in REQUIRED.get(kind, ()):
        column = column_of.get(name)
        if column is None:
            out += members
        elif not isinstance(column, Known) and None in column:
            out += [j for j, v in zip(members, column, strict=True) if v is None]
    return out


def _columns(shape: tuple[Any, ...], maps: list[Any]) -> dict[str, list[Any]]:
    """Each name's values in maps that all have the names `shape`, in that order."""
    if not shape:
        return {}
    if len(shape) == 1:
        return {shape[0]: list(map(itemgetter(shape[0]), maps))}
    return dict(zip(shape, map(list, zip(*map(itemgetter(*shape), maps), strict=True)), strict=True))


def _subset(items: list[Any], at: list[int]) -> list[Any]:
    return items if len(at) == len(items) else [items[j] for j in at]


def fields_suspects(kinds: list[Any], maps: list[Any]) -> list[int]:
    """Positions of the rows whose field maps may break the schema, in order. A kind's maps with the same names
    in the same order (a chunk's rows of one kind mostly share one such shape) are judged together, a name's
    values as one column (see `shape_suspects`); a name that is not exactly a str (a str subclass is judged by
    row) makes its row a suspect. `kinds` are strings and `maps` dicts or None (see `common_fit`)."""
    if _NONE in set(map(type, maps)):
        maps = [{} if f is None else f for f in maps]
    out: list[int] = []
    if set(map(type, chain.from_iterable(maps))) - _STR:
        out = [j for j, f in enumerate(maps) if any(type(x) is not str for x in f)]
    for kind, members in _grouped(kinds):
        of_kind = _subset(maps, members)
        for shape, at in _grouped(list(map(tuple, of_kind))):
            out += shape_suspects(kind, _columns(shape, _subset(of_kind, at)), _subset(members, at))
    return sorted(set(out))


def suspects(rows: list[Any], common_known: bool = False) -> list[int]:
    """Positions of the rows that may break the schema, in order: all of them when the rows' common items do not
    pass a column at a time (`common_known`: they are known to, as a packed chunk's tables were judged), else
    those whose field maps or machine numbers do not. Every row `row_problem` refuses is among them (a property
    test holds the two together)."""
    n = len(rows)
    if not n:
        return []
    if set(map(type, rows)) != {list} or min(map(len, rows)) < 9:
        return list(range(n))
    kinds, maps = list(map(itemgetter(R_KIND), rows)), list(map(itemgetter(R_FIELDS), rows))
    if not set(map(type, maps)) <= {dict, _NONE} or not common_known and \
            not common_fit(*(list(map(itemgetter(i), rows)) for i in range(R_FIELDS))):
        return list(range(n))
    out = fields_suspects(kinds, maps)
    if max(map(len, rows)) > R_MACHINE:
        longer = [j for j, r in enumerate(rows) if len(r) > R_MACHINE]
        machines = [rows[j][R_MACHINE] for j in longer]
        if None in machines or not _fits(machines, _INT, 0, MAX_MACHINES, _int(0, MAX_MACHINES)):
            out = sorted(set(out).union(longer))
    return out


def checked(rows: list[Any], refused: Callable[[int, str], None], last_ts: int = 0, *,
            common_known: bool = False, suspected: list[int] | None = None) -> list[Any]:
    """`rows` with each one that breaks the schema replaced by a one-event loss at its time (or, when its time
    is what is wrong, the last good row's before it), `refused(position, problem)` told of each. Rows are judged
    in bulk (`suspects`, or `suspected`: the same judgement made by a caller that decoded the rows, in order);
    only those it cannot clear are judged one by one, by `row_problem`, which names the problem."""
    out = rows
    good_before: dict[int, int] = {}  # a refused row's position -> the last good row's before it (-1: none)
    for j in suspects(rows, common_known) if suspected is None else suspected:
        problem = row_problem(rows[j])
        if problem is None:
            continue
        if out is rows:
            out = list(rows)
        good_before[j] = good = good_before.get(j - 1, j - 1) if j else -1
        row = rows[j]
        ts = row[R_TS] if isinstance(row, list) and row and _integer(row[R_TS]) and 0 <= row[R_TS] < TS_END \
            else rows[good][R_TS] if good >= 0 else last_ts
        out[j] = lost_row(ts, problem)
        refused(j, problem)
    return out
