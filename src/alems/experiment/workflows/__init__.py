"""The arms being measured, each marking its phases on the sampler's clock:

    linear     kind linear     ─ waiting, llm
    agentic    planning        ─ waiting, llm, waiting
               execution       ─ per call: waiting, tool:<name>
               synthesis       ─ waiting, llm, waiting
    react      execution       ─ per step: waiting, llm, waiting, then tool:<name>, waiting

Children tile their parent: `llm` and `tool` phases hold the model and tool calls, and
`waiting` phases hold everything between them (prompt building, parsing). Every arm gets
the same GenerationSettings for every model call, and the same tools and limits.
"""

from __future__ import annotations

from alems.errors import AlemsError
from alems.catalog.arms import AGENTIC, ARMS, LINEAR, REACT
from alems.experiment.workflows.base import Limits, NullSampler, WorkflowResult
from alems.experiment.workflows.agentic import run_agentic
from alems.experiment.workflows.linear import run_linear
from alems.experiment.workflows.react import run_react

__all__ = ["WorkflowResult", "Limits", "NullSampler",
           "run_linear", "run_agentic", "run_react", "run_workflow"]


def run_workflow(name: str, provider, item, settings, sampler, *, max_steps: int = 5,
                 max_tool_calls: int = 5) -> WorkflowResult:
    """Run one arm by name; the limits go to the arms that use tools."""
    if name == LINEAR:
        return run_linear(provider, item, settings, sampler)
    runners = {AGENTIC: run_agentic, REACT: run_react}
    if name not in runners:
        raise AlemsError(f"unknown workflow {name!r}; choose one of: {', '.join(ARMS)}")
    return runners[name](provider, item, settings, sampler, max_steps=max_steps,
                         max_tool_calls=max_tool_calls)
