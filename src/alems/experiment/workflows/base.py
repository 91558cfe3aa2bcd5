"""Types shared by the workflow arms (no imports from the arms: no import cycle). The
arms' names are alems.catalog.arms."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from alems.errors import AlemsError
from alems.experiment.providers import Generation


@dataclass
class WorkflowResult:
    """One run of one arm.

    llm_calls: model calls made; tool_calls: tool invocations (failed ones included);
    steps: llm_calls + tool_calls (1 for linear); plan_fallback: the plan could not be
    read (never for linear and react); malformed_tool_calls: tool calls the model wrote
    that named no tool or had an ill-formed argument (they run as an error observation).
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
    malformed_tool_calls: int = 0


@dataclass(frozen=True)
class Limits:
    """The same limits bound every provider: model steps and tool calls per run."""

    max_steps: int = 5
    max_tool_calls: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise AlemsError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not isinstance(self.max_tool_calls, int) or self.max_tool_calls < 0:
            raise AlemsError(f"max_tool_calls must be 0 or more, got {self.max_tool_calls!r}")


class NullSampler:
    """Stands in for a Sampler when nothing is measured (dry runs): phases are no-ops."""

    def phase(self, name: str, kind: str | None = None, **detail):
        return contextlib.nullcontext()


class Tally:
    """Sums what the model calls of one run cost, and keeps the trace."""

    def __init__(self) -> None:
        self.llm_calls = 0
        self.tool_calls = 0
        self.malformed_tool_calls = 0
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
            malformed_tool_calls=self.malformed_tool_calls,
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
