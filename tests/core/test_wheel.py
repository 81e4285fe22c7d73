"""PASID Explorer installed like a real package: a wheel built from the tree, installed into a fresh venv made
from /usr/bin/python3 (--system-site-packages, as .ci/setup makes one), works from outside the source tree with
its bundled layouts, recordings and scenarios. Needs the package index for the wheel's dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                              ".hypothesis", "snapshot_report.html")

# Run by the installed interpreter, in a folder holding nothing of the source: the explorer on the first bundled
# scenario in every bundled layout, driven headless, with its panels filled from the bundled files.
SMOKE = '''
import asyncio, explorer
from explorer.loading import open_index
from explorer.scenarios import bundled_scenarios
from explorer.tui.app import ExplorerApp
from explorer.tui.screen_layout import available_layouts

assert "site-packages" in explorer.__file__, explorer.__file__
first = bundled_scenarios()[0]
index = open_index(first.recording_path)

async def drive(layout):
    app = ExplorerApp(index, layout=layout)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("m", "right", ".")
        return [w.id for w in app.query("Panel") if w.shown is not None]

for name in sorted(available_layouts()):
    print(name, *asyncio.run(drive(name)))
'''


def run(cmd: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs the system's /usr/bin/python3")
def test_a_built_wheel_in_a_fresh_venv_replays_the_bundled_scenarios_in_every_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)  # (a build writes into the tree it builds)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("pasid_explorer-*.whl")
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], tmp_path)
    py, cli = tmp_path / "venv" / "bin" / "python", tmp_path / "venv" / "bin" / "pasid-explorer"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    listed = run([str(cli), "scenarios"], away)
    names = sorted(p.stem for p in (ROOT / "recordings" / "scenarios").glob("*.yaml"))
    assert names and all(n in listed for n in names)
    bundled = run([str(py), "-c", "from explorer.scenarios import bundled_scenarios as b; "
                   "print(b()[5].recording_path)"], away).strip()
    assert "site-packages" in bundled and Path(bundled).name == f"{names[5]}.pasidrec"
    checked = subprocess.run([str(cli), "check", bundled], cwd=away, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1 and "anomalies:" in checked.stdout  # the buggy driver's findings
    shown = run([str(py), "-c", SMOKE], away).splitlines()
    assert [line.split()[0] for line in shown] == sorted(p.stem for p in (ROOT / "layouts").glob("*.yaml"))
    assert all(len(line.split()) >= 3 for line in shown), shown  # each layout's panels filled
