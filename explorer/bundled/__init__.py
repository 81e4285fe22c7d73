"""Where the bundled screen layouts and recordings are.

They live at the top of the repository (`layouts/`, `recordings/`), where people look for them; a built wheel
ships them inside this package as `explorer/bundled/layouts` and `explorer/bundled/recordings` (setup.py maps the
folders). `bundled` finds them either way: in the installed package, else beside the source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(name: str) -> Path:
    """The folder of bundled `name` ("layouts" or "recordings")."""
    installed = files(__name__) / name
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / name  # a source checkout (or an editable install of one)
