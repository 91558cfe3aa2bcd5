"""What a custom arm is handed (docs/AGENTS.md, "The protocol"): `ArmContext` with the task's
prompt, a model client bound to the batch's provider, the tool set and a phase recorder.

Every model call and tool call made through the context is a phase on the sample clock
(`llm`, `tool:<name>`), counted with its tokens the way the built-in arms count theirs
(`Tally`), so a custom run's row and phases read like any other. After the run's timeout
every call through the context raises `ArmCancelled` (a BaseException, so an agent's
`except Exception` cannot swallow it): that is how a looping agent is stopped.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from alems.catalog.arms import STAGE_KINDS, STEP_KIND
from alems.errors import AlemsError
from alems.experiment import tools as tools_mod
from alems.experiment.providers import GenerationSettings, ToolCall, Turn
from alems.experiment.workflows import prompts
from alems.experiment.workflows.base import Limits, Tally, note_phase
from alems.experiment.workflows.common import tool_descriptions

ROLES = ("system", "user", "assistant")
# kinds a custom arm may give its own phases: a plain step, or a stage the built-in arms
# also mark (then the run's planning/execution/synthesis_time_ms count it)
MARK_KINDS = (STEP_KIND, *STAGE_KINDS)


class ArmCancelled(BaseException):
    """Raised by every call through the context once the run's time is up."""


class _Guard:
    """The run's cancel flag and one lock, so calls from an agent's own threads are
    recorded one at a time (phases stay well nested, the tally stays whole)."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.lock = threading.RLock()

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        with self.lock:
            if self.cancelled.is_set():
                raise ArmCancelled("the run's time is up (--arm-timeout)")
            yield


@dataclass
class ModelReply:
    """One model call. text: the reply (the answer when tools=False); tool_calls: the
    calls the model asked for (tools=True), run them with ctx.tools.run(call)."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str = ""
    truncated: bool = False
    refusal: bool = False


def _conversation(messages) -> tuple[str | None, list[Turn]]:
    """(system text, turns) of a prompt string or a list of {"role", "content"} dicts."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise AlemsError("ctx.model.complete takes a prompt string or a non-empty list of "
                         "{'role': 'system'|'user'|'assistant', 'content': str} messages")
    system, turns = [], []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        content = m.get("content") if isinstance(m, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise AlemsError(f"a message must be {{'role': one of {', '.join(ROLES)}, "
                             f"'content': str}}, got {m!r:.80}")
        if role == "system":
            system.append(content)
        else:
            turns.append(Turn(role, content))
    if not turns or turns[-1].role != "user":
        raise AlemsError("the last message to ctx.model.complete must be a user message")
    return ("\n\n".join(system) or None), turns


class ModelClient:
    """ctx.model: `complete(messages, tools=False, max_calls=None) -> ModelReply` on the
    batch's provider, with the batch's generation settings (the same for every arm)."""

    def __init__(self, provider, settings: GenerationSettings, sampler, tally: Tally,
                 guard: _Guard, limits: Limits):
        self._provider, self._settings, self._sampler = provider, settings, sampler
        self._tally, self._guard, self._limits = tally, guard, limits
        self.name = str(getattr(provider, "model", None) or getattr(provider, "name", ""))

    def complete(self, messages, tools: bool = False, max_calls: int | None = None) -> ModelReply:
        """tools=False: the model answers in free text (reply.text). tools=True: it names
        the tool calls to make now (reply.tool_calls, at most max_calls, default the
        batch's --max-tool-calls; none when no tool helps) — the providers' plan mode."""
        system, turns = _conversation(messages)
        if not isinstance(tools, bool):
            raise AlemsError("tools must be True or False (the batch's tool set is fixed)")
        # (as the agentic arm asks: at least one, even with --max-tool-calls 0)
        calls = max(self._limits.max_tool_calls, 1) if max_calls is None else max_calls
        if not isinstance(calls, int) or calls < 1:
            raise AlemsError(f"max_calls must be a positive integer, got {max_calls!r}")
        extra: list[ToolCall] = []   # calls beyond max_calls (traced as dropped)
        with self._guard.call():
            purpose = "plan" if tools else "answer"
            with self._sampler.phase("llm", kind="llm", purpose=purpose) as ph:
                if not tools and len(turns) == 1:   # one prompt: the call linear makes
                    gen = self._provider.generate(turns[0].text, self._settings, system=system)
                    reply = ModelReply(gen.text)
                else:
                    if tools and system is None:
                        system = prompts.plan_system(tool_descriptions(), calls)
                    r = self._provider.converse(turns, self._settings, system=system,
                                                mode=purpose, max_calls=calls)
                    gen = r.generation
                    text = r.answer if (not tools and r.answer is not None) else r.text
                    # at most max_calls, as the docs promise (the cloud may name more)
                    reply = ModelReply(text, list(r.calls)[:calls], truncated=r.truncated,
                                       refusal=r.refusal)
                    extra = list(r.calls)[calls:]
                note_phase(ph, prompt_tokens=gen.prompt_tokens,
                           completion_tokens=gen.completion_tokens)
            self._tally.add_generation(gen, purpose)
            self._tally.trace += [{"event": "dropped", "reason": "max_calls",
                                   "call": c.as_dict()} for c in extra]
        reply.prompt_tokens, reply.completion_tokens = gen.prompt_tokens, gen.completion_tokens
        reply.model = gen.model
        return reply


class ToolBox:
    """ctx.tools: the batch's tools (alems.experiment.tools), each call a `tool:<name>`
    phase. A call that is malformed or fails raises ctx.tools.Error (recorded, counted)."""

    Error = tools_mod.ToolError

    def __init__(self, sampler, tally: Tally, guard: _Guard):
        self._sampler, self._tally, self._guard = sampler, tally, guard
        self.names: tuple[str, ...] = tuple(tools_mod.TOOLS)
        self._step = 0

    def describe(self) -> str:
        """One line per tool (and lookup table), for a prompt."""
        return tool_descriptions()

    def call(self, name: str, args: dict) -> str:
        """Run tool `name` with its structured input, e.g. call("calculator",
        {"expression": "2 + 2"}) -> "4"; the fields are those of tools.input_schemas()."""
        return self.run(ToolCall(str(name), args))

    def run(self, call: ToolCall) -> str:
        """Run a call the model asked for (an item of reply.tool_calls)."""
        with self._guard.call():
            self._step += 1
            record = {"event": "tool", "step": self._step, "call": call.as_dict()}
            if call.malformed is not None:   # as the built-in arms: counted, never run
                self._tally.malformed_tool_calls += 1
                self._tally.trace.append({**record, "output": call.malformed, "error": True,
                                          "malformed": True})
                raise self.Error(f"malformed tool call: {call.malformed}")
            with self._sampler.phase(f"tool:{call.name}", kind="tool", tool=call.name,
                                     step=self._step) as ph:
                try:
                    output, failure = str(tools_mod.run_call(call.name, call.input)), None
                except tools_mod.ToolError as exc:
                    output, failure = f"error: {exc}", exc
                note_phase(ph, failed=failure is not None)
            self._tally.tool_calls += 1
            self._tally.trace.append({**record, "output": output, "error": failure is not None,
                                      "malformed": False})
        if failure is not None:
            raise failure
        return output


class PhaseRecorder:
    """ctx.phases: the arm's own steps as phases on the sample clock.

    `mark(name)` starts a phase that lasts until the next mark at the same level, the end
    of the enclosing `phase()` block or the end of the run; `with phase(name):` marks a
    block. Marks nest inside blocks; model and tool calls nest inside both."""

    def __init__(self, sampler, guard: _Guard):
        self._sampler, self._guard = sampler, guard
        self._open: list[contextlib.AbstractContextManager | None] = [None]

    @staticmethod
    def _check(name, kind) -> None:
        if not isinstance(name, str) or not name.strip():
            raise AlemsError(f"a phase needs a non-empty name, got {name!r}")
        if kind not in MARK_KINDS:
            raise AlemsError(f"phase kind must be one of {', '.join(MARK_KINDS)}, got {kind!r}")

    def mark(self, name: str, kind: str = STEP_KIND) -> None:
        self._check(name, kind)
        with self._guard.call():
            self.end()
            cm = self._sampler.phase(name, kind=kind)
            cm.__enter__()
            self._open[-1] = cm

    def end(self) -> None:
        """Close the phase the last mark() at this level opened (if any)."""
        cm, self._open[-1] = self._open[-1], None
        if cm is not None:
            cm.__exit__(None, None, None)

    @contextlib.contextmanager
    def phase(self, name: str, kind: str = STEP_KIND) -> Iterator[None]:
        self._check(name, kind)
        with self._guard.call():
            cm = self._sampler.phase(name, kind=kind)
            cm.__enter__()
        self._open.append(None)
        try:
            yield
        finally:
            self.end()
            self._open.pop()
            cm.__exit__(None, None, None)

    def close_all(self) -> None:
        while len(self._open) > 1:
            self.end()
            self._open.pop()
        self.end()


@dataclass
class ArmContext:
    """What a custom arm gets. prompt: the task item's prompt (what the linear arm sends);
    item_id, task: which item of which task set; arm: this arm's name; limits: the
    batch's max_steps / max_tool_calls (the built-in arms keep to them; yours should).
    The expected answer is never handed over."""

    prompt: str
    item_id: str
    task: str
    arm: str
    model: ModelClient
    tools: ToolBox
    phases: PhaseRecorder
    limits: Limits
