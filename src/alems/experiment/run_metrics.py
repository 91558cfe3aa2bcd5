"""A run's metric columns as they are filled: a value, or None with the reason it is
missing. Filled by alems.experiment.metrics and alems.experiment.counter_metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunMetrics:
    columns: dict[str, Any] = field(default_factory=dict)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value, reason: str | None = None) -> None:
        """Store `value`; a None value needs the reason it is missing."""
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            value = None
            reason = reason or "not a finite number"
        self.columns[name] = value
        if value is None:
            self.null_reasons[name] = reason or "not measured"
        else:
            self.null_reasons.pop(name, None)
