"""The colours of arms and phase kinds, one palette for the report (matplotlib) and the
dashboard (plotly), so that a phase or an arm looks the same in both."""

from __future__ import annotations

from alems.catalog.arms import AGENTIC, LINEAR, REACT

ARM_COLORS = {LINEAR: "#1f77b4", AGENTIC: "#d62728", REACT: "#8c564b"}
# Phase kinds (alems.catalog.arms: stages, activities, and a linear run's one phase).
PHASE_COLORS = {LINEAR: "#1f77b4", "planning": "#ff7f0e", "execution": "#2ca02c",
                "synthesis": "#9467bd", "llm": "#d62728", "tool": "#17becf",
                "waiting": "#7f7f7f"}
OTHER_COLOR = "#bbbbbb"   # an arm or kind without a colour of its own
