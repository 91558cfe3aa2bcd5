"""The agentic arm (plan and execute): a planning call that names the tool calls to make,
the calls run in order, then a synthesis call that answers from their results.

The plan is structured by construction (a grammar for local models, native tool use in
the cloud). Limits: at most min(max_steps, max_tool_calls) calls are asked for; calls over
that, repeats of an earlier identical call, and malformed calls are not run, and each
gets an error result and a trace entry saying why. `plan_fallback` is True only when the
plan reply could not be read at all (then no call runs).
"""

from __future__ import annotations

import json

from alems.experiment.providers import Turn
from alems.experiment.workflows import prompts
from alems.experiment.workflows.base import (Limits, Tally, WorkflowResult, note_phase,
                                             sampler_or_null)
from alems.experiment.workflows.common import run_call, skipped, tool_descriptions


def run_agentic(provider, item, settings, sampler, *, max_steps: int = 5,
                max_tool_calls: int = 5) -> WorkflowResult:
    limits = Limits(max_steps, max_tool_calls)
    budget = min(limits.max_steps, limits.max_tool_calls)
    sampler = sampler_or_null(sampler)
    tally = Tally()
    conversation = [Turn("user", item.prompt)]

    with sampler.phase("planning", kind="planning"):
        with sampler.phase("waiting", kind="waiting", what="build_prompt"):
            system = prompts.plan_system(tool_descriptions(), budget)
        with sampler.phase("llm", kind="llm", purpose="plan") as ph:
            plan = provider.converse(conversation, settings, system=system, mode="plan",
                                     max_calls=max(budget, 1))
            note_phase(ph, prompt_tokens=plan.generation.prompt_tokens,
                       completion_tokens=plan.generation.completion_tokens)
        with sampler.phase("waiting", kind="waiting", what="parse_plan") as ph:
            tally.add_generation(plan.generation, "plan")
            fallback = not plan.readable and not plan.refusal
            note_phase(ph, plan_calls=len(plan.calls), plan_fallback=fallback)
            tally.trace.append({
                "event": "plan", "text": plan.generation.text, "thought": plan.text,
                "fallback": fallback, "truncated": plan.truncated, "refusal": plan.refusal,
                "calls": [c.as_dict() for c in plan.calls]})
    if plan.refusal:
        tally.trace.append({"event": "refusal", "purpose": "plan", "text": plan.text})
        return tally.result(plan.text, plan_fallback=False)

    results, seen = [], set()
    with sampler.phase("execution", kind="execution", planned_calls=len(plan.calls)):
        for index, call in enumerate(plan.calls, start=1):
            with sampler.phase("waiting", kind="waiting", what="prepare_step", step=index):
                signature = (call.name, json.dumps(call.input, sort_keys=True, default=str))
                reason = ("max_tool_calls" if tally.tool_calls >= budget
                          else "duplicate" if signature in seen else None)
                seen.add(signature)
                if reason:
                    results.append(skipped(call, reason, tally, index))
                    continue
                if call.malformed is not None:
                    results.append(run_call(call, sampler, tally, index))
                    continue
            results.append(run_call(call, sampler, tally, index))

    with sampler.phase("synthesis", kind="synthesis"):
        with sampler.phase("waiting", kind="waiting", what="build_prompt"):
            turn = plan.turn()
            if turn.text or turn.calls:
                conversation.append(turn)
            if results:
                conversation.append(Turn("tool", results=results))
            conversation.append(Turn("user", prompts.SYNTHESIS_INSTRUCTION))
        with sampler.phase("llm", kind="llm", purpose="synthesis") as ph:
            final = provider.converse(conversation, settings, system=prompts.ANSWER_SYSTEM,
                                      mode="answer")
            note_phase(ph, prompt_tokens=final.generation.prompt_tokens,
                       completion_tokens=final.generation.completion_tokens)
        with sampler.phase("waiting", kind="waiting", what="record_answer"):
            tally.add_generation(final.generation, "synthesis")
            answer = final.answer if final.answer is not None else final.text
            tally.trace.append({"event": "synthesis", "text": answer, "refusal": final.refusal})
    return tally.result(answer, plan_fallback=fallback)
