"""Recordings that could not see the PASID lifecycle (imported logs, captures on hosts that refuse kernel-function
probes) start uncertain: a fault on a PASID whose allocation happened unseen is not an accusation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.events import AllocPath, DomainType, Event, Kind, make
from explorer.importers import import_log
from explorer.index import RecordingIndex
from explorer.recording import Header, Recording, write_events
from explorer.simulator import Severity, Simulator, lifecycle_unobserved
from probes.capability import ATTACHED, LOCKDOWN, MISSING, MISSING_SYMBOL, Verdict, header_probes
from probes.hooks import HOOKS

ROOT = Path(__file__).resolve().parents[2]
DSA = "0000:6a:01.0"
DMESG = """\
[  232.023974] DMAR: [DMA Read PASID 0x5] Request device [6a:01.0] fault addr 0x7fe0c9943000 [fault reason 0x3a] SM: Non-zero reserved field set in Root Entry
[  232.523974] DMAR: [DMA Write PASID 0x5] Request device [6a:01.0] fault addr 0x7fe0c9944000 [fault reason 0x3a] SM: Non-zero reserved field set in Root Entry
"""  # noqa: E501 (kernel lines as printed)


def _index(path: Path) -> RecordingIndex:
    with Recording(path) as rec:
        return RecordingIndex.build(rec)


def _findings(idx: RecordingIndex) -> list[tuple[str, str]]:
    return [(a.rule, str(a.severity)) for a in idx.anomalies]


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    log = tmp_path / "dmesg.txt"
    log.write_text(DMESG)
    out = tmp_path / "dmesg.pasidrec"
    import_log(str(log), out)
    return out


def _double_free(t: int = 0) -> list[Event]:
    return [make(Kind.PASID_ALLOC, t, device=DSA, pasid=5, path=AllocPath.DRIVER),
            make(Kind.PASID_FREE, t + 1, pasid=5), make(Kind.PASID_FREE, t + 2, pasid=5)]


def test_an_imported_kernel_log_starts_uncertain_and_does_not_accuse_its_own_faults(
        imported: Path, tmp_path: Path) -> None:
    """A DMA fault on a PASID is the kernel's own report (its reason says what was wrong); that nobody was seen
    allocating the PASID accuses no one: iommufd PASIDs are chosen by user space, never allocated (F6-F8)."""
    with Recording(imported) as rec:
        idx = RecordingIndex.build(rec)
        assert idx.header.source == "import:kernel-log"
        assert _findings(idx) == []
        first = int(idx.ts[0])
        assert idx.sim.state.uncertain_since == first and idx.state_at(first).uncertain_since == first
    # A double free in that log's blind state is uncertain; from a capture that saw every function, an error.
    for header, severity in ((Header(source="import:kernel-log"), "uncertain"),
                             (Header(source="capture", probes=header_probes(Verdict(h, ATTACHED) for h in HOOKS)),
                              "error")):
        path = tmp_path / f"{severity}.pasidrec"
        write_events(path, header, _double_free())
        assert _findings(_index(path)) == [("double_free", severity)]


def test_check_exits_1_on_uncertain_findings_as_with_lost_events_and_says_why(tmp_path: Path) -> None:
    """Uncertain findings are findings: `check` exits 1 on them, as it does for a capture that lost events
    (whose `events_lost` finding is itself uncertain); --json gives each one's severity for scripts."""
    path = tmp_path / "imported.pasidrec"
    write_events(path, Header(source="import:kernel-log"), _double_free())
    run = [sys.executable, "-m", "explorer.cli.main", "check", str(path)]
    r = subprocess.run([*run, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert {a["severity"] for a in report["anomalies"]} == {"uncertain"}
    assert "shows no PASID lifecycle" in report["lifecycle_unobserved"]
    text = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    assert "state uncertain from the start" in text and "ERROR" not in text


def _capture_header(status_of_function: dict[str, str], default: str) -> Header:
    """A capture's header as probes.capture writes it: tracepoints attached, kernel functions as given."""
    verdicts = [Verdict(h, ATTACHED if not h.function else status_of_function.get(h.name, default), "why")
                for h in HOOKS]
    return Header(source="capture", probes=header_probes(verdicts))


NO_SVA = {"iommu_sva_bind_device": MISSING_SYMBOL, "iommu_sva_unbind_device": MISSING_SYMBOL,
          "ioasid_alloc": MISSING_SYMBOL, "ioasid_free": MISSING_SYMBOL, "mm_pasid_drop": MISSING_SYMBOL}


@pytest.mark.parametrize("header, uncertain", [
    pytest.param(_capture_header(NO_SVA, LOCKDOWN), True, id="locked down: kernel functions invisible"),
    pytest.param(_capture_header({"iommu_attach_device_pasid": MISSING}, ATTACHED), True,
                 id="attach alone unseen"),
    pytest.param(_capture_header(NO_SVA, ATTACHED), False, id="every function this kernel has, attached"),
    pytest.param(Header(source="import:ftrace"), True, id="an import whose header predates coverage notes"),
    pytest.param(Header(source="scenario"), False, id="a scenario"),
])
def test_a_capture_starts_uncertain_only_when_a_lifecycle_event_this_kernel_has_was_invisible(
        header: Header, uncertain: bool) -> None:
    assert (lifecycle_unobserved(header) is not None) == uncertain
    idx = RecordingIndex(header)
    idx.add_rows([e.to_row() for e in _double_free(1000)])
    idx.finish()
    assert _findings(idx) == [("double_free", "uncertain" if uncertain else "error")]


def test_a_lifecycle_seen_in_part_still_cannot_accuse_of_what_a_missing_event_explains() -> None:
    """Attach, free and exit findings that a missing detach or unbind could explain are uncertain too; a PASID 0
    or one beyond the device's width is wrong whatever was missed."""
    evs = [make(Kind.PASID_ALLOC, 0, device=DSA, pasid=1, path=AllocPath.SVA, mm=10),
           make(Kind.PASID_ATTACH, 1, device=DSA, pasid=1, domain_type=DomainType.SVA),
           make(Kind.PASID_ATTACH, 2, device=DSA, pasid=1, domain_type=DomainType.SVA),
           make(Kind.PASID_FREE, 3, pasid=1),
           make(Kind.PASID_ATTACH, 4, device=DSA, pasid=0, domain_type=DomainType.PAGING)]
    blind = Simulator(unobserved="test").apply_all(evs)
    assert [(a.rule, a.severity) for a in blind.anomalies] == [
        ("attach_conflict", Severity.UNCERTAIN), ("free_while_attached", Severity.UNCERTAIN),
        ("reserved_pasid", Severity.ERROR)]
    assert blind.state.uncertain_since == 0
    sighted = Simulator().apply_all(evs)
    assert [a.severity for a in sighted.anomalies] == [Severity.ERROR] * 3
