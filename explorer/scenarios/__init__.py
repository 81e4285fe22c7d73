"""Teaching scenarios: a small YAML language the simulator turns into recordings, and the bundled set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundled import bundled
from .language import ACTIONS, Scenario, parse_scenario, reference
from .play import ScenarioRun

RECORDINGS = bundled("recordings")


def load_scenario(path: str | Path) -> ScenarioRun:
    """Parse, validate and run a scenario file (a ScenarioError names the file and line of any mistake)."""
    return ScenarioRun(parse_scenario(path))


@dataclass(frozen=True, slots=True)
class BundledScenario:
    name: str  # e.g. "01-two-processes-one-device"
    title: str
    yaml_path: Path
    recording_path: Path


def bundled_scenarios() -> list[BundledScenario]:
    """The shipped teaching scenarios in teaching order (file name order), with their generated recordings."""
    out = []
    for path in sorted((RECORDINGS / "scenarios").glob("*.yaml")):
        out.append(BundledScenario(path.stem, parse_scenario(path).title, path,
                                   RECORDINGS / f"{path.stem}.pasidrec"))
    return out


__all__ = ["ACTIONS", "BundledScenario", "Scenario", "ScenarioRun", "bundled_scenarios", "load_scenario",
           "parse_scenario", "reference"]
