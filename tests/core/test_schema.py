"""The schema's bulk path (rows judged a column at a time, a packed chunk's tables once) against its definition,
`row_problem` applied row by row: the same rows refused, with the same problem, at the same place and time, so
that the fast path cannot drift from the schema."""

from __future__ import annotations

from pathlib import Path
from random import Random
from typing import Any

import msgpack
import numpy as np
import pytest
from hostile_files import FIELD_NAMES, GOOD, hostile_rows, values, write_crafted
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import explorer.schema as schema
from explorer.events import R_TS, Event, Kind, ResponseCode
from explorer.loading import open_index
from explorer.recording import Recording
from explorer.recording.fieldmaps import (
    ABSENT,
    BOOL,
    INT,
    OTHER,
    TEXT,
    FieldColumns,
    FieldRows,
    field_columns,
    field_columns_together,
    field_maps,
)
from explorer.schema import TS_END, checked, lost_row, row_problem

ROWS = st.lists(st.one_of(st.sampled_from(GOOD).map(list), hostile_rows(),
                          st.sampled_from([[1, 2], "row", None, [*GOOD[0], 1], [*GOOD[1], "guest"],
                                           [*GOOD[2], None], [*GOOD[3], 1, "newer"]])), max_size=24)


def by_row(rows: list[Any], last_ts: int = 0) -> tuple[list[Any], list[tuple[int, str]]]:
    """The definition: each row judged alone, a refused one read as a loss at its time, or the last good row's."""
    out, said = [], []
    for j, row in enumerate(rows):
        problem = row_problem(row)
        if problem is None:
            last_ts = row[R_TS]
            out.append(row)
            continue
        ts = row[R_TS] if isinstance(row, list) and row and type(row[R_TS]) is int and 0 <= row[R_TS] < TS_END \
            else last_ts
        out.append(lost_row(ts, problem))
        said.append((j, problem))
    return out, said


def in_bulk(rows: list[Any], last_ts: int = 0) -> tuple[list[Any], list[tuple[int, str]]]:
    said: list[tuple[int, str]] = []
    return checked(rows, lambda j, problem: said.append((j, problem)), last_ts), said


@settings(max_examples=400)
@given(rows=ROWS, last_ts=st.integers(0, 10_000))
def test_the_bulk_path_refuses_exactly_the_rows_the_definition_refuses(rows: list[Any], last_ts: int) -> None:
    assert in_bulk(rows, last_ts) == by_row(rows, last_ts)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(st.sampled_from(GOOD).map(list), hostile_rows()), min_size=1, max_size=12))
def test_a_packed_chunk_is_judged_from_its_tables_as_its_rows_are_one_by_one(tmp_path: Path,
                                                                             rows: list[Any]) -> None:
    """Rows a compressed chunk holds (hostile ones where its columns can hold them) come back refused at the same
    places with the same problems, whether the chunk is read whole or row by row for the model. (Times are ints:
    a writer stores a time as an int64 column.)"""
    assume(all(type(r[R_TS]) is int for r in rows))
    rows = sorted(rows, key=lambda r: r[0] if type(r[0]) is int and 0 <= r[0] < TS_END else 0)
    path = write_crafted(tmp_path / "p.pasidrec", [rows], packed=True)
    want, said = by_row(rows)
    with Recording(path) as rec:
        got = rec.try_chunk_rows(0)
        if got is None:  # a chunk the writer could not pack and whose rows do not decode either
            return
        assert got == want
        assert [d.what for d in rec.damage] == [f"chunk 0, event {j}: {p}; read as one lost event" for j, p in said]
        head = rec.chunk_head(0)
        if head is not None:
            positions = list(range(len(rows)))[::2]
            assert [r for r in head.rows(positions) if r is not None] == [want[j] for j in positions]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(st.sampled_from(GOOD).map(list), hostile_rows()), min_size=2, max_size=24),
       order=st.randoms(use_true_random=False))
def test_an_event_shown_alone_is_the_one_its_chunk_holds(tmp_path: Path, rows: list[Any], order: Random) -> None:
    """The explorer's panels show an event decoded alone from its chunk's columns, not the whole chunk (until
    many of one chunk's events are asked for, a walk): the same event, a refused row the same loss."""
    assume(all(type(r[R_TS]) is int for r in rows))
    rows = sorted(rows, key=lambda r: r[0] if type(r[0]) is int and 0 <= r[0] < TS_END else 0)
    path = write_crafted(tmp_path / "p.pasidrec", [rows[:len(rows) // 2], rows[len(rows) // 2:]], packed=True)
    whole, alone = open_index(path, model=False), open_index(path, model=False)
    asked = list(range(whole.n))
    order.shuffle(asked)
    assert [repr(alone.event(i)) for i in asked] == [repr(Event.from_row(whole.row(i))) for i in asked]  # (NaNs)


def test_good_rows_are_cleared_in_bulk_without_judging_them_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(schema, "row_problem", lambda row: calls.append(row) or row_problem(row))
    rows = [list(r) for r in GOOD] * 500
    rows[7 * 8 + 3] = [*GOOD[3][:8], {**GOOD[3][8], "prg": 1 << 40}]  # one bad page request among 4,000 rows
    refused = in_bulk(rows)[1]
    assert refused == [(59, "field prg is 1099511627776, a int, not a valid int")]
    assert len(calls) == 1  # that row alone is judged by the definition, which names the problem


def test_enum_values_pass_as_the_values_they_stand_for() -> None:
    row = [5, Kind.PAGE_RESPONSE, "d", 1, 0, 1, "c", "s", {"prg": 3, "code": ResponseCode.FAILURE}]
    assert in_bulk([row]) == ([row], [])


# One MessagePack width each: rows of a group then share their maps' layout (fieldmaps), values varying within it
_WIDTHS = [st.integers(0, 127), st.integers(128, 255), st.integers(256, 65535), st.integers(1 << 16, (1 << 32) - 1),
           st.integers(1 << 32, (1 << 64) - 1), st.integers(-32, -1), st.integers(-128, -33),
           st.integers(-32768, -129), st.integers(-(1 << 31), -32769), st.integers(-(1 << 63), -(1 << 31) - 1),
           st.booleans(), st.none(), st.floats(allow_nan=False), st.text("ab\x1b", min_size=3, max_size=3),
           st.text("a\u00e9", min_size=2, max_size=2), st.fixed_dictionaries({"a": st.integers(0, 127)}),
           st.fixed_dictionaries({"a": st.text("b\u00e9", min_size=1, max_size=1), "b": st.lists(st.text("c"))}),
           st.lists(st.integers(0, 127), min_size=2, max_size=2),
           st.binary(min_size=2, max_size=2)]
_KINDS = sorted({r[1] for r in GOOD}) + ["made_up"]


@st.composite
def _groups_of_maps(draw: st.DrawFn) -> list[tuple[str, dict[Any, Any]]]:
    """Rows of a few kinds, most in groups whose maps have one layout (some of them hostile: a prg of 2^40, a nil
    where a field is required, a list for a number), a few of any shape."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(_KINDS))
        names = draw(st.lists(st.sampled_from([*FIELD_NAMES, "x"]), unique=True, max_size=4))
        widths = [draw(st.sampled_from(_WIDTHS)) for _ in names]
        for _ in range(draw(st.integers(1, 40))):
            out.append((kind, {name: draw(w) for name, w in zip(names, widths, strict=True)}))
    out += draw(st.lists(st.tuples(st.sampled_from(_KINDS), st.dictionaries(st.sampled_from([*FIELD_NAMES, 1]),
                                                                            values, max_size=3)), max_size=3))
    return draw(st.permutations(out))


@settings(max_examples=150)
@given(drawn=_groups_of_maps())
def test_field_maps_decoded_a_layout_at_a_time_are_the_maps_and_refusals_of_decoding_them_one_by_one(
        drawn: list[tuple[str, dict[Any, Any]]]) -> None:
    packed = [msgpack.packb(m, use_bin_type=True) for _, m in drawn]
    at = np.zeros(len(packed) + 1, np.uint64)
    np.cumsum([len(p) for p in packed], out=at[1:])
    kinds = sorted({k for k, _ in drawn})
    codes = np.array([kinds.index(k) for k, _ in drawn], np.int64)
    unpack = lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False)  # noqa: E731
    maps, suspected = field_maps(b"".join(packed), at, np.arange(len(drawn)), codes, kinds, unpack)
    assert msgpack.packb(maps) == msgpack.packb([unpack(p) for p in packed])  # (NaN is not equal to itself)
    rows = [[1000 + j, kind, "d", 1, 0, 1, "a", "t", m]
            for j, ((kind, _), m) in enumerate(zip(drawn, maps, strict=True))]
    said: list[tuple[int, str]] = []
    assert (checked(rows, lambda j, p: said.append((j, p)), common_known=True, suspected=suspected), said) == \
        by_row(rows)


@st.composite
def _groups_read(draw: st.DrawFn) -> list[tuple[str, dict[Any, Any]]]:
    """Groups big enough to be read a layout at a time, of a kind that requires names or of none, with names
    whose rules take many widths or any (`x`); text and 64-bit numbers (past 2^63 - 1 or not) come often."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["made_up", "made_up", "uapi"]))
        names = draw(st.lists(st.sampled_from(["x", "name", "ret", "args", "cmd", "prg"]), unique=True, min_size=1,
                              max_size=3))
        widths = [draw(st.sampled_from(_WIDTHS + [_WIDTHS[4], _WIDTHS[13]] * 4)) for _ in names]
        for _ in range(draw(st.integers(16, 40))):
            out.append((kind, {name: draw(w) for name, w in zip(names, widths, strict=True)}))
    return draw(st.permutations(out))


def _read_as(value: Any) -> tuple[int | str, int]:
    """What `field_columns` must hold for a value it reads: its number (or text; 0 where its class says it was not
    read) and its class."""
    if value is _NOTHING:
        return 0, ABSENT
    if type(value) is bool:
        return int(value), BOOL
    if type(value) is int and -(1 << 63) <= value < 1 << 63:
        return value, INT
    return (value, TEXT) if type(value) is str else (0, OTHER)


_NOTHING = object()


@settings(max_examples=300)
@given(drawn=st.one_of(_groups_of_maps(), _groups_read()))
@example(drawn=[("made_up", {"x": "ab", "name": "cd"})] * 20 + [("made_up", {"x": "abc"})] * 20)
def test_field_columns_read_only_maps_the_schema_takes_and_read_their_values_as_decoding_them_would(
        drawn: list[tuple[str, dict[Any, Any]]]) -> None:
    """Any field map `field_columns` reads without decoding decodes, its row passes the schema, and each name's
    number, text and class are the decoded value's."""
    names = _names(drawn)
    _read_as_decoded(field_columns(*_chunk(drawn), frozenset(k for k, _ in drawn), names), drawn, names)


def _chunk(drawn: list[tuple[str, dict[Any, Any]]], every: int = 1, first: int = 0, backwards: bool = False
           ) -> FieldRows:
    """Maps (kind, map) packed as a chunk's fields, its rows `first`, `first + every`, ... asked for, its kinds
    numbered in order or `backwards`."""
    packed = [msgpack.packb(m, use_bin_type=True) for _, m in drawn]
    at = np.zeros(len(packed) + 1, np.uint64)
    np.cumsum([len(p) for p in packed], out=at[1:])
    kinds = sorted({k for k, _ in drawn}, reverse=backwards)
    places = np.arange(first, len(drawn), every)
    return b"".join(packed), at, places, np.array([kinds.index(drawn[j][0]) for j in places.tolist()], np.int64), kinds


def _names(drawn: list[tuple[str, dict[Any, Any]]]) -> tuple[str, ...]:
    return tuple(sorted({name for _, m in drawn for name in m if type(name) is str}))


def _read_as_decoded(cols: FieldColumns, drawn: list[tuple[str, dict[Any, Any]]], names: tuple[str, ...]) -> None:
    """Each map of `drawn` (kind, map) that `cols` read (one entry each) decodes, its row passes the schema, and
    each name's number, text and class are the decoded value's."""
    assert len(cols.read) == len(drawn)
    for j in np.flatnonzero(cols.read).tolist():
        m = msgpack.unpackb(msgpack.packb(drawn[j][1], use_bin_type=True), raw=False, strict_map_key=False)
        assert row_problem([1000, drawn[j][0], "d", 1, 0, 1, "a", "t", m]) is None
        for name in names:
            number, cls = cols.values[name][0][j], cols.values[name][1][j]
            got = cols.texts[number] if cls == TEXT else 0 if cls in (ABSENT, OTHER) else number
            assert (got, cls) == _read_as(m.get(name, _NOTHING))


@settings(max_examples=150)
@given(drawn=st.one_of(_groups_of_maps(), _groups_read()), cuts=st.lists(st.integers(0, 120), max_size=3),
       every=st.integers(1, 3))
@example(drawn=[("made_up", {"x": 300, "name": "cd"})] * 24, cuts=[12], every=1)  # (too few to read alone)
def test_several_chunks_field_columns_read_together_read_each_as_decoding_it_would(
        drawn: list[tuple[str, dict[Any, Any]]], cuts: list[int], every: int) -> None:
    """`field_columns_together` (the read-ahead helper reads the chunks it is asked for so) holds for each chunk
    what `field_columns` does alone, whatever each chunk numbers its kinds and whichever of its rows are asked."""
    bounds = sorted({min(c, len(drawn)) for c in cuts} | {0, len(drawn)})
    chunks = [drawn[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    parts = [_chunk(chunk, every, k % every, k % 2 == 1) for k, chunk in enumerate(chunks)]
    names = _names(drawn)
    together = field_columns_together(parts, frozenset(k for k, _ in drawn), names)
    assert len(together) == len(chunks)
    for cols, chunk, part in zip(together, chunks, parts, strict=True):
        _read_as_decoded(cols, [chunk[j] for j in part[2].tolist()], names)


def test_a_field_map_that_does_not_decode_fails_as_it_does_alone() -> None:
    """A string that is not UTF-8 among maps of its layout: the error is msgpack's, for that map, as when each
    map is decoded alone."""
    good = msgpack.packb({"name": "ab"})
    bad = good.replace(b"ab", b"\xff\xfe")
    packed = [good] * 20 + [bad] + [good] * 20
    at = np.zeros(len(packed) + 1, np.uint64)
    np.cumsum([len(p) for p in packed], out=at[1:])
    unpack = lambda b: msgpack.unpackb(b, raw=False)  # noqa: E731
    with pytest.raises(UnicodeDecodeError) as alone:
        unpack(bad)
    with pytest.raises(UnicodeDecodeError) as grouped:
        field_maps(b"".join(packed), at, np.arange(len(packed)), np.zeros(len(packed), np.int64), ["uapi"], unpack)
    assert str(grouped.value) == str(alone.value)
