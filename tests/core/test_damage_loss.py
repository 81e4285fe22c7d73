"""Bytes a damaged recording loses stand for lost events, with or without a footer, and merged or not: the model
stops trusting its state there, so what the lost events could explain is uncertain, never an error a healthy
kernel did not make."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from core.test_cli import SCENARIOS, cli

from explorer.recording import Recording
from explorer.workload import write_workload

GUEST = str(SCENARIOS["01-two-processes-one-device"].recording_path)


@dataclass(frozen=True)
class Damaged:
    """A workload recording, whole and with its middle chunk damaged (`path`); `offset` is that chunk's frame."""

    healthy: Path
    path: Path
    offset: int


def _damaged(tmp_path: Path, footer: bool, where: str) -> Damaged:
    """The workload (slow responses its only anomalies) with 16 bytes of its middle chunk zeroed: inside its
    payload (its checksum fails) or over its length (the walk looks for the next frame); without a footer, as a
    capture killed with -9 leaves it."""
    whole = tmp_path / "whole.pasidrec"
    write_workload(str(whole), 20_000, 1)
    with Recording(whole) as rec:
        mid, last = rec.chunks[len(rec.chunks) // 2], rec.chunks[-1]
    data = whole.read_bytes()
    data = data if footer else data[:last.payload_offset + last.length]
    healthy = tmp_path / "healthy.pasidrec"
    healthy.write_bytes(data)
    at = mid.payload_offset + 100 if where == "payload" else mid.offset + 4
    path = tmp_path / "damaged.pasidrec"
    path.write_bytes(data[:at] + bytes(16) + data[at + 16:])
    return Damaged(healthy, path, mid.offset)


def _findings(path: Path) -> list[tuple[str, str]]:
    r = cli("check", str(path), "--json")
    assert r.returncode in (0, 1), r.stderr
    return [(a["rule"], a["severity"]) for a in json.loads(r.stdout)["anomalies"]]


def _errors(path: Path) -> set[str]:
    return {rule for rule, severity in _findings(path) if severity == "error"}


@pytest.mark.parametrize("where", ["payload", "length"])
def test_a_damaged_chunk_without_a_footer_is_a_loss_and_costs_no_false_error(tmp_path: Path, where: str) -> None:
    f = _damaged(tmp_path, footer=False, where=where)
    assert _errors(f.path) <= _errors(f.healthy)
    assert ("events_lost", "uncertain") in _findings(f.path)
    r = cli("check", str(f.path))
    assert "events of unknown number lost (unreadable in the file); state is uncertain from here" in r.stdout
    assert f"pasid-explorer: {f.path}:byte {f.offset}: " in r.stderr
    assert "events of unknown number lost" in r.stderr
    info = cli("info", str(f.path)).stdout
    assert f"damaged: byte {f.offset}: " in info and "events of unknown number lost" in info


@pytest.mark.parametrize("footer", [True, False])
def test_merge_keeps_a_source_s_damage_as_a_loss_on_its_machine(tmp_path: Path, footer: bool) -> None:
    f = _damaged(tmp_path, footer=footer, where="payload")
    merged, healthy = tmp_path / "m.pasidrec", tmp_path / "h.pasidrec"
    said = {}
    for source, out in ((f.path, merged), (f.healthy, healthy)):
        r = cli("merge", "-o", str(out), str(source), GUEST, "--name", f"{GUEST}=g0", "--offset", "g0=+1s")
        assert r.returncode == 0, r.stderr
        said[out] = r.stderr
    assert f"pasid-explorer: {f.path}:byte {f.offset}: " in said[merged] and "loss" not in said[healthy]
    assert "the merged file keeps this as a loss on machine host" in said[merged]
    assert _errors(merged) <= _errors(healthy)
    assert ("events_lost", "uncertain") in _findings(merged)
    assert f"unreadable in {f.path.name}" in cli("check", str(merged)).stdout
    assert "lost during capture, or unreadable in a recording merged into this one" in cli("info", str(merged)).stdout


@pytest.mark.parametrize("name", ["06-buggy-driver", "08-old-kernel-last-unbind"])
def test_a_damaged_header_keeps_every_event_and_makes_no_finding_more_than_uncertain(tmp_path: Path,
                                                                                    name: str) -> None:
    """Its kernel unknown (06's errors are errors on its 6.18; 08's 5.15 frees an SVA PASID at its last unbind, where
    the current kernel's rules would call the free early) and its coverage unknown: every finding is kept, and
    uncertain."""
    healthy = SCENARIOS[name].recording_path
    data = bytearray(healthy.read_bytes())
    data[30] ^= 4  # inside the header's payload
    path = tmp_path / "header.pasidrec"
    path.write_bytes(bytes(data))
    r = cli("check", str(path), "--json")
    assert r.returncode == 1, r.stderr
    assert f"pasid-explorer: {path}:byte 8: header frame damaged (fails its checksum): the kernel" in r.stderr
    damaged, whole = json.loads(r.stdout), json.loads(cli("check", str(healthy), "--json").stdout)
    assert damaged["events"] == whole["events"]
    assert {a["severity"] for a in damaged["anomalies"]} == {"uncertain"}
    assert {a["rule"] for a in whole["anomalies"]} <= {a["rule"] for a in damaged["anomalies"]}
    info = cli("info", str(path)).stdout
    assert "damaged: byte 8: header frame damaged" in info and "state uncertain from the start" in info


def test_a_merged_recording_s_damaged_header_keeps_its_machines_apart_and_merge_refuses_it(tmp_path: Path) -> None:
    """A merged recording of two captures that each check clean, its header frame damaged: the rows still name their
    machine (by number, devices by `vm1/`), so the model keeps each machine's PASIDs its own (no PASID handed out
    twice because host and guest both use PASID 1), and merging it again is refused rather than mislabelled."""
    other = str(SCENARIOS["02-one-process-two-devices"].recording_path)
    merged = tmp_path / "m.pasidrec"
    made = cli("merge", "-o", str(merged), GUEST, other, "--name", f"{other}=vm1", "--offset", "vm1=+0s")
    assert made.returncode == 0, made.stderr
    data = bytearray(merged.read_bytes())
    data[30] ^= 0xFF  # inside the header's payload
    path = tmp_path / "damaged.pasidrec"
    path.write_bytes(bytes(data))
    r = cli("check", str(path), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["anomalies"] == [], r.stdout
    assert "(1 chunk) (its rows name 2 machines, each kept apart)" in r.stderr
    again = cli("merge", "-o", str(tmp_path / "again.pasidrec"), str(path), GUEST, "--name", f"{GUEST}=vm9",
                "--offset", "vm9=+0s")
    assert again.returncode == 2 and not (tmp_path / "again.pasidrec").exists()
    assert again.stderr.strip().splitlines() == [f"pasid-explorer: {path}: its header frame is damaged, so its "
                                                 "machines, clocks and kernel are unknown: merge the recordings it "
                                                 "was made from, or an undamaged copy"]
