"""The two arms being measured: `linear` (one model call) and `agentic` (plan → tools /
model steps → synthesis). Both take the same GenerationSettings for every model call and
mark their phases on the sampler's clock:

    linear     kind linear      ─ waiting, llm
    planning   kind planning    ─ waiting, llm, waiting
    execution  kind execution   ─ per step: waiting, then tool (tool:<name>) or llm
    synthesis  kind synthesis   ─ waiting, llm, waiting

Children tile their parent: `llm` and `tool` phases hold the model and tool calls, and
`waiting` phases hold everything between them (prompt building, plan parsing).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from alems.experiment.plan import WORKFLOWS as WORKFLOW_NAMES
from alems.experiment.providers import Generation

__all__ = ["WorkflowResult", "WORKFLOW_NAMES", "NullSampler", "run_linear", "run_agentic", "run_workflow"]


@dataclass
class WorkflowResult:
    """One run of one arm.

    llm_calls: model calls made; tool_calls: tool invocations (failed ones included);
    steps: llm_calls + tool_calls (1 for linear); plan_fallback: the plan did not parse.
    Tokens are summed over all model calls (None if any call could not count them).
    api_latency_ns / compute_ns: summed over model calls (tool time is in the tool phases).
    """

    answer: str
    llm_calls: int
    tool_calls: int
    steps: int
    plan_fallback: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    api_latency_ns: int
    compute_ns: int
    trace: list[dict] = field(default_factory=list)


class NullSampler:
    """Stands in for a Sampler when nothing is measured (dry runs): phases are no-ops."""

    def phase(self, name: str, kind: str | None = None, **detail):
        return contextlib.nullcontext()


class Tally:
    """Sums what the model calls of one run cost, and keeps the trace."""

    def __init__(self) -> None:
        self.llm_calls = 0
        self.tool_calls = 0
        self.prompt_tokens: int | None = 0
        self.completion_tokens: int | None = 0
        self.api_latency_ns = 0
        self.compute_ns = 0
        self.trace: list[dict] = []

    def add_generation(self, gen: Generation, purpose: str, **extra) -> None:
        self.llm_calls += 1
        self.prompt_tokens = _add(self.prompt_tokens, gen.prompt_tokens)
        self.completion_tokens = _add(self.completion_tokens, gen.completion_tokens)
        self.api_latency_ns += gen.api_latency_ns
        self.compute_ns += gen.compute_ns
        self.trace.append({
            "event": "llm", "purpose": purpose, **extra, "model": gen.model,
            "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "wall_ns": gen.wall_ns, "api_latency_ns": gen.api_latency_ns,
            "compute_ns": gen.compute_ns, "attempts": gen.attempts,
            "seed_applied": gen.seed_applied,
        })

    def result(self, answer: str, *, plan_fallback: bool = False) -> WorkflowResult:
        return WorkflowResult(
            answer=answer,
            llm_calls=self.llm_calls,
            tool_calls=self.tool_calls,
            steps=self.llm_calls + self.tool_calls,
            plan_fallback=plan_fallback,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            api_latency_ns=self.api_latency_ns,
            compute_ns=self.compute_ns,
            trace=self.trace,
        )


def _add(total: int | None, value: int | None) -> int | None:
    if total is None or value is None:
        return None
    return total + value


def note_phase(phase, **detail) -> None:
    """Add detail to a phase after the fact (tokens, tool output size) where it allows."""
    target = getattr(phase, "detail", None)
    if isinstance(target, dict):
        target.update(detail)


def sampler_or_null(sampler):
    return NullSampler() if sampler is None else sampler


from alems.experiment.workflows.linear import run_linear  # noqa: E402
from alems.experiment.workflows.agentic import run_agentic  # noqa: E402


def run_workflow(name: str, provider, item, settings, sampler, **limits) -> WorkflowResult:
    """Dispatch by workflow name ('linear' | 'agentic'); limits go to the agentic arm."""
    from alems.errors import AlemsError

    if name == "linear":
        return run_linear(provider, item, settings, sampler)
    if name == "agentic":
        return run_agentic(provider, item, settings, sampler, **limits)
    raise AlemsError(f"unknown workflow {name!r}; choose one of: {', '.join(WORKFLOW_NAMES)}")
