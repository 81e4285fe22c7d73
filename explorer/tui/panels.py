"""Every panel a layout may name, in one place: each kind's class declares its name, what it shows, what it
depends on and how it fills itself (see panel.Panel); the timeline is the one that is not a text panel."""

from __future__ import annotations

from .allocator_panel import AllocatorPanel
from .anomaly_panel import AnomalyPanel
from .event_panel import EventPanel
from .lesson_panel import LessonPanel
from .panel import Panel
from .range_panel import RangePanel
from .timeline import Timeline

PANELS: dict[str, type[Timeline] | type[Panel]] = {
    cls.NAME: cls for cls in (Timeline, AllocatorPanel, EventPanel, AnomalyPanel, LessonPanel, RangePanel)}
