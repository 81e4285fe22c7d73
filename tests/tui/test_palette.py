"""Every colour a mark or a panel's text is drawn in reads at WCAG AA (4.5:1) in both themes: on the theme's
background and on every bar tint a mark can sit on."""

from __future__ import annotations

import pytest
from textual.theme import BUILTIN_THEMES

from explorer.tui.glyphs import MARKS, UNKNOWN
from explorer.tui.palette import ANOMALY_CHIPS, BACKGROUNDS, BAR_TINTS, INK

AA = 4.5


def luminance(colour: str) -> float:
    channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("dark", [True, False], ids=["dark", "light"])
def test_every_mark_colour_reads_on_the_background_and_every_bar_tint(dark: bool) -> None:
    grounds = [BACKGROUNDS[dark], *BAR_TINTS[dark]]
    low = {(m.glyph, m.meaning, ground): round(contrast(m.colour(dark), ground), 2)
           for m in [*MARKS.values(), UNKNOWN] for ground in grounds if contrast(m.colour(dark), ground) < AA}
    assert not low
    assert all(contrast(colour, ground) >= AA for colour in INK[dark].values() for ground in grounds)


@pytest.mark.parametrize(("name", "dark"), [("textual-dark", True), ("textual-light", False)])
def test_the_background_checked_is_the_themes_own(name: str, dark: bool) -> None:
    theme = BUILTIN_THEMES[name]
    assert theme.dark == dark
    assert theme.to_color_system().generate()["background"].lower() == BACKGROUNDS[dark]


def test_anomaly_chips_read_on_their_own_background() -> None:
    assert all(contrast(fg, bg) >= AA for fg, bg in ANOMALY_CHIPS.values())
