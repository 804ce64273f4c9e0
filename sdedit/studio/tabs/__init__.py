"""The page's tabs, in the order they appear: a new tab is one new module here and one line in TABS."""

from __future__ import annotations

from .base import Tab
from .composite import CompositeTab
from .edit import EditTab
from .paint import PaintTab
from .painting import PaintingTab

TABS: tuple[type[Tab], ...] = (PaintTab, EditTab, CompositeTab, PaintingTab)

__all__ = ["TABS", "Tab"]
