"""Every event belongs to a machine: recordings name theirs with the boot id and clock readings that align it with
another's, a merged recording's rows carry their machine's number, and recordings from before machines still
open as one host whose clock cannot be aligned from data."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import pytest

from explorer.errors import RecordingError
from explorer.events import Kind, make
from explorer.machines import HOST, Machine, snapshot
from explorer.recording import Header, Recording, RecordingWriter
from explorer.recording.framing import MAGIC, TAG_HEADER, frame
from explorer.schema import row_problem

DEV = "0000:6a:01.0"


def test_clock_snapshot_reads_the_three_clocks_together() -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    snap = snapshot()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert before <= snap.monotonic <= after and 0 <= snap.spread_ns <= after - before
    assert abs(snap.realtime - time.time_ns()) < 5_000_000_000
    assert snap.boottime >= snap.monotonic  # boottime counts suspend too


def test_machine_clocks_and_rows_machine_numbers_round_trip(tmp_path: Path) -> None:
    start = snapshot()
    table = [Machine("host", "b-1", "6.18.0", "monotonic", start, snapshot(), aligned_by="reference", error_ns=0),
             Machine("lab-6.12", "b-2", "6.12.118", "monotonic", start, None, offset_ns=-5, aligned_by="realtime",
                     error_ns=1200, extra={"note": "kept"})]
    path = tmp_path / "two.pasidrec"
    with RecordingWriter(path, Header("merge", machines=table)) as w:
        w.append(make(Kind.PASID_ALLOC, 10, pasid=5, path="sva"))
        guest = make(Kind.PASID_ALLOC, 11, pasid=5, path="sva")
        w.append_row([*guest.to_row(), 1])
    rec = Recording(path)
    assert rec.header.version >= 2, "a merged recording is version 2 (3 compressed): older readers refuse it"
    with RecordingWriter(rows := tmp_path / "rows.pasidrec", Header("merge", machines=table), compress=False) as w:
        w.append_row([*guest.to_row(), 1])
    assert Recording(rows).header.version == 2
    assert rec.machines == table
    events = list(rec.iter_events())
    assert [(e.ts_ns, e.pasid, e.machine) for e in events] == [(10, 5, 0), (11, 5, 1)]
    assert events[1].to_row()[9] == 1 and len(events[0].to_row()) == 9


def test_a_capture_keeps_its_end_clocks_in_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "cap.pasidrec"
    machine = Machine("lab-7.3", "boot", "7.3.0", "monotonic", snapshot())
    header = Header("capture", clock="monotonic", machines=[machine])
    w = RecordingWriter(path, header, compress=False)
    w.append(make(Kind.MARKER, 1, text="x"))
    end = snapshot()
    w.close(clock_end=end.to_dict())
    rec = Recording(path)
    assert rec.header.version == 1, "one machine, rows: readers from before machines read it as before"
    (m,) = rec.machines
    assert (m.name, m.boot_id, m.start, m.end) == ("lab-7.3", "boot", machine.start, end)


def test_a_recording_from_before_machines_is_the_host_with_an_unknown_clock() -> None:
    bundled = Path(__file__).resolve().parents[2] / "recordings" / "06-buggy-driver.pasidrec"
    (m,) = Recording(bundled).machines
    assert m.name == HOST and m.start is None and m.end is None and m.offset_ns == 0


def _file_with_header(tmp_path: Path, header: dict) -> Path:
    path = tmp_path / "bad.pasidrec"
    path.write_bytes(MAGIC + frame(TAG_HEADER, msgpack.packb(header)))
    return path


@pytest.mark.parametrize(("machines", "says"), [
    ([{"name": "guest"}, {"name": "guest"}], "machine name 'guest' is given twice"),
    ([{"name": "host", "clock_start": {"monotonic": "soon"}}], "machines[0].clock_start: expected a map"),
    ([{"name": 7}], "machines[0].name: expected a string"),
    ([], "expected a list of 1 to 256 machines"),
])
def test_a_bad_machine_table_is_one_line_naming_the_file_and_key(tmp_path: Path, machines: list,
                                                                 says: str) -> None:
    path = _file_with_header(tmp_path, {"format": "pasidrec", "version": 2, "source": "merge", "machines": machines})
    with pytest.raises(RecordingError) as err:
        Recording(path)
    assert str(path) in str(err.value) and says in str(err.value) and "\n" not in str(err.value)


def test_a_row_s_machine_must_be_a_machine_number() -> None:
    row = make(Kind.MARKER, 1, text="x").to_row()
    assert row_problem([*row, 3]) is None
    assert "machine is 'guest'" in row_problem([*row, "guest"])
    assert "machine is 999" in row_problem([*row, 999])
