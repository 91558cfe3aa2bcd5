"""The linear arm: one model call with the task prompt."""

from __future__ import annotations

from alems.catalog.arms import LINEAR
from alems.experiment.workflows.base import Tally, WorkflowResult, note_phase, sampler_or_null
from alems.experiment.workflows.prompts import answer_prompt


def run_linear(provider, item, settings, sampler) -> WorkflowResult:
    sampler = sampler_or_null(sampler)
    tally = Tally()
    with sampler.phase(LINEAR, kind=LINEAR, item_id=str(getattr(item, "id", ""))):
        with sampler.phase("waiting", kind="waiting", what="build_prompt"):
            system, prompt = answer_prompt(item.prompt)
        with sampler.phase("llm", kind="llm", purpose="answer") as ph:
            gen = provider.generate(prompt, settings, system=system)
            note_phase(ph, prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens)
    tally.add_generation(gen, "answer")
    tally.trace.append({"event": "answer", "text": gen.text})
    return tally.result(gen.text)
