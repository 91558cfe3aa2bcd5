"""The agentic arm: a planning call, the plan's steps in order (real tools, or a model call
for THINK steps), then a synthesis call that turns the observations into the answer.

Limits: at most `max_steps` plan steps run and at most `max_tool_calls` of them are tool
calls; every step not run is recorded in the trace with its reason. A plan without one
readable step falls back to a single THINK step with the original question, and
`plan_fallback` says so in the result and the trace.
"""

from __future__ import annotations

import functools

from alems.experiment import tools
from alems.errors import AlemsError
from alems.experiment.workflows import Tally, WorkflowResult, note_phase, sampler_or_null
from alems.experiment.workflows import prompts
from alems.experiment.workflows.prompts import PlanStep


@functools.lru_cache(maxsize=1)
def tool_descriptions() -> str:
    """One line per tool (and lookup table) for the planner, from the tools registry.
    Read once per process: the tables do not change during a batch, and re-reading them
    would put file I/O into every planning phase."""
    return tools.describe_tools()


def _run_tool(name: str, argument: str) -> tuple[str, bool]:
    """(observation, failed): a ToolError becomes the observation, never a crash."""
    try:
        return str(tools.run_tool(name, argument)), False
    except tools.ToolError as exc:
        return f"error: {exc}", True


def run_agentic(provider, item, settings, sampler, *, max_steps: int = 5,
                max_tool_calls: int = 5) -> WorkflowResult:
    if not isinstance(max_steps, int) or max_steps < 1:
        raise AlemsError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not isinstance(max_tool_calls, int) or max_tool_calls < 0:
        raise AlemsError(f"max_tool_calls must be 0 or more, got {max_tool_calls!r}")
    sampler = sampler_or_null(sampler)
    tally = Tally()
    question = item.prompt

    # 1. planning ------------------------------------------------------------------
    with sampler.phase("planning", kind="planning"):
        with sampler.phase("waiting", kind="waiting", what="build_prompt"):
            system, prompt = prompts.plan_prompt(question, tool_descriptions(), max_steps)
        with sampler.phase("llm", kind="llm", purpose="plan") as ph:
            gen = provider.generate(prompt, settings, system=system)
            note_phase(ph, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens)
        with sampler.phase("waiting", kind="waiting", what="parse_plan") as ph:
            tally.add_generation(gen, "plan")
            parsed = prompts.parse_plan(gen.text)
            plan_fallback = not parsed.steps
            planned = parsed.steps or [PlanStep("think", question)]
            steps = planned[:max_steps]
            note_phase(ph, plan_steps=len(parsed.steps), plan_fallback=plan_fallback)
            tally.trace.append({
                "event": "plan", "text": gen.text, "fallback": plan_fallback,
                "ignored_lines": parsed.ignored_lines, "steps": [s.as_dict() for s in planned],
            })
            for index, step in enumerate(planned[max_steps:], start=max_steps + 1):
                tally.trace.append({"event": "dropped", "index": index, "reason": "max_steps",
                                    "step": step.as_dict()})

    # 2. execution -----------------------------------------------------------------
    observations: list[str] = []
    with sampler.phase("execution", kind="execution", planned_steps=len(steps)):
        for index, step in enumerate(steps, start=1):
            with sampler.phase("waiting", kind="waiting", what="prepare_step", step=index):
                if step.kind == "tool" and tally.tool_calls >= max_tool_calls:
                    tally.trace.append({"event": "dropped", "index": index, "reason": "max_tool_calls",
                                        "step": step.as_dict()})
                    continue
                if step.kind == "think":
                    system, prompt = prompts.think_prompt(question, observations, index, step.argument)
            if step.kind == "tool":
                with sampler.phase(f"tool:{step.tool}", kind="tool", tool=step.tool, step=index) as ph:
                    output, failed = _run_tool(step.tool, step.argument)
                    note_phase(ph, failed=failed)
                record = {"event": "step", "index": index, "kind": "tool", "tool": step.tool,
                          "input": step.argument, "output": output, "error": failed}
            else:
                with sampler.phase("llm", kind="llm", purpose="step", step=index) as ph:
                    gen = provider.generate(prompt, settings, system=system)
                    note_phase(ph, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens)
                output = gen.text
                record = {"event": "step", "index": index, "kind": "think",
                          "instruction": step.argument, "output": output}
            with sampler.phase("waiting", kind="waiting", what="record_observation", step=index):
                if step.kind == "tool":
                    tally.tool_calls += 1
                else:
                    tally.add_generation(gen, "step", index=index)
                tally.trace.append(record)
                observations.append(prompts.observation(index, step.label, output))

    # 3. synthesis -----------------------------------------------------------------
    with sampler.phase("synthesis", kind="synthesis"):
        with sampler.phase("waiting", kind="waiting", what="build_prompt"):
            system, prompt = prompts.synthesis_prompt(question, observations)
        with sampler.phase("llm", kind="llm", purpose="synthesis") as ph:
            gen = provider.generate(prompt, settings, system=system)
            note_phase(ph, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens)
        with sampler.phase("waiting", kind="waiting", what="record_answer"):
            tally.add_generation(gen, "synthesis")
            tally.trace.append({"event": "synthesis", "text": gen.text})
    return tally.result(gen.text, plan_fallback=plan_fallback)
