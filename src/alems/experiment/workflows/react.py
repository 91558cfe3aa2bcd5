"""The ReAct arm: thought → action (one tool call) → observation, repeated until the model
gives a final answer or the limits are reached.

Each model call is one step (at most max_steps); at most max_tool_calls tools run. The
last allowed step is asked for the answer with no tools, so every run ends in an answer.
A step reply that cannot be read (a local model cut at max_tokens) is answered with an
error observation and the loop goes on.
"""

from __future__ import annotations

from alems.catalog.arms import REACT
from alems.experiment.providers import Turn
from alems.experiment.workflows import prompts
from alems.experiment.workflows.base import (Limits, Tally, WorkflowResult, note_phase,
                                             sampler_or_null)
from alems.experiment.workflows.common import run_call, skipped, tool_descriptions

UNREADABLE = "error: the reply was not a thought with one tool call or an answer; try again"


def run_react(provider, item, settings, sampler, *, max_steps: int = 5,
              max_tool_calls: int = 5) -> WorkflowResult:
    limits = Limits(max_steps, max_tool_calls)
    sampler = sampler_or_null(sampler)
    tally = Tally()
    conversation = [Turn("user", item.prompt)]
    system = None
    answer = None
    with sampler.phase(REACT, kind="execution", max_steps=limits.max_steps):
        for step in range(1, limits.max_steps + 1):
            with sampler.phase("waiting", kind="waiting", what="build_prompt", step=step):
                last = step == limits.max_steps or tally.tool_calls >= limits.max_tool_calls
                if system is None:
                    system = prompts.react_system(tool_descriptions(), limits.max_steps)
                if last:
                    conversation.append(Turn("user", prompts.LAST_STEP_INSTRUCTION))
                mode = "answer" if last else "step"
            with sampler.phase("llm", kind="llm", purpose=mode, step=step) as ph:
                reply = provider.converse(conversation, settings, mode=mode, max_calls=1,
                                          system=prompts.ANSWER_SYSTEM if last else system)
                note_phase(ph, prompt_tokens=reply.generation.prompt_tokens,
                           completion_tokens=reply.generation.completion_tokens)
            with sampler.phase("waiting", kind="waiting", what="parse_step", step=step):
                tally.add_generation(reply.generation, mode, step=step)
                tally.trace.append({
                    "event": "step", "step": step, "mode": mode, "text": reply.generation.text,
                    "thought": reply.text, "answer": reply.answer, "readable": reply.readable,
                    "truncated": reply.truncated, "refusal": reply.refusal,
                    "calls": [c.as_dict() for c in reply.calls]})
                if reply.refusal:
                    tally.trace.append({"event": "refusal", "step": step, "text": reply.text})
                    answer = reply.text
                elif mode == "answer" or (reply.answer is not None and not reply.calls):
                    answer = reply.answer if reply.answer is not None else reply.text
            if answer is not None:
                break
            if not reply.readable or not reply.calls:
                with sampler.phase("waiting", kind="waiting", what="record_observation", step=step):
                    conversation += [reply.turn(), Turn("user", UNREADABLE)]
                continue
            first, *extra = reply.calls
            results = [run_call(first, sampler, tally, step)]
            with sampler.phase("waiting", kind="waiting", what="record_observation", step=step):
                results += [skipped(c, "one tool call per step", tally, step) for c in extra]
                conversation += [reply.turn(), Turn("tool", results=results)]
    tally.trace.append({"event": "answer", "text": answer or ""})
    return tally.result(answer or "")


__all__ = ["run_react"]
