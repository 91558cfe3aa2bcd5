"""OpenAI-compatible providers: the openai SDK's chat completions against any endpoint that
speaks them: OpenAI itself, Groq, a model server on this machine (Ollama, vLLM, llama.cpp's
`llama-server`, llama-cpp-python's `llama_cpp.server`, LM Studio) or any other URL.

- `openai`: `--base-url URL` (else OPENAI_BASE_URL, else api.openai.com), `--model NAME`,
  key from OPENAI_API_KEY. A base URL on this machine or a private network needs no key
  (the SDK is handed a placeholder: it refuses an empty one).
- `groq`: Groq's endpoint (ALEMS_GROQ_BASE_URL overrides it), key from GROQ_API_KEY.
- `ollama`: http://127.0.0.1:11434/v1 (ALEMS_OLLAMA_BASE_URL overrides it), no key.

Without a model name, a server that lists exactly one model (`GET /models`, a local
llama.cpp server) is asked which; otherwise the preset's default, else a clear error.
Tool calling is the API's own: the tools go as `tools` (JSON-schema functions), calls come
back as `tool_calls` (arguments a JSON string, which may not parse: recorded as a
malformed call) and results go back as `role: tool` messages. A refusal (the `refusal`
field, or finish_reason `content_filter`) is recorded as for Anthropic. Retries follow the
one policy of `alems.experiment.providers.retry`. The key is checked before the SDK is
imported, so a missing key fails in milliseconds.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from alems import config
from alems.errors import AlemsError
from alems.experiment import tools
from alems.experiment.providers import (
    Generation, GenerationSettings, Reply, ToolCall, Turn)
from alems.experiment.providers.retry import RetryPolicy

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
GROQ_DEFAULT_MODEL = "llama-3.1-8b-instant"
# What the SDK is given where the server takes no key (it refuses an empty one).
NO_KEY = "sk-no-key-required"
_EXTRA_HINT = "install the openai extra: pip install 'alems[openai]'"


def is_private_url(url: str) -> bool:
    """Whether `url`'s host is this machine or a private network (loopback, RFC 1918,
    link-local, unique-local): such servers usually take no key. Names other than
    `localhost` are not resolved (no DNS lookup: a name is treated as remote)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def probe_models(base_url: str, headers: dict[str, str] | None = None,
                 timeout_s: float = 2.0) -> tuple[bool, str]:
    """GET <base_url>/models without the SDK (milliseconds): (answers, what it serves or
    why it does not answer). A server on a private host is asked directly (no proxy)."""
    handlers = [urllib.request.ProxyHandler({})] if is_private_url(base_url) else []
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers=headers or {})
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout_s) as resp:
            data = json.loads(resp.read(1_000_000))
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} from {base_url}/models"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{base_url}/models does not answer ({reason})"
    except ValueError:
        return False, f"{base_url}/models did not answer JSON"
    models = [str(m.get("id")) for m in (data.get("data") or []) if isinstance(m, dict)] \
        if isinstance(data, dict) else []
    shown = ", ".join(models[:5]) + (" …" if len(models) > 5 else "")
    return True, f"serves {len(models)} model(s)" + (f": {shown}" if shown else "")


def _import_openai():
    try:
        import openai
    except ImportError as exc:
        raise AlemsError(f"the openai SDK is not importable ({exc}); {_EXTRA_HINT}") from exc
    return openai


class OpenAICompatProvider:
    """`--providers openai`; the presets below differ only in their class attributes."""

    name = "openai"
    backend = "openai"
    label = "OpenAI-compatible endpoint"
    key_env: str | None = "OPENAI_API_KEY"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        **retry_options: Any,   # RetryPolicy's (max_attempts, backoff…, sleep): its defaults
    ):
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise AlemsError(f"--base-url must be an http(s) URL, got {base_url!r}; e.g. "
                             "http://127.0.0.1:8080/v1")
        self.base_url = (base_url or self._default_base_url()).rstrip("/")
        self._model = model or self._default_model()
        given = api_key or self._env_key()
        self.keyless = not given and (self.key_env is None or is_private_url(self.base_url))
        self.api_key = NO_KEY if self.keyless else given
        self.retry = RetryPolicy(**retry_options)
        self.max_attempts = self.retry.max_attempts
        self.timeout_s = float(timeout_s)
        self._client = None

    # -- the preset's defaults (overridden by the presets)
    def _default_base_url(self) -> str:
        return config.openai_base_url() or OPENAI_BASE_URL

    def _default_model(self) -> str | None:
        return OPENAI_DEFAULT_MODEL if self.base_url == OPENAI_BASE_URL else None

    def _env_key(self) -> str | None:
        return config.openai_api_key()

    @property
    def model(self) -> str:
        return self._model or "unknown"

    def describe(self) -> str:
        """One line: what this provider talks to (said at batch start, in doctor)."""
        return f"{self.label} at {self.base_url}, model {self._model or '(asked of the server)'}"

    def check_key(self) -> None:
        """A key present where one is needed; imports nothing, requests nothing."""
        if not self.api_key:
            raise AlemsError(
                f"{self.key_env} is not set; export {self.key_env}=... to use {self.label} at "
                f"{self.base_url}" + (" (a server on this machine or a private network "
                                      "needs none)" if self.name == "openai" else ""))

    def check(self) -> None:
        """Key, SDK, and a model name (asked of the server when none was given)."""
        self.check_key()
        _import_openai()
        if self._model is None:
            self._model = self._only_served_model()

    def _only_served_model(self) -> str:
        openai = _import_openai()
        try:
            served = [m.id for m in self._get_client().models.list()]
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise AlemsError(f"no model named and {self.base_url}/models did not answer "
                             f"({' '.join(str(exc).split())}); pass --model NAME") from None
        if len(served) != 1:
            listed = ", ".join(served[:10]) + (" …" if len(served) > 10 else "")
            raise AlemsError(f"no model named and {self.base_url} serves {len(served)} "
                             f"({listed or 'none'}); pass --model NAME")
        return served[0]

    def _get_client(self):
        if self._client is None:
            self.check_key()
            openai = _import_openai()
            self._client = openai.OpenAI(api_key=self.api_key, base_url=self.base_url,
                                         max_retries=0, timeout=self.timeout_s)
        return self._client

    def backoff_s(self, attempt: int, headers=None) -> float:
        return self.retry.backoff_s(attempt, headers)

    # -- calls
    def generate(self, prompt: str, settings: GenerationSettings, *,
                 system: str | None = None) -> Generation:
        messages = _with_system(system, [{"role": "user", "content": prompt}])
        _, gen = self._create(self._request(settings, messages))
        return gen

    def converse(self, conversation: list[Turn], settings: GenerationSettings, *,
                 system: str | None = None, mode: str = "answer", max_calls: int = 1) -> Reply:
        """Native tool calling. plan: any number of calls (the workflow enforces
        max_calls); step: at most one (parallel tool calls off); answer: none."""
        request = self._request(settings, _with_system(system, to_messages(conversation)))
        request["tools"] = tool_specs()
        request["tool_choice"] = "none" if mode == "answer" else "auto"
        if mode == "step":
            request["parallel_tool_calls"] = False
        response, gen = self._create(request)
        choice = response.choices[0] if response.choices else None
        message = getattr(choice, "message", None)
        calls = [parse_call(tc, i) for i, tc in
                 enumerate(getattr(message, "tool_calls", None) or [], 1)]
        finish = getattr(choice, "finish_reason", None)
        refusal_text = getattr(message, "refusal", None)
        refused = bool(refusal_text) or finish == "content_filter"
        text = gen.text or (refusal_text or "")
        answer = text if mode == "answer" or (mode == "step" and not calls) else None
        return Reply(gen, text=text, calls=calls, answer=answer, truncated=finish == "length",
                     refusal=refused)

    def _request(self, settings: GenerationSettings, messages: list) -> dict:
        return {"model": self.model, "messages": messages, "max_tokens": settings.max_tokens,
                "temperature": settings.temperature, "seed": settings.seed}

    def _refused(self, failure) -> str:
        hint = ""
        if failure.status in (401, 403):
            hint = (f"; check {self.key_env}" if self.key_env and not self.keyless
                    else "; the server wants a key: export "
                    f"{self.key_env or 'OPENAI_API_KEY'}=...")
        elif failure.status == 404:
            hint = f"; is {self.model!r} served at {self.base_url}? (--model NAME)"
        return f"{self.label} refused the request: {failure.text}{hint}"

    def _create(self, request: dict):
        """(response, Generation): the call with the shared retries and back-off."""
        openai = _import_openai()
        client = self._get_client()
        t_start = time.perf_counter_ns()
        response, attempts, api_ns = self.retry.call(
            lambda: client.chat.completions.create(**request), openai,
            who=f"{self.label} ({self.base_url})", refused=self._refused)
        wall_ns = time.perf_counter_ns() - t_start
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        usage = getattr(response, "usage", None)
        return response, Generation(
            text=getattr(message, "content", None) or "",
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            wall_ns=wall_ns,
            api_latency_ns=api_ns,
            compute_ns=0,
            model=getattr(response, "model", None) or self.model,
            attempts=attempts,
            seed_applied=True,   # sent; honoured as far as the server does (best effort)
        )


class GroqProvider(OpenAICompatProvider):
    name = "groq"
    backend = "groq"
    label = "Groq"
    key_env = "GROQ_API_KEY"

    def _default_base_url(self) -> str:
        return config.groq_base_url()

    def _default_model(self) -> str | None:
        return GROQ_DEFAULT_MODEL

    def _env_key(self) -> str | None:
        return config.groq_api_key()


class OllamaProvider(OpenAICompatProvider):
    name = "ollama"
    backend = "ollama"
    label = "Ollama"
    key_env = None

    def _default_base_url(self) -> str:
        return config.ollama_base_url()

    def _default_model(self) -> str | None:
        return None

    def _env_key(self) -> str | None:
        return None


# ------------------------------------------------------------------ the wire format

def tool_specs() -> list[dict]:
    """The tools as chat-completions functions (the same schemas every provider gets)."""
    return [{"type": "function",
             "function": {"name": name, "description": tools.TOOLS[name].description,
                          "parameters": schema}}
            for name, schema in tools.input_schemas().items()]


def parse_call(tool_call, index: int) -> ToolCall:
    """A `tool_calls` entry as a ToolCall; arguments that are not a JSON object, an
    unknown tool or bad fields make it malformed (answered with an error, never run)."""
    function = getattr(tool_call, "function", None)
    name = str(getattr(function, "name", "") or "")
    raw = getattr(function, "arguments", None)
    call_id = getattr(tool_call, "id", None) or f"call_{index}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError as exc:
        return ToolCall(name, raw, call_id, f"arguments are not valid JSON ({exc.msg})")
    if not isinstance(arguments, dict):
        return ToolCall(name, arguments, call_id, "arguments must be a JSON object")
    call = ToolCall(name, arguments, call_id)
    try:
        tools.check_call(name, arguments)
    except tools.ToolError as exc:
        call.malformed = str(exc)
    return call


def _with_system(system: str | None, messages: list[dict]) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + messages


def to_messages(conversation: list[Turn]) -> list[dict]:
    """Turns as chat messages: assistant calls as `tool_calls`, each result as a
    `role: tool` message answering its call's id."""
    messages: list[dict[str, Any]] = []
    for turn in conversation:
        if turn.role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if turn.calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name,
                                  "arguments": c.input if isinstance(c.input, str)
                                  else json.dumps(c.input)}}
                    for c in turn.calls]
            else:
                message["content"] = turn.text
            messages.append(message)
        elif turn.role == "tool":
            messages += [{"role": "tool", "tool_call_id": r.call.id, "content": r.output}
                         for r in turn.results]
        else:
            messages.append({"role": "user", "content": turn.text})
    return messages
