"""The arms being measured, each marking its phases on the sampler's clock:

    linear     kind linear     ─ waiting, llm
    agentic    planning        ─ waiting, llm, waiting
               execution       ─ per call: waiting, tool:<name>
               synthesis       ─ waiting, llm, waiting
    react      execution       ─ per step: waiting, llm, waiting, then tool:<name>, waiting
    custom     agent           ─ llm and tool:<name> per call through its context, and
                                 the steps it marks (kind step); docs/AGENTS.md

Children tile their parent: `llm` and `tool` phases hold the model and tool calls, and
`waiting` phases hold everything between them (prompt building, parsing). Every arm gets
the same GenerationSettings for every model call, and the same tools and limits.
"""

from __future__ import annotations

from alems.errors import AlemsError
from alems.catalog.arms import AGENTIC, ARMS, LINEAR, REACT
from alems.experiment.workflows.base import Limits, NullSampler, WorkflowResult
from alems.experiment.workflows.agentic import run_agentic
from alems.experiment.plan import DEFAULT_ARM_TIMEOUT_S
from alems.experiment.workflows.custom import run_custom
from alems.experiment.workflows.linear import run_linear
from alems.experiment.workflows.react import run_react

__all__ = ["WorkflowResult", "Limits", "NullSampler",
           "run_linear", "run_agentic", "run_react", "run_custom", "run_workflow"]


def run_workflow(name: str, provider, item, settings, sampler, *, max_steps: int = 5,
                 max_tool_calls: int = 5, task: str = "",
                 arm_timeout_s: float = DEFAULT_ARM_TIMEOUT_S) -> WorkflowResult:
    """Run one arm by name; the limits go to the arms that use tools; a name that is no
    built-in arm is a custom arm's module:callable (alems.experiment.workflows.custom)."""
    if name not in ARMS:
        return run_custom(name, provider, item, settings, sampler, task=task,
                          max_steps=max_steps, max_tool_calls=max_tool_calls,
                          timeout_s=arm_timeout_s)
    if name == LINEAR:
        return run_linear(provider, item, settings, sampler)
    runners = {AGENTIC: run_agentic, REACT: run_react}
    if name not in runners:
        raise AlemsError(f"unknown workflow {name!r}; choose one of: {', '.join(ARMS)}")
    return runners[name](provider, item, settings, sampler, max_steps=max_steps,
                         max_tool_calls=max_tool_calls)
