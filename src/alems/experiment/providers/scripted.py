"""A deterministic scripted model, for tests and dry runs.

Replies come from a list (in order) or from a function of the prompt. Every call is
recorded in `calls` (prompt, system, settings) so tests can check what each arm sent.
`converse()` speaks the local models' text protocol (providers.structured): the prompt is
the rendered conversation, and plan / step replies are read as that JSON (no grammar
binds a script, so a reply may also be unreadable, as a test may want).
Tokens are whitespace-separated words, which keeps them deterministic and non-zero.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence

from alems.errors import AlemsError
from alems.experiment.providers import (
    Generation, GenerationSettings, ProviderError, Reply, Turn, structured)


@dataclass
class ScriptedCall:
    prompt: str
    system: str | None
    settings: GenerationSettings


def default_reply(prompt: str, system: str | None = None) -> str:
    """For dry runs: an empty plan, a step that answers, or the fixed answer "unknown"."""
    text = system or ""
    if '"tool_calls"' in text:
        return '{"tool_calls": []}'
    if '"thought"' in text:
        return '{"thought": "I cannot tell", "answer": "unknown"}'
    return "Answer: unknown"


class ScriptedProvider:
    name = "scripted"

    def __init__(
        self,
        replies: Sequence[str] | Callable[..., str] | None = None,
        *,
        model: str = "scripted",
        delay_s: float = 0.0,
    ):
        if replies is None:
            replies = default_reply
        if isinstance(replies, str) or not (callable(replies) or isinstance(replies, Sequence)):
            raise AlemsError("scripted replies must be a list of strings or a function of the "
                             "prompt")
        self._replies = replies
        self._takes_system = callable(replies) and _positional_count(replies) >= 2
        self._next = 0
        self.model = model
        self.delay_s = float(delay_s)
        self.calls: list[ScriptedCall] = []

    def check(self) -> None:
        return None

    def _reply(self, prompt: str, system: str | None) -> str:
        if callable(self._replies):
            if self._takes_system:
                return self._replies(prompt, system)
            return self._replies(prompt)
        if self._next >= len(self._replies):
            raise ProviderError(
                f"scripted provider ran out of replies after {len(self._replies)} call(s); "
                "give it more replies"
            )
        reply = self._replies[self._next]
        self._next += 1
        return reply

    def generate(
        self, prompt: str, settings: GenerationSettings, *, system: str | None = None
    ) -> Generation:
        t0 = time.perf_counter_ns()
        self.calls.append(ScriptedCall(prompt=prompt, system=system, settings=settings))
        text = self._reply(prompt, system)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        words = text.split()[: settings.max_tokens]
        text = text if len(text.split()) <= settings.max_tokens else " ".join(words)
        wall_ns = time.perf_counter_ns() - t0
        return Generation(
            text=text,
            prompt_tokens=len(((system or "") + " " + prompt).split()),
            completion_tokens=len(words),
            wall_ns=wall_ns,
            api_latency_ns=0,
            compute_ns=wall_ns,
            model=self.model,
        )


    def converse(self, conversation: list[Turn], settings: GenerationSettings, *,
                 system: str | None = None, mode: str = "answer", max_calls: int = 1) -> Reply:
        messages = structured.render(system, conversation, mode, max_calls)
        system_text = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
        prompt = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
        gen = self.generate(prompt, settings, system=system_text)
        if mode == "answer":
            return Reply(gen, text=gen.text, answer=gen.text)
        parsed = structured.parse(gen.text, mode)
        return Reply(gen, text=parsed["thought"], calls=parsed["calls"], answer=parsed["answer"],
                     readable=parsed["readable"])


def _positional_count(fn) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
