"""Screen layouts (`layouts/*.yaml`): which panels show, where and how big, plus default track grouping and filter.

A layout is rows of panels; each row has a height and each panel a width (cells, `N%` or `Nfr`). Every mistake is a
LayoutError naming the file, the line and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundled import bundled
from ..errors import LayoutError
from ..yaml_lines import LineDict, LineList, load_yaml
from .filters import FilterSyntaxError, parse_filter
from .panels import PANELS

LAYOUTS_DIR = bundled("layouts")
EXPAND = ("none", "devices", "allocator", "all")
THEMES = ("dark", "light")
_SIZE = re.compile(r"^(\d+)(%|fr)?$")
MAX_CELLS = 1000  # a size in cells past any terminal's lines or columns (Textual lays a screen of it out, cell by cell)


@dataclass(frozen=True, slots=True)
class PanelSpec:
    panel: str
    width: str  # a Textual size: "40", "30%", "2fr"


@dataclass(frozen=True, slots=True)
class RowSpec:
    height: str
    panels: tuple[PanelSpec, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    description: str
    rows: tuple[RowSpec, ...]
    label_width: int = 28
    expand: str = "devices"
    filter: str = ""
    theme: str = "dark"

    @property
    def panels(self) -> list[str]:
        return [p.panel for r in self.rows for p in r.panels]


def available_layouts() -> dict[str, Path]:
    return {p.stem: p for p in sorted(LAYOUTS_DIR.glob("*.yaml"))}


def load_layout(name_or_path: str) -> Layout:
    """A bundled layout by name, or a YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        known = available_layouts()
        if name_or_path not in known:
            raise LayoutError(name_or_path, "", f"no such layout (bundled: {', '.join(known)}; or give a .yaml file)")
        path = known[name_or_path]
    if not path.exists():
        raise LayoutError(str(path), "", "no such file")
    return _parse(load_yaml(path, LayoutError), path)


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: Any, key: str, what: str) -> LayoutError:
        line = where.line_of(key.rsplit(".", 1)[-1]) if isinstance(where, LineDict) else getattr(where, "line", 0)
        return LayoutError(str(self.path), f"line {line}" if line else "", f"key '{key}': {what}")

    def mapping(self, value: Any, key: str, allowed: dict[str, str], parent: Any) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(parent, key, f"expected a mapping with keys {', '.join(allowed)}")
        for k in value:
            if k not in allowed:
                raise LayoutError(str(self.path), f"line {value.line_of(k)}",
                                  f"key '{key + '.' if key else ''}{k}': unknown key (known: {', '.join(allowed)})")
        return value

    def size(self, value: Any, key: str, parent: Any) -> str:
        text = str(value).strip()
        if not _SIZE.match(text) or text in ("0", "0%", "0fr"):
            raise self.fail(parent, key, f"expected a size such as 12, 40% or 2fr, got {value!r}")
        if text.endswith("%") and int(text[:-1]) > 100:
            raise self.fail(parent, key, f"expected a share of at most 100%, got {value!r}")
        if text.isdigit() and int(text) > MAX_CELLS:
            raise self.fail(parent, key, f"expected at most {MAX_CELLS} cells (a terminal's lines or columns; "
                                         f"40% or 2fr for a share), got {value!r}")
        return text

    def shares(self, sizes: list[str], key: str, what: str, parent: Any) -> None:
        """Shares of one screen (the rows' heights) or one row (its panels' widths) that add up past 100%: what
        comes after the first 100% would never show."""
        total = sum(int(x[:-1]) for x in sizes if x.endswith("%"))
        if total > 100:
            raise self.fail(parent, key, f"expected {what} that add up to at most 100%, got {total}%: "
                                         "what comes after would not show")

    def text(self, value: Any, key: str, what: str, parent: Any) -> str:
        """A value that must be a string (YAML would otherwise turn a list or a number into one silently)."""
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(parent, key, f"expected {what} as text, got {value!r}")
        return value

    def choice(self, value: Any, key: str, options: tuple[str, ...], parent: Any) -> str:
        if value not in options:
            raise self.fail(parent, key, f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)


_TOP = {"name": "layout name", "description": "one line", "rows": "list of rows", "tracks": "track options",
        "filter": "default filter", "theme": "dark or light"}
_ROW = {"height": "size", "panels": "list of panels"}
_PANEL = {"panel": "panel name", "width": "size"}
_TRACKS = {"label_width": "cells", "expand": "which groups start expanded"}


def _parse(doc: Any, path: Path) -> Layout:
    c = _Checker(path)
    top = c.mapping(doc, "", _TOP, doc)
    rows_in = top.get("rows")
    if not isinstance(rows_in, LineList) or not rows_in:
        raise c.fail(top, "rows", "expected a list of rows, each with a height and panels")
    rows: list[RowSpec] = []
    for i, r in enumerate(rows_in):
        rk = f"rows[{i}]"
        row = c.mapping(r, rk, _ROW, rows_in)
        panels_in = row.get("panels")
        if not isinstance(panels_in, LineList) or not panels_in:
            raise c.fail(row, f"{rk}.panels", "expected a list of panels")
        panels = []
        for j, p in enumerate(panels_in):
            pk = f"{rk}.panels[{j}]"
            if isinstance(p, str):
                p = LineDict(panel=p)
                p.key_lines, p.line = {}, panels_in.item_lines[j]
            spec = c.mapping(p, pk, _PANEL, panels_in)
            name = c.text(spec.get("panel"), f"{pk}.panel", "a panel name", spec)
            if name not in PANELS:
                raise c.fail(spec, f"{pk}.panel", f"unknown panel {name!r} (known: {', '.join(PANELS)})")
            panels.append(PanelSpec(name, c.size(spec.get("width", "1fr"), f"{pk}.width", spec)))
        c.shares([p.width for p in panels], f"{rk}.panels", "widths", row)
        rows.append(RowSpec(c.size(row.get("height", "1fr"), f"{rk}.height", row), tuple(panels)))
    c.shares([r.height for r in rows], "rows", "heights", top)
    names = [p.panel for r in rows for p in r.panels]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise c.fail(top, "rows", f"panel {dup!r} appears twice")
    if "timeline" not in names:
        raise c.fail(top, "rows", "a layout needs the timeline panel")
    tracks = c.mapping(top.get("tracks", LineDict()), "tracks", _TRACKS, top) if "tracks" in top else LineDict()
    label_width = tracks.get("label_width", 28)
    if not isinstance(label_width, int) or not 8 <= label_width <= 80:
        raise c.fail(tracks, "tracks.label_width", f"expected a number of cells from 8 to 80, got {label_width!r}")
    expand = c.choice(tracks.get("expand", "devices"), "tracks.expand", EXPAND, tracks)
    flt = c.text(top.get("filter"), "filter", "a filter", top)
    try:
        parse_filter(flt)
    except FilterSyntaxError as e:
        raise c.fail(top, "filter", str(e)) from None
    theme = c.choice(top.get("theme", "dark"), "theme", THEMES, top)
    name = c.text(top.get("name"), "name", "a name", top) or path.stem
    description = c.text(top.get("description"), "description", "one line", top)
    return Layout(name, description, tuple(rows), label_width, expand, flt, theme)
