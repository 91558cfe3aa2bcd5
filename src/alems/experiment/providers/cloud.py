"""The Anthropic provider: the anthropic SDK on the Messages API (`--providers anthropic`,
and `cloud` when ANTHROPIC_API_KEY is set; see `alems.experiment.providers.resolve_cloud`).

Retries follow the one policy of `alems.experiment.providers.retry` (the SDK's own are
switched off so that attempts are counted). The key is checked before the SDK is imported:
a missing key fails at once, not after the SDK's seconds-long import.

The Messages API takes no seed: every Generation says `seed_applied=False`.
`converse()` uses the API's native tool use with the same tools as every provider.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from alems import config
from alems.errors import AlemsError
from alems.experiment import tools
from alems.experiment.providers import (
    Generation, GenerationSettings, Reply, ToolCall, Turn)
from alems.experiment.providers.retry import RetryPolicy, retry_after_s

__all__ = ["CloudProvider", "DEFAULT_MODEL", "retry_after_s", "to_messages"]

DEFAULT_MODEL = "claude-haiku-4-5"
_CLOUD_EXTRA_HINT = "install the cloud extra: pip install 'alems[cloud]'"
MISSING_KEY = ("ANTHROPIC_API_KEY is not set; export ANTHROPIC_API_KEY=... to use Anthropic "
               "(or GROQ_API_KEY=... for Groq, --providers groq)")


def _import_anthropic():
    try:
        import anthropic
    except ImportError as exc:
        raise AlemsError(f"the anthropic SDK is not importable ({exc}); "
                         f"{_CLOUD_EXTRA_HINT}") from exc
    return anthropic


class CloudProvider:
    name = "cloud"
    backend = "anthropic"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        send_temperature: bool = True,
        **retry_options: Any,   # RetryPolicy's (max_attempts, backoff…, sleep): its defaults
    ):
        self.model = model or config.cloud_model() or DEFAULT_MODEL
        self.api_key = api_key or config.anthropic_api_key()
        self.base_url = base_url or config.anthropic_base_url()
        self.retry = RetryPolicy(**retry_options)
        self.max_attempts = self.retry.max_attempts
        self.timeout_s = float(timeout_s)
        self.send_temperature = bool(send_temperature)
        self._client = None

    def describe(self) -> str:
        """One line: what this provider talks to (said at batch start, in doctor)."""
        return f"Anthropic at {self.base_url or 'https://api.anthropic.com'}, model {self.model}"

    def check_key(self) -> None:
        """A key is present; imports nothing, requests nothing (milliseconds)."""
        if not self.api_key:
            raise AlemsError(MISSING_KEY)

    def check(self) -> None:
        """A key present, then the SDK importable; no request is made."""
        self.check_key()
        _import_anthropic()

    def _get_client(self):
        if self._client is None:
            self.check()
            anthropic = _import_anthropic()
            self._client = anthropic.Anthropic(
                api_key=self.api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout_s,
            )
        return self._client

    def backoff_s(self, attempt: int, headers=None) -> float:
        return self.retry.backoff_s(attempt, headers)

    def generate(
        self, prompt: str, settings: GenerationSettings, *, system: str | None = None
    ) -> Generation:
        request = self._request(settings, system, [{"role": "user", "content": prompt}])
        response, gen = self._create(request)
        return gen

    def converse(self, conversation: list[Turn], settings: GenerationSettings, *,
                 system: str | None = None, mode: str = "answer", max_calls: int = 1) -> Reply:
        """Native tool use: the tools go as `tools`, calls come back as tool_use blocks and
        results go back as tool_result blocks. plan: any number of calls (the workflow
        enforces max_calls); step: at most one call (parallel tool use off); answer: none."""
        request = self._request(settings, system, to_messages(conversation))
        request["tools"] = [{"name": name, "description": tools.TOOLS[name].description,
                             "input_schema": schema}
                            for name, schema in tools.input_schemas().items()]
        request["tool_choice"] = (
            {"type": "none"} if mode == "answer"
            else {"type": "auto", "disable_parallel_tool_use": mode == "step"})
        response, gen = self._create(request)
        calls = []
        for block in response.content:
            if getattr(block, "type", "") == "tool_use":
                call = ToolCall(block.name, block.input, block.id)
                try:
                    tools.check_call(call.name, call.input)
                except tools.ToolError as exc:
                    call.malformed = str(exc)
                calls.append(call)
        stop = getattr(response, "stop_reason", None)
        answer = gen.text if mode == "answer" or (mode == "step" and not calls) else None
        return Reply(gen, text=gen.text, calls=calls, answer=answer,
                     truncated=stop == "max_tokens", refusal=stop == "refusal")

    def _request(self, settings: GenerationSettings, system: str | None, messages: list) -> dict:
        request = {"model": self.model, "max_tokens": settings.max_tokens, "messages": messages}
        if system:
            request["system"] = system
        if self.send_temperature:
            # Newer SDKs have no `temperature` parameter; the field still goes in the body.
            if _create_takes(self._get_client(), "temperature"):
                request["temperature"] = settings.temperature
            else:
                request["extra_body"] = {"temperature": settings.temperature}
        return request

    def _refused(self, failure) -> str:
        hint = {401: "; check ANTHROPIC_API_KEY", 403: "; check ANTHROPIC_API_KEY"}.get(
            failure.status or 0, "")
        if failure.status == 400 and self.send_temperature and "temperature" in failure.detail:
            hint = "; this model may not take a temperature: pass send_temperature=False"
        return f"cloud API refused the request: {failure.text}{hint}"

    def _create(self, request: dict):
        """(response, Generation): the call with the shared retries and back-off."""
        anthropic = _import_anthropic()
        client = self._get_client()
        t_start = time.perf_counter_ns()
        response, attempt, api_ns = self.retry.call(
            lambda: client.messages.create(**request), anthropic, who="cloud API",
            refused=self._refused)
        wall_ns = time.perf_counter_ns() - t_start
        text = "".join(
            getattr(block, "text", "") for block in response.content
            if getattr(block, "type", "") == "text"
        )
        usage = getattr(response, "usage", None)
        return response, Generation(
            text=text,
            prompt_tokens=getattr(usage, "input_tokens", None),
            completion_tokens=getattr(usage, "output_tokens", None),
            wall_ns=wall_ns,
            api_latency_ns=api_ns,
            compute_ns=0,
            model=getattr(response, "model", None) or self.model,
            attempts=attempt,
            seed_applied=False,
        )


def to_messages(conversation: list[Turn]) -> list[dict]:
    """Turns as Messages API messages: assistant calls as tool_use blocks, results as
    tool_result blocks; a user text after results joins their message (roles alternate)."""
    messages: list[dict] = []
    for turn in conversation:
        blocks: list[dict[str, Any]]
        if turn.role == "assistant":
            blocks = [{"type": "text", "text": turn.text}] if turn.text else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                        "input": c.input if isinstance(c.input, dict) else {}} for c in turn.calls]
            messages.append({"role": "assistant", "content": blocks})
            continue
        if turn.role == "tool":
            blocks = [{"type": "tool_result", "tool_use_id": r.call.id, "content": r.output,
                       "is_error": r.is_error} for r in turn.results]
        else:
            blocks = [{"type": "text", "text": turn.text}]
        if messages and messages[-1]["role"] == "user":
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": "user", "content": blocks})
    return messages


def _create_takes(client, name: str) -> bool:
    try:
        return name in inspect.signature(client.messages.create).parameters
    except (TypeError, ValueError):
        return False
