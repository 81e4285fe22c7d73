"""Teaching scenarios: each one shows what it promises, the bundled recordings match their YAML, and mistakes
in a scenario file are named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.errors import ScenarioError
from explorer.index import RecordingIndex
from explorer.recording import Recording
from explorer.scenarios import bundled_scenarios, load_scenario

BUNDLED = bundled_scenarios()


def test_at_least_six_scenarios_ship_in_teaching_order_with_recordings() -> None:
    assert len(BUNDLED) >= 6
    assert [s.name for s in BUNDLED] == sorted(s.name for s in BUNDLED)
    assert all(s.recording_path.exists() for s in BUNDLED)


@pytest.mark.parametrize("scenario", BUNDLED, ids=lambda s: s.name)
def test_each_bundled_scenario_shows_exactly_its_anomalies_and_teaches_with_markers(scenario) -> None:
    run = load_scenario(scenario.yaml_path)
    idx = RecordingIndex.build(Recording(scenario.recording_path))
    assert sorted(a.rule for a in idx.anomalies) == sorted(run.scenario.expect)
    markers = [idx.event(int(i)) for i in range(idx.n) if idx.event(int(i)).kind == "marker"]
    assert len(markers) >= 3 and all(m.get("text") for m in markers)
    assert idx.header.title == run.scenario.title and idx.header.description


@pytest.mark.parametrize("scenario", BUNDLED, ids=lambda s: s.name)
def test_bundled_recordings_are_up_to_date_with_their_yaml(scenario) -> None:
    run = load_scenario(scenario.yaml_path)
    assert list(Recording(scenario.recording_path).iter_events()) == run.events, (
        "regenerate with: pasid-explorer scenarios --rebuild")


def test_the_first_bind_allocates_and_later_binds_share_one_pasid_per_mm() -> None:
    idx = load_scenario(BUNDLED[1].yaml_path).index()  # one process, two devices
    t_both = next(idx.event(i).ts_ns for i in range(idx.n) if idx.event(i).kind == "page_request")
    state = idx.state_at(t_both)
    assert len(state.pasids) == 1
    pasid = next(iter(state.pasids))
    assert sorted(d for (d, p) in state.attachments if p == pasid) == ["0000:6a:01.0", "0000:6a:02.0"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


GOOD_HEAD = """title: t
devices:
  - {name: d0, width: 4}
actors:
  app: {pid: 10, comm: app}
script:
"""


@pytest.mark.parametrize("body, line, words", [
    ("title: [unclosed\n", "line 2", "opened at line 1"),
    ("- just\n- a list\n", "line 1", "must be a mapping"),
    (GOOD_HEAD + "  - at: 1ms\n    bnd: {actor: app, device: d0}\n", "line 8", "unknown action 'bnd'"),
    (GOOD_HEAD + "  - at: 1ms\n    bind: {actor: nobody, device: d0}\n", "line 8", "unknown actor 'nobody'"),
    (GOOD_HEAD + "  - at: 5\n    bind: {actor: app, device: d0}\n", "line 7", "with a unit"),
    (GOOD_HEAD + "  - at: 1ms\n    bind: {actor: app}\n", "line 8", "needs `device`"),
    (GOOD_HEAD + "  - at: 2ms\n    say: a\n  - at: 1ms\n    say: b\n", "line 9", "goes back in time"),
    (GOOD_HEAD + "  - at: 1ms\n    free: {pasid: ghost}\n", "line 8", "unknown PASID 'ghost'"),
    (GOOD_HEAD.replace("width: 4", "width: 40") + "  - say: hi\n", "line 3", "width must be 0..20"),
    (GOOD_HEAD + "  - at: 1ms\n", "line 7", "does nothing"),
])
def test_mistakes_in_a_scenario_are_named_by_file_line_and_what_was_expected(tmp_path: Path, body: str,
                                                                             line: str, words: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}") and words in msg and "\n" not in msg, msg
