"""Page-request groups settled a batch at a time: the model's hot loop over a packed chunk (`Simulator.apply_rows`
given the chunk's `PageColumns`).

Most of a busy host's stateful events are page requests on a (device, PASID) with a domain attached, answered
soon after by a matching response. Such a group leaves in the state only its answer, the aging bound, its closed
interval, its later requests and the journal's note that its key was written: its record comes and goes. The
index reads a packed chunk's page rows as columns from their bytes (`recording.fieldmaps.field_columns`: no row
decoded), and a batch's groups of the plain shape are found here at once: rows read whole, of plain values,
opened on a key no group holds, answered in the batch before the threshold (counted from its request with Last,
which came before the threshold too) by a response that is no Response Failure, with no row between that could
drain it (a detach or replace of its pair, an unbind on its device, an exit or free that may unbind unseen binds),
on a (device, PASID) none of whose page rows was left unread. Their rows are neither decoded nor stepped through.
So are the iommufd calls the model only counts, read from their bytes too (`name`, `ret`, and the pid): they are
counted, and the counts written before the next iommufd call that runs a handler (or at the batch's end).
What a batch's columns alone say (`find`: the calls only counted, the groups of that shape) is found with the
chunk's other inputs, in the read-ahead helper process where there is one (read_ahead.py); the state at the
batch's start then says which of those groups settle (`_Batch`). The other rows are decoded and run the handlers,
in order; before each of them, the groups that opened since the last one are asked whether their pair has a domain
and their function's PRI did not fail (the state's answers then; a group refused there is decoded and handled, its
rows in their place), and what the settled groups left before that row is written in the handlers' order: journal
notes and closed intervals; later requests and answers, which only a page request's and a response's handler read
or write, only before such a row (and at the batch's end). Where each write falls is found for all the batch's
handlers' rows at once (`_Batch.run`).
tests/core/test_page_groups.py models recordings and random mixes both ways and compares findings, checkpoints,
intervals and seeks.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, is_not, itemgetter, not_
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..events import R_FIELDS, R_KIND, Kind, ResponseCode, Row
from ..intervals import IntervalKind
from ..journal import Journal
from ..recording.fieldmaps import ABSENT, BOOL, INT, OTHER, TEXT, FieldColumns
from ..state_records import CLOSED, P_BITS, ROUTES, open_group
from ..uapi import only_counted
from .state import ANSWERS_KEPT

if TYPE_CHECKING:
    from .engine import Simulator

_UAPI = str(Kind.UAPI)
_PAGES = frozenset({str(Kind.PAGE_REQUEST), str(Kind.PAGE_RESPONSE)})
_PAGE_NAMES = ("prg", "last", "needs_pasid", "code")
WANTED = _PAGES | {_UAPI}  # the kinds read as columns, and their names read
NAMES = (*_PAGE_NAMES, "name", "ret")
# Row kinds by what they are to a settled group: its own; one that may drain its (device, PASID), any PASID of its
# device (an unbind: the bind's PASID), any group (an exit or a free may unbind unseen binds); one that cannot
_REQUEST, _RESPONSE, _DRAIN_PAIR, _DRAIN_DEVICE, _DRAIN_ALL, _OTHER = 1, 2, 3, 4, 5, 0
_KIND_OF = {str(Kind.PAGE_REQUEST): _REQUEST, str(Kind.PAGE_RESPONSE): _RESPONSE,
            str(Kind.PASID_DETACH): _DRAIN_PAIR, str(Kind.PASID_REPLACE): _DRAIN_PAIR,
            str(Kind.SVA_UNBIND): _DRAIN_DEVICE, str(Kind.MM_EXIT): _DRAIN_ALL, str(Kind.PASID_FREE): _DRAIN_ALL}
# Where every unbind is seen, an exit or a free unbinds nothing itself (kernel_facts `unbind_visible`)
_KIND_OF_UNBINDS_SEEN = {**_KIND_OF, str(Kind.MM_EXIT): _OTHER, str(Kind.PASID_FREE): _OTHER}
_FEW = 16  # page rows below which a batch is all the handlers'
_PAIRS_COMPARED = 1 << 18  # groups times rows that may drain them, past which any such row between fails a group
# A settled group's flags as its packed record holds them (its route, whether Last came; it needs its PASID)
_FLAGS = {(route, last): open_group(0, 0, last, route, True, False, None) & 63 for route in ROUTES
          for last in (False, True)}
_FAILURE = int(ResponseCode.FAILURE)
_GROUP = tuple(IntervalKind).index(IntervalKind.GROUP) << 1  # a closed group's row: its shape above this
_ROW_BYTES = 64  # a closed interval's row: eight int64
_SHAPE_AT = struct.Struct("=q").pack_into  # its first number


@dataclass(frozen=True, slots=True)
class Settling:
    """What finding a chunk's groups depends on besides its columns: the model's threshold and rules, and where the
    index cuts the chunk into batches (`batches`). The helper process (read_ahead.py) is given the same."""

    stale_ns: int
    unbind_visible: bool
    every: int  # events a batch spans at most (the index's CHECKPOINT_EVERY)
    few: int  # `_FEW` and `_PAIRS_COMPARED`, as they are when the pass starts
    pairs_compared: int

    @classmethod
    def of(cls, sim: Simulator, every: int) -> Settling:
        return cls(sim.stale_ns, sim.policy.unbind_visible, every, _FEW, _PAIRS_COMPARED)


def batches(stateful: np.ndarray, n: int, every: int) -> list[tuple[int, int, int, int]]:
    """A chunk of `n` events cut every `every` events: each batch's first and end event, and its entries of the
    chunk's `stateful` positions (from, to)."""
    starts = list(range(0, n, every))
    ends = [min(a + every, n) for a in starts]
    places = np.searchsorted(stateful, starts + ends).tolist() if starts else []
    return list(zip(starts, ends, places[:len(starts)], places[len(starts):], strict=True))


_T = TypeVar("_T")


def _pickled_as_arguments(cls: type[_T]) -> type[_T]:
    """Pickle a frozen dataclass with slots as its constructor's arguments, got in one call (its own pickling loops
    over its fields in Python each way: the read-ahead helper pickles three such objects a batch)."""
    arguments = attrgetter(*cls.__dataclass_fields__)  # type: ignore[attr-defined]
    cls.__reduce__ = lambda self: (cls, arguments(self))  # type: ignore[method-assign,assignment]
    return cls


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class Groups:
    """A batch's plain page-request groups as its columns alone show them (`_groups`): the state at the batch's
    start (which devices it knows, which keys are open, what is attached) then decides which of them settle
    (`_Batch`). Its keyed rows in `order` (by device, PRG index, PASID, place), each row's group (`gid`), each
    group's first and last entries there (`firsts`, `lasts`); `ok`: the groups that may settle."""

    devices: list[Any]  # the devices `d` numbers (by first appearance in the chunk's keys)
    order: np.ndarray
    gid: np.ndarray
    firsts: np.ndarray
    lasts: np.ndarray
    ok: np.ndarray
    run: np.ndarray  # in `order`: where a key's rows start
    d: np.ndarray  # in `order`: device number, PRG index, PASID
    p: np.ndarray
    q: np.ndarray
    later: np.ndarray  # in `order`: a later request of its group
    last_came: np.ndarray  # in `order`: a request that said Last


@dataclass(frozen=True, slots=True)
class Layout:
    """What the settling loop needs of the groups of a `Groups` that settle, by first row (`_layout`): places in
    the batch and event numbers in its chunk (the loop adds the chunk's first)."""

    first_at: np.ndarray  # each group's first row
    group_of: np.ndarray  # each row's group (-1: the handlers')
    slow: np.ndarray  # the rows the handlers run
    closed: np.ndarray  # whether a request said Last
    start: np.ndarray  # each group's first time
    pairs: np.ndarray  # the (device number, PASID) pairs, and each group's
    pair_of: np.ndarray
    by_resp: np.ndarray  # the groups by response: their order, responses' rows and times, each group's place there
    r_at: np.ndarray
    r_ts: np.ndarray
    r_pos: np.ndarray
    closing: np.ndarray  # each group's closed interval (by response), but for its shape
    joins: np.ndarray  # the later requests' rows, groups, and (event, its group's first event) pairs
    j_group: np.ndarray
    j_pairs: np.ndarray


def _layout(g: Groups, ok: np.ndarray, ts: np.ndarray, at: np.ndarray, counted: np.ndarray) -> Layout:
    """The layout of groups `ok` of `g` (by first row) in a batch of times `ts`, at chunk positions `at`, its
    calls `counted`."""
    order = g.order
    f0, l0 = g.firsts[ok], g.lasts[ok]
    first_at, last_at = order[f0], order[l0]
    nc = len(ok)
    number = np.full(len(g.firsts), -1)
    number[ok] = np.arange(nc)
    mine = number[g.gid]
    group_of = np.full(len(counted), -1)
    group_of[order] = mine
    came = np.cumsum(g.last_came)
    closed = came[l0] - came[f0] + g.last_came[f0] > 0
    p, q = g.p[f0], g.q[f0]
    pairs, pair_of = np.unique(g.d[f0] << 32 | q, return_inverse=True)
    start = ts[first_at]
    by_resp = np.argsort(last_at, kind="stable")
    r_at = last_at[by_resp]
    r_ts = ts[r_at]
    opened_at = at[first_at]
    rows = np.zeros((nc, 8), np.int64)
    rows[:, 1], rows[:, 2] = start[by_resp], np.maximum(r_ts, start[by_resp])
    rows[:, 3], rows[:, 4] = opened_at[by_resp], at[r_at]
    rows[:, 5], rows[:, 6], rows[:, 7] = q[by_resp], p[by_resp], (l0 - f0)[by_resp]
    r_pos = np.empty(nc, np.int64)
    r_pos[by_resp] = np.arange(nc)
    joins = np.sort(order[g.later & (mine >= 0)])
    j_group = group_of[joins]
    j_pairs = np.stack([at[joins], opened_at[j_group]], axis=1).ravel()
    return Layout(first_at, group_of, np.flatnonzero((group_of < 0) & ~counted), closed, start, pairs, pair_of,
                  by_resp, r_at, r_ts, r_pos, rows, joins, j_group, j_pairs)


@_pickled_as_arguments
@dataclass(frozen=True, slots=True)
class Found:
    """What a batch's columns alone say (`find`): the iommufd calls only counted, and the groups that may settle."""

    counted: np.ndarray  # bool, by place in the batch
    calls_at: list[int]  # the counted calls' places, and each one's (pid, command, return value)
    calls: list[tuple[Any, str, int]]
    groups: Groups | None
    slow: np.ndarray  # the places of rows the handlers run whatever the state (neither counted nor in `groups`)


@dataclass(frozen=True, slots=True)
class PageColumns:
    """A packed chunk's stateful rows as the settling reads them: their times, what `find` found in each batch
    (`batches`, in order), and a way to decode rows."""

    ts: np.ndarray  # int64, one entry per stateful position (in order)
    at: np.ndarray  # the stateful positions in the chunk
    found: list[Found]
    decode: Callable[[list[int]], None]  # decodes the rows at these chunk positions into the model's row list

    def batch(self, k: int, lo: int, hi: int) -> PageColumns:
        """Batch `k`, of stateful entries `lo` to `hi`."""
        return PageColumns(self.ts[lo:hi], self.at[lo:hi], [self.found[k]], self.decode)


def unread_pages(keys: list[tuple[Any, Any, Any]], key_of: np.ndarray, fields: FieldColumns) -> np.ndarray:
    """The places of the page rows `fields` did not read (no layout covered them, or the schema suspected them)."""
    return np.flatnonzero(np.array([k in _PAGES for k, _, _ in keys], bool)[key_of] & ~fields.read)


def fill(keys: list[tuple[Any, Any, Any]], key_of: np.ndarray, fields: FieldColumns, rows: list[Row | None],
         positions: np.ndarray, unread: np.ndarray) -> None:
    """Read into `fields` the page rows' fields it did not read (at places `unread`), from `rows` (decoded
    already; one the schema refused is a loss, left unread)."""
    read, values = fields.read, fields.values
    for i in unread.tolist():
        row = rows[positions[i]]
        f = row[R_FIELDS] if row is not None and row[R_KIND] == keys[key_of[i]][0] else None
        if f.__class__ is dict:
            for name in _PAGE_NAMES:
                column, classes = values[name]
                column[i], classes[i] = _value(f.get(name, _ABSENT))
            read[i] = True


_ABSENT = object()
_UNSEEN = object()  # a group's domain at the batch's start where it had none (or its function's PRI had failed)


def _value(v: Any) -> tuple[int, int]:
    """A field's value as `FieldColumns` holds it: its number and its class."""
    if v is _ABSENT:
        return 0, ABSENT
    if v.__class__ is bool:
        return int(v), BOOL
    if v.__class__ is int and -1 << 63 <= v < 1 << 63:
        return v, INT
    return 0, OTHER


def find(keys: list[tuple[Any, Any, Any]], key_of: np.ndarray, ts: np.ndarray, fields: FieldColumns,
         positions: np.ndarray, pids: Callable[[list[int]], list[Any]], settling: Settling) -> Found:
    """What a batch's columns (its entries of the chunk's key table, times and field columns; its chunk
    `positions`) say whatever the state: the iommufd calls only counted, and the groups that may settle. The same
    in the helper process as here."""
    m = len(key_of)
    f = fields
    (name, name_c), (ret, ret_c) = f.values["name"], f.values["ret"]
    calls = np.array([k == _UAPI for k, _, _ in keys], bool)[key_of] & f.read & \
        ((name_c == TEXT) | (name_c == ABSENT)) & ((ret_c == INT) | (ret_c == ABSENT))
    at = np.flatnonzero(calls)
    # The distinct (name, return value) pairs (a name's text by number, -1: none; a return value, and whether there
    # is one), each judged once (`Simulator._uapi` does nothing else), and each call's pair
    text = np.where(name_c[at] == TEXT, name[at], -1) << 1 | (ret_c[at] == INT)
    value = np.where(ret_c[at] == INT, ret[at], 0)
    order = np.lexsort((value, text))
    new = np.ones(len(at), bool)
    new[1:] = (np.diff(text[order]) != 0) | (np.diff(value[order]) != 0)
    pair = np.empty(len(at), np.intp)
    pair[order] = np.cumsum(new) - 1
    texts = f.texts
    named = [texts[t >> 1] if t >= 0 else "?" for t in text[order[new]].tolist()]
    returned = [r if t & 1 else None for t, r in zip(text[order[new]].tolist(), value[order[new]].tolist(),
                                                    strict=True)]
    mine = np.array([only_counted(n, r) for n, r in zip(named, returned, strict=True)], bool)[pair]
    at, pair = at[mine], pair[mine]
    counted = np.zeros(m, bool)
    counted[at] = True
    calls_at = at.tolist()
    # A call's (pid, command, return value): one object for all its equal calls (fewer for the index to unpickle)
    kept = pair.tolist()
    returned = [0 if r is None else r for r in returned]
    same: dict[tuple[Any, str, int], tuple[Any, str, int]] = {}
    keys_of_calls = [same.setdefault(key, key) for key in zip(
        pids(positions[at].tolist()), map(named.__getitem__, kept), map(returned.__getitem__, kept), strict=True)]
    groups = _groups(keys, key_of, ts, fields, settling)
    if groups is None:
        return Found(counted, calls_at, keys_of_calls, None, np.flatnonzero(~counted))
    may_settle = np.zeros(len(groups.firsts), bool)
    may_settle[groups.ok] = True
    grouped = np.zeros(m, bool)
    grouped[groups.order] = may_settle[groups.gid]
    return Found(counted, calls_at, keys_of_calls, groups, np.flatnonzero(~grouped & ~counted))


def _key_columns(keys: list[tuple[Any, Any, Any]], unbind_visible: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Each key's kind (to a group), device number (-1: none) and PASID (-1: none, or none a key holds), and the
    devices by number. The keys are a packed chunk's whose tables fit the schema: kinds are text, devices text or
    nil, PASIDs ints or nil."""
    of = _KIND_OF if not unbind_visible else _KIND_OF_UNBINDS_SEEN
    n = len(keys)
    kinds, devices, pasids = zip(*keys, strict=True) if n else ((), (), ())
    kind = np.fromiter(map(of.get, kinds, repeat(_OTHER)), np.int8, n)
    numbers: dict[Any, int] = {}
    dev = np.fromiter((-1 if x is None else numbers.setdefault(x, len(numbers)) for x in devices), np.int64, n)
    try:
        pasid = np.fromiter((-1 if p is None else p for p in pasids), np.int64, n)
    except OverflowError:
        pasid = np.array([p if p.__class__ is int and 0 <= p < 1 << 32 else -1 for p in pasids], np.int64)
    pasid[(pasid < 0) | (pasid >= 1 << 32)] = -1
    return kind, dev, pasid, list(numbers)


def _groups(keys: list[tuple[Any, Any, Any]], key_of: np.ndarray, ts: np.ndarray, fields: FieldColumns,
            settling: Settling) -> Groups | None:
    """The batch's groups of the plain shape (see the module) as its columns alone show them; None: none."""
    kinds, devs, pasids, devices = _key_columns(keys, settling.unbind_visible)
    k = key_of
    kind, dev, pasid = kinds[k], devs[k], pasids[k]
    is_req, is_resp = kind == _REQUEST, kind == _RESPONSE
    if int(np.count_nonzero(is_req | is_resp)) < settling.few:
        return None
    f = fields
    read = f.read
    (prg, prg_c), (last, last_c), (needs, needs_c), (code, code_c) = (f.values[n] for n in _PAGE_NAMES)
    pair_known = (is_req | is_resp) & (dev >= 0) & (pasid >= 0)
    keyed_prg = read & (prg_c == INT) & (prg >= 0) & (prg < 1 << 32)
    needs_known = (needs_c == ABSENT) | (needs_c == BOOL)
    # A page row of a known pair whose key is not known (not read, or its needs_pasid not plain) may be of any
    # group of its pair: the pair's groups are the handlers'
    tainted = pair_known & ~(keyed_prg & (is_resp | needs_known))
    in_run = pair_known & keyed_prg & (is_resp | needs_known & ((needs_c == ABSENT) | (needs == 1)))
    plain = in_run & (
        is_req & ((last_c == ABSENT) | (last_c == BOOL))
        | is_resp & (code_c == INT) & (code != _FAILURE))
    # Group each key's rows in order: a request opens a group, requests join it, a response closes it
    keyed = np.flatnonzero(in_run)
    if not len(keyed):
        return None
    d, p, q = dev[keyed], prg[keyed], pasid[keyed]
    if int(d.max()) < 1 << 15 and int(p.max()) < 1 << 16:  # (one key of 63 bits: a plain sort)
        order = keyed[np.argsort(d << 48 | p << 32 | q, kind="stable")]
    else:
        order = keyed[np.lexsort((keyed, q, p, d))]
    d, p, q = dev[order], prg[order], pasid[order]
    n = len(order)
    run = np.ones(n, bool)
    run[1:] = (d[1:] != d[:-1]) | (p[1:] != p[:-1]) | (q[1:] != q[:-1])
    req = is_req[order]
    start = np.ones(n, bool)  # after a response (or a key's first row): a group starts, or a stray response
    start[1:] = ~req[:-1]
    start |= run
    end_of_run = np.ones(n, bool)
    end_of_run[:-1] = run[1:]
    bad = ~plain[order] | ~req & start | req & end_of_run
    gid = np.cumsum(start) - 1
    firsts = np.flatnonzero(start)
    lasts = np.r_[firsts[1:], n] - 1
    first_at, last_at = order[firsts], order[lasts]
    failed = np.add.reduceat(bad, firsts) > 0
    # Its answer is awaited from its (first) request with Last, and that request from its first: either wait past the
    # threshold is the handlers' to report (engine.py `_completed`, `_late`)
    came = ((last_c == ABSENT) | (last_c == BOOL) & (last == 1))[order] & req
    came_at = np.flatnonzero(came)
    if len(came_at):
        j = np.minimum(np.searchsorted(came_at, firsts), len(came_at) - 1)
        closed_at = order[np.where((came_at[j] >= firsts) & (came_at[j] < lasts), came_at[j], firsts)]
    else:
        closed_at = first_at
    failed |= (ts[last_at] - ts[closed_at] >= settling.stale_ns) | (ts[closed_at] - ts[first_at] >= settling.stale_ns)
    drains = np.flatnonzero(kind >= _DRAIN_PAIR)
    gd, gq = d[firsts], q[firsts]
    if len(drains) * len(firsts) > settling.pairs_compared:  # (many of both: any such row between fails a group)
        passed = np.cumsum(kind >= _DRAIN_PAIR)
        failed |= passed[last_at] != passed[first_at]
    elif len(drains):  # a row between a group's first request and its response that may drain it
        some = np.flatnonzero(np.searchsorted(drains, first_at, "right") < np.searchsorted(drains, last_at))
        if len(some):  # (the groups with any such row between: most have none)
            scope, dd, dq, sd, sq = kind[drains], dev[drains], pasid[drains], gd[some, None], gq[some, None]
            failed[some] |= ((first_at[some, None] < drains) & (drains < last_at[some, None]) & (
                (scope == _DRAIN_ALL) | (dd == sd) & ((scope == _DRAIN_DEVICE) | (dq == sq)))).any(axis=1)
    if tainted.any():
        failed |= np.isin(gd << 32 | gq, dev[tainted] << 32 | pasid[tainted])
    ok = np.flatnonzero(~failed)
    if not len(ok):
        return None
    return Groups(devices, order, gid, firsts, lasts, ok, run, d, p, q, req & ~start, came)


class _Batch:
    """One batch's settled groups and counted calls (see the module): found at once, then asked and written as the
    handlers' rows go (`run`)."""

    def __init__(self, sim: Simulator, base: int, cols: PageColumns, route: Callable[[Any], str], found: Found
                 ) -> None:
        self.sim, self.st, self.base, self.route, self.counted = sim, sim.state, base, route, found.counted
        self.slow: list[int] = np.flatnonzero(~found.counted).tolist()  # the rows (places) the handlers run
        self.c_at, self.c_keys = np.asarray(found.calls_at, np.int64), found.calls  # the calls only counted
        self.n = self.v = self.noted = self.pj = self.pr = self.pa = self.pc = 0  # (what is asked and written)
        self.refused = False
        self.first = self.r_at = self.j_at = _NONE
        self.ok = np.zeros(0, bool)
        g = found.groups
        if g is None:
            return
        # The devices as the state numbers them: a group on one it does not know yet is the handlers'
        codes = np.array([self.st.atoms.codes.get(x, -1) for x in g.devices], np.int64)
        ok = g.ok[np.argsort(g.order[g.firsts[g.ok]], kind="stable")]  # (by first row, as they are laid out)
        ok = ok[codes[g.d[g.firsts[ok]]] >= 0]
        if len(ok):
            self._found(cols, g, ok, codes)

    def _found(self, cols: PageColumns, g: Groups, ok: np.ndarray, codes: np.ndarray) -> None:
        """Lay out the groups `ok` of `g` that settle and keep what the loop needs of them (`codes`: the state's
        code of each device `g` numbers): by opening, by later request, by response."""
        st, base = self.st, self.base
        f0 = g.firsts[ok]
        gd = codes[g.d[f0]]
        keys = _keys(gd, g.p[f0], g.q[f0])
        # the first group of a key may join a group open before the batch
        groups = st.group_records
        open_before = groups.keys() & keys if groups else None
        if open_before:
            keep = np.flatnonzero(~(np.array([key in open_before for key in keys], bool) & g.run[f0]))
            ok, gd, keys = ok[keep], gd[keep], [keys[i] for i in keep.tolist()]
        self.n = nc = len(keys)
        if not nc:
            return
        lay = _layout(g, ok, cols.ts, cols.at, self.counted)
        self.key = keys
        self.slow = lay.slow.tolist()
        self.group_of = lay.group_of
        self.first = lay.first_at
        # What the state says at the batch's start, pair by pair: a group is asked again as it opens only if its
        # pair's domain is another by then (or its function's PRI failed)
        att_get, pri, route, names = st.attachments.get, st.pri_disabled, self.route, g.devices
        self.pairs = [(names[pair >> 32], pair & 0xFFFFFFFF) for pair in lay.pairs.tolist()]
        atts = [att_get(pair) for pair in self.pairs]
        bits = np.array([_FLAGS[route(a), False] if a is not None else 0 for a in atts], np.int64)
        inverse = lay.pair_of
        self.pair_of = inverse.tolist()
        seen = [_UNSEEN if a is None or pair[0] in pri else a for a, pair in zip(atts, self.pairs, strict=True)]
        self.pair_at, self.seen_at = list(map(self.pairs.__getitem__, self.pair_of)), list(map(seen.__getitem__,
                                                                                              self.pair_of))
        self.flags = np.where(bits[inverse] > 0, bits[inverse] | lay.closed * CLOSED, 0)
        self.closed = lay.closed
        self.start = lay.start
        self.ok = np.ones(nc, bool)
        # by response
        by_resp = lay.by_resp
        self.r_at = lay.r_at
        self.r_group = by_resp
        self.r_key = list(itemgetter(*by_resp.tolist())(keys)) if nc > 1 else keys[:]
        rows = lay.closing
        rows[:, 3:5] += base
        self.r_ts, self.r_idx = lay.r_ts.tolist(), rows[:, 4].tolist()  # (their answers)
        self.shape = gd << 6
        rows[:, 0] = (self.shape[by_resp] | self.flags[by_resp]) << 3 | _GROUP
        self.closing = bytearray(rows.tobytes())  # (a group whose route is another by its opening: its row patched)
        self.r_pos = lay.r_pos
        # later requests, in order
        self.j_at = lay.joins
        self.j_group = lay.j_group
        self.j_pairs = lay.j_pairs.astype(np.int64) + base  # (chunk positions are uint32)

    def run(self, slow: list[int], rows: list[Row | None], positions: list[int], handle: Callable[[Row, int], None]
            ) -> list[int] | None:
        """Run the handlers of the rows at places `slow` (the batch's rows left to run, in order), asking and
        writing before each what the settled groups and counted calls left before it, as the handlers would have;
        at the batch's end, all of it. None once done; else, a group asked on the way was refused, and these are
        the places left to run, its rows among them (decoded by the caller).

        Where a write is due is found for all the rows at once. Later requests, answers and counts, which only one
        handler each reads or writes (a page request's, a response's, an iommufd call's), are written only before
        such a row; notes of groups and their closed intervals, before any row that comes after them."""
        m, base = len(positions), self.base
        kinds = np.array([rows[positions[i]][R_KIND] for i in slow] + [None], object)  # type: ignore[index]
        places = np.array([*slow, m], np.int64)
        end = np.zeros(len(places), bool)
        end[-1] = True
        bounds = []
        for at, done, before in ((self.first, self.noted, None), (self.r_at, self.pr, None),
                                 (self.j_at, self.pj, _PAGE_REQUEST), (self.r_at, self.pa, _PAGE_RESPONSE),
                                 (self.c_at, self.pc, _UAPI)):
            upto = np.searchsorted(at, places)
            if before is not None:  # (carried on from the last such row)
                upto = np.maximum.accumulate(np.where(end | (kinds == before), upto, 0))
            bounds.append(np.maximum(upto, done))
        due = np.zeros(len(places), bool)
        for upto, done in zip(bounds, (self.noted, self.pr, self.pj, self.pa, self.pc), strict=True):
            due[0] |= upto[0] > done
            due[1:] |= upto[1:] > upto[:-1]
        points = np.flatnonzero(due)
        def handled(places: list[int]) -> None:
            for i in places:
                j = positions[i]
                handle(rows[j], base + j)  # type: ignore[arg-type]

        ran = 0
        for w, g1, r1, j1, a1, c1 in zip(points.tolist(), *(upto[points].tolist() for upto in bounds), strict=True):
            handled(slow[ran:w])
            ran = w
            if g1 > self.v:
                refused = self.ask(g1)
                if refused:
                    return sorted(slow[w:] + refused)
            self.write(g1, r1, j1, a1, c1)
        handled(slow[ran:])
        return None

    def ask(self, upto: int) -> list[int]:
        """Ask the groups opened before group `upto` (the state now is the state at their opening): settled, or
        refused (their rows, to run the handlers, returned)."""
        st, v0 = self.st, self.v
        att_get, pri, pair_at, seen_at = st.attachments.get, st.pri_disabled, self.pair_at, self.seen_at
        self.v = upto
        nows = list(map(att_get, pair_at[v0:upto]))
        # (in C: the groups whose pair's domain is the one it had at the batch's start, the most, pass unasked)
        again = range(v0, upto) if pri else compress(range(v0, upto), map(is_not, nows, seen_at[v0:upto]))
        refused: list[int] = []
        for v in again:
            pair, now = pair_at[v], nows[v - v0]
            if now is not seen_at[v] or pri and pair[0] in pri:
                if now is None or pair[0] in pri:
                    self.ok[v] = False
                    self.refused = True
                    refused += np.flatnonzero(self.group_of == v).tolist()
                else:
                    flags = _FLAGS[self.route(now), bool(self.closed[v])]
                    if flags != self.flags[v]:
                        self.flags[v] = flags
                        _SHAPE_AT(self.closing, int(self.r_pos[v]) * _ROW_BYTES,
                                  int(self.shape[v] | flags) << 3 | _GROUP)
        return refused

    def write(self, g1: int, r1: int, j1: int, a1: int, c1: int) -> None:
        """Write what the settled groups and counted calls left before a row: the notes of groups `noted` to `g1`,
        the closed intervals and answers of those by response to `r1` and `a1`, the later requests to `j1`, the
        counts of the calls to `c1`."""
        st, intervals, ok, refused = self.st, self.sim.intervals, self.ok, self.refused
        noted = self.noted
        if g1 > noted:
            keys = self.key[noted:g1] if not refused else \
                [k for k, y in zip(self.key[noted:g1], ok[noted:g1].tolist(), strict=True) if y]
            groups = st.group_records
            if isinstance(groups, Journal):
                groups.came_and_went(keys)
            if intervals is not None:
                intervals.opened += len(keys)
            self.noted = g1
        pr = self.pr
        if r1 > pr:
            if intervals is not None:
                closing = memoryview(self.closing)[pr * _ROW_BYTES:r1 * _ROW_BYTES]
                intervals.closed_many(closing if not refused else np.frombuffer(closing, np.int64).reshape(-1, 8)[
                    ok[self.r_group[pr:r1]]].tobytes())
            self.pr = r1
        pj = self.pj
        if j1 > pj:
            if intervals is not None:
                pairs = self.j_pairs[2 * pj:2 * j1]
                intervals.joined_many(pairs if not refused else pairs.reshape(-1, 2)[ok[self.j_group[pj:j1]]])
            self.pj = j1
        if a1 > self.pa:
            self._answer(a1)
        if c1 > self.pc:
            calls = st.uapi_calls
            for key, n in Counter(self.c_keys[self.pc:c1]).items():
                calls[key] = calls.get(key, 0) + n
            self.pc = c1

    def _answer(self, upto: int) -> None:
        """The answers of the groups by response `pa` to `upto`, as the handler writes them one by one: a generation
        holds ANSWERS_KEPT keys at most, and the key past them starts the next (`Simulator._page_response`)."""
        st, pa = self.st, self.pa
        keys, answers = self.r_key[pa:upto], list(zip(self.r_ts[pa:upto], self.r_idx[pa:upto], strict=True))
        if self.refused:
            mine = self.ok[self.r_group[pa:upto]].tolist()
            keys, answers = list(compress(keys, mine)), list(compress(answers, mine))
        answered, at, n = st.answered, 0, len(keys)
        while at < n:  # (in C: the keys up to the one that would fill the generation past ANSWERS_KEPT)
            room = ANSWERS_KEPT - len(answered)
            if room >= n - at:  # (they fit, however many are held already: the most)
                end = n
            else:
                fresh = list(compress(range(at, n), map(not_, map(answered.__contains__, keys[at:]))))  # (not held)
                end = at if room < 0 else fresh[room] if room < len(fresh) else n
            answered.update(zip(keys[at:end], answers[at:end], strict=True))
            if end < n:
                answered[keys[end]] = answers[end]
                end += 1
                if len(answered) > ANSWERS_KEPT:
                    st.answered_before, st.answered = answered, {}
                    answered = st.answered
            at = end
        self.pa = upto

    def fresh(self) -> None:
        """The aging bound: no settled group opened before it is open, but the handlers would have lowered it."""
        if self.n and self.ok.any():
            self.st.fresh_from = min(self.st.fresh_from, int(self.start[self.ok].min()))


_NONE = np.zeros(0, np.int64)
_PAGE_REQUEST, _PAGE_RESPONSE = str(Kind.PAGE_REQUEST), str(Kind.PAGE_RESPONSE)


def _keys(devices: np.ndarray, prg: np.ndarray, pasid: np.ndarray) -> list[int]:
    """Packed group keys (`state_records.group_key`) of state device codes, PRG indexes (below 2^32) and PASIDs: past
    64 bits, so made as Python ints, a numpy call each step over object arrays from where int64 no longer holds them
    (a device code is below 2^31: the state's table of texts never holds so many)."""
    return ((devices << 32 | prg).astype(object) << P_BITS | (pasid + 1)).tolist()  # type: ignore[no-any-return]


def settle(sim: Simulator, rows: list[Row | None], positions: list[int], base: int, cols: PageColumns,
           route: Callable[[Any], str], run: Callable[[Row, int], None]) -> None:
    """Apply the batch's rows at `positions` (see `Simulator.apply_rows`): settled groups at once, iommufd calls
    that are only counted by their count, the rest by `run` (a row's handler, as the hot loop runs it), in order."""
    batch = _Batch(sim, base, cols, route, cols.found[0])
    slow: list[int] | None = batch.slow
    while slow is not None:
        _decode(rows, positions, slow, cols)
        slow = batch.run(slow, rows, positions, run)
    batch.fresh()


def _decode(rows: list[Row | None], positions: list[int], at: list[int], cols: PageColumns) -> None:
    """Decode the rows at batch places `at` not decoded yet."""
    todo = [positions[i] for i in at if rows[positions[i]] is None]
    if todo:
        cols.decode(todo)
