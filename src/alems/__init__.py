"""A-LEMS: measure what an LLM workflow costs in energy, and the orchestration tax.

From Python (alems.api): `alems.measure("label", hz=1000)` (a context manager and a
decorator), `alems.measured`, `alems.mark("name")`; OpenTelemetry spans as phases:
alems.otel.PhaseSpanProcessor (the `otel` extra).
"""

from alems._version import __version__

# `alems.measure` is the instrument's subpackage, made callable by alems.api (its
# __call__ is alems.api.measure): importing the function here would hide the package.
from alems.api import Measurement, PhaseEnergy, mark, measured  # noqa: E402
from alems import measure  # noqa: E402

__all__ = ["Measurement", "PhaseEnergy", "__version__", "mark", "measure", "measured"]
