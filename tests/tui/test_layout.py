"""Layout files: every mistake, whatever its YAML type, is one LayoutError naming the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.errors import LayoutError
from explorer.tui.screen_layout import available_layouts, load_layout

GOOD = "name: mine\ndescription: one line\nfilter: pasid:1\nrows:\n  - height: 1fr\n    panels:\n      - timeline\n"


@pytest.mark.parametrize(("text", "line", "key", "what"), [
    ("name: x\nrows:\n  - panels:\n      - {panel: [timeline]}\n", 4, "rows[0].panels[0].panel", "['timeline']"),
    ("name: x\nrows:\n  - panels:\n      - panel: 3\n", 4, "rows[0].panels[0].panel", "3"),
    ("name: x\nfilter: [a, b]\nrows:\n  - panels: [timeline]\n", 2, "filter", "['a', 'b']"),
    ("name: [x]\nrows:\n  - panels: [timeline]\n", 1, "name", "['x']"),
    ("name: x\ndescription: {a: 1}\nrows:\n  - panels: [timeline]\n", 2, "description", "{'a': 1}"),
    ("name: x\nrows:\n  - panels: [timeline]\ntheme: [dark]\n", 4, "theme", "['dark']"),
    # a share past the screen: the rows (panels) after it never showed
    ("name: x\nrows:\n  - height: 150%\n    panels: [timeline]\n", 3, "rows[0].height", "'150%'"),
    # a size in cells no terminal has: Textual would lay it out cell by cell until memory ran out
    ("name: x\nrows:\n  - height: 99999999999999999999\n    panels: [timeline]\n", 3, "rows[0].height",
     "got 99999999999999999999"),
    ("name: x\nrows:\n  - height: 70%\n    panels: [timeline]\n  - height: 40%\n    panels: [event]\n", 2,
     "rows", "110%: what comes after would not show"),
    ("name: x\nrows:\n  - panels:\n      - {panel: timeline, width: 60%}\n      - {panel: event, width: 60%}\n",
     3, "rows[0].panels", "120%: what comes after would not show"),
])
def test_a_value_of_the_wrong_type_names_its_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                                              what: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LayoutError) as e:
        load_layout(str(path))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: key '{key}': expected") and message.endswith(what)


def test_text_values_are_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    layout = load_layout(str(path))
    assert (layout.name, layout.description, layout.filter, layout.panels) == ("mine", "one line", "pasid:1",
                                                                                ["timeline"])


@pytest.mark.parametrize("name", list(available_layouts()))
def test_the_bundled_layouts_load(name: str) -> None:
    assert load_layout(name).name == name
