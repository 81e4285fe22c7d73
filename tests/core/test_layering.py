"""The layers hold: the core (events, recording, simulator, intervals, index, and what they import) reaches none
of the UI, the CLI, the probes, Textual or bcc, and the probes reach no UI. Checked on every import statement,
at any depth (a lazy import inside a function counts), and by importing the core in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ("explorer.events", "explorer.recording", "explorer.simulator", "explorer.intervals", "explorer.index")
NOT_FROM_CORE = ("explorer.tui", "explorer.cli", "probes", "textual", "bcc")
NOT_FROM_PROBES = ("explorer.tui", "textual")
VIEW_STATE = "explorer.tui.session"  # the explorer's view state: plain Python, no Textual


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module an import statement in `path` names, absolute (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root)
            for top in ("explorer", "probes") for p in (root / top).rglob("*.py")}


def reached(graph: dict[str, set[str]], roots: tuple[str, ...], stop: tuple[str, ...]) -> dict[str, str]:
    """Every module the roots import, directly or through others (not through those in `stop`), with the module
    that imports it."""
    seen: dict[str, str] = {}
    todo = [m for m in graph if m.startswith(roots)]
    for m in todo:
        seen.setdefault(m, m)
    while todo:
        m = todo.pop()
        for dep in graph.get(m, ()):
            if dep not in seen:
                seen[dep] = m
                if dep in graph and not dep.startswith(stop):
                    todo.append(dep)
    return seen


def violations(root: Path) -> list[str]:
    graph = import_graph(root)
    found = [f"{by} imports {m}" for m, by in reached(graph, CORE, NOT_FROM_CORE).items()
             if m.startswith(NOT_FROM_CORE)]
    found += [f"{name} imports {m}" for name, deps in graph.items() if name.startswith("probes")
              for m in deps if m.startswith(NOT_FROM_PROBES)]
    above = ("textual", "explorer.cli", "probes", "explorer.tui.app", "explorer.tui.panel")
    found += [f"{by} imports {m}" for m, by in reached(graph, (VIEW_STATE,), above).items() if m.startswith(above)]
    return sorted(found)


def test_the_core_and_the_probes_import_nothing_above_them() -> None:
    assert violations(ROOT) == []


def test_the_check_finds_an_upward_import_however_deep(tmp_path: Path) -> None:
    """A copy of the tree with one lazy import planted in a core module's helper, and one in the probes."""
    for top in ("explorer", "probes"):
        for p in (ROOT / top).rglob("*.py"):
            dest = tmp_path / p.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(p.read_text())
    assert violations(tmp_path) == []
    units = tmp_path / "explorer" / "units.py"  # imported by the simulator, so part of the core
    units.write_text(units.read_text() + "\n\ndef _later():\n    from .tui import app  # noqa\n")
    decode = tmp_path / "probes" / "decode.py"
    decode.write_text(decode.read_text() + "\nimport textual\n")
    assert {"explorer.units imports explorer.tui.app", "probes.decode imports textual"} <= set(violations(tmp_path))


def test_importing_the_core_and_the_view_state_loads_no_ui_cli_probes_or_bcc() -> None:
    code = ("import sys\n"
            f"import {', '.join(CORE)}, {VIEW_STATE}, explorer.export, explorer.importers, explorer.scenarios\n"
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('textual', 'bcc', 'probes')\n"
            "                 or m.startswith(('explorer.cli', 'explorer.tui.app', 'explorer.tui.panel'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
