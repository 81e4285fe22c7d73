"""Every colour the explorer draws with, per theme (keyed by Textual's `Theme.dark`).

Marks sit on the theme's background or on a bar tint, so each theme has its own ink shades, each at least 4.5:1
(WCAG AA) against the background and every tint of that theme; tests/tui/test_palette.py checks it.
"""

from __future__ import annotations

from ..simulator import Severity

INK: dict[bool, dict[str, str]] = {
    True: {"grey": "#b4b4b4", "cyan": "#48c4d4", "green": "#66cc66", "amber": "#e6a832", "blue": "#90acff",
           "purple": "#cc9cf2", "red": "#ff8a8a"},
    False: {"grey": "#545454", "cyan": "#005e6c", "green": "#186018", "amber": "#744c00", "blue": "#2848b0",
            "purple": "#6a2a9a", "red": "#a31a1a"},
}
BACKGROUNDS = {True: "#121212", False: "#e0e0e0"}  # textual-dark's and textual-light's $background
# Bar tints per span style (see spans.SPAN_NAMES).
BAR_TINTS: dict[bool, tuple[str, ...]] = {
    True: ("#1f3d26", "#1c2f4d", "#173d40", "#3a2150", "#333333", "#4a3a10", "#6a1c1c"),
    False: ("#d4efd4", "#d6e2fa", "#cdecee", "#ead9f7", "#e2e2e2", "#f6e4b0", "#f6c8c8"),
}
SEVERITY_RANK = {Severity.UNCERTAIN: 1, Severity.WARNING: 2, Severity.ERROR: 3}
# The `!` chip (foreground, background) by severity rank: it brings its own background, so one pair serves both.
ANOMALY_CHIPS = {1: ("#ffffff", "#707070"), 2: ("#000000", "#d89a00"), 3: ("#ffffff", "#c01010")}
SEVERITY_INK = {Severity.ERROR: "red", Severity.WARNING: "amber", Severity.UNCERTAIN: "grey"}


def ink(role: str, dark: bool) -> str:
    """The colour of a role ("red", "amber", …) in the dark or the light theme."""
    return INK[dark][role]
