"""README.md's account of the code and of the keys is the code's: every path its map names exists, every module
is named, and its key tables are the ones the explorer generates from its bindings."""

from __future__ import annotations

import re
from pathlib import Path

from explorer.tui.app import ExplorerApp
from explorer.tui.help_screen import key_table
from explorer.tui.panel import Panel

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def between(start: str, end: str) -> str:
    m = re.search(rf"<!-- {start}[^>]*-->\n(.*?)\n<!-- /{end} -->", README, re.S)
    assert m, f"README.md lacks its <!-- {start} --> section"
    return m[1]


def test_readme_lists_every_key_the_explorer_binds() -> None:
    assert between("keys", "keys") == key_table(list(ExplorerApp.BINDINGS)), \
        "README's key table differs from ExplorerApp.BINDINGS: paste explorer.tui.help_screen.key_table's output"
    assert between("panel keys", "panel keys") == key_table(Panel.BINDINGS)


def test_readme_code_map_names_real_paths_and_every_module() -> None:
    text = between("code map", "code map")
    named = set(re.findall(r"`((?:explorer|probes|layouts|recordings|benchmarks|tests)/[\w./*]*)`", text))
    for path in named:
        assert list(ROOT.glob(path.rstrip("/"))), f"README names {path}, which does not exist"
    mentioned = set(re.findall(r"`([\w*]+\.(?:py|yaml)|[\w]+/)`", text)) | {Path(p).name for p in named} | \
        {Path(p.rstrip("/")).name + "/" for p in named}
    modules = [p for top in ("explorer", "probes") for p in (ROOT / top).iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())]
    missing = [str(p.relative_to(ROOT)) for p in modules
               if (p.name if p.suffix else p.name + "/") not in mentioned]
    assert not missing, f"README's code map does not name {missing}"
