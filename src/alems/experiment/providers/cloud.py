"""The cloud provider: the anthropic SDK on the Messages API.

Retries are ours (the SDK's own are switched off) so that attempts are counted and the
back-off is configurable: rate limits (429), overload (529), server errors (5xx), request
timeouts (408), conflicts (409) and connection failures are retried with exponential
back-off, honouring `retry-after` / `retry-after-ms`; after `max_attempts` the call fails
with ProviderError, which the batch runner records as a failed run.

The Messages API takes no seed: every Generation says `seed_applied=False`.
`converse()` uses the API's native tool use with the same tools as every provider.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from alems import config
from alems.errors import AlemsError
from alems.experiment import tools
from alems.experiment.providers import (
    Generation, GenerationSettings, ProviderError, Reply, ToolCall, Turn)

DEFAULT_MODEL = "claude-haiku-4-5"
_CLOUD_EXTRA_HINT = "install the cloud extra: pip install 'alems[cloud]'"
_RETRY_STATUS = frozenset({408, 409, 429})
# A retry-after longer than this is not waited out: the call fails instead.
MAX_RETRY_AFTER_S = 120.0


def _import_anthropic():
    try:
        import anthropic
    except ImportError as exc:
        raise AlemsError(f"the anthropic SDK is not importable ({exc}); "
                         f"{_CLOUD_EXTRA_HINT}") from exc
    return anthropic


def retry_after_s(headers) -> float | None:
    """Seconds the server asked us to wait, from retry-after-ms or retry-after (seconds)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # an HTTP-date: fall back to our own back-off
        if value >= 0:
            return value
    return None


class CloudProvider:
    name = "cloud"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        timeout_s: float = 120.0,
        send_temperature: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.model = model or config.cloud_model() or DEFAULT_MODEL
        self.api_key = api_key or config.anthropic_api_key()
        self.base_url = base_url or config.anthropic_base_url()
        if int(max_attempts) < 1:
            raise AlemsError(f"max_attempts must be at least 1, got {max_attempts!r}")
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise AlemsError("back-off times must not be negative")
        self.max_attempts = int(max_attempts)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.timeout_s = float(timeout_s)
        self.send_temperature = bool(send_temperature)
        self._sleep = sleep
        self._client = None

    def check(self) -> None:
        """SDK importable and a key present; no request is made."""
        _import_anthropic()
        if not self.api_key:
            raise AlemsError(
                "ANTHROPIC_API_KEY is not set; export ANTHROPIC_API_KEY=... to use the cloud "
                "provider"
            )

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
        """Wait before attempt `attempt + 1`: the server's retry-after if given, else
        base × 2^(attempt − 1), capped at backoff_max_s."""
        asked = retry_after_s(headers)
        if asked is not None:
            return asked
        return min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))

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

    def _create(self, request: dict):
        """(response, Generation): the call with our retries and back-off."""
        anthropic = _import_anthropic()
        client = self._get_client()
        t_start = time.perf_counter_ns()
        api_ns = 0
        attempt = 0
        while True:
            attempt += 1
            t0 = time.perf_counter_ns()
            try:
                response = client.messages.create(**request)
                api_ns += time.perf_counter_ns() - t0
                break
            except anthropic.APIStatusError as exc:
                api_ns += time.perf_counter_ns() - t0
                status = exc.status_code
                retryable = status in _RETRY_STATUS or status >= 500
                detail = _error_message(exc)
                if not retryable:
                    hint = {401: "; check ANTHROPIC_API_KEY",
                            403: "; check ANTHROPIC_API_KEY"}.get(status, "")
                    if status == 400 and self.send_temperature and "temperature" in detail:
                        hint = ("; this model may not take a temperature: "
                                "pass send_temperature=False")
                    raise ProviderError(
                        f"cloud API refused the request: HTTP {status} {detail}{hint}",
                        attempts=attempt,
                        status_code=status,
                    ) from exc
                headers = exc.response.headers if exc.response is not None else None
                failure = f"HTTP {status} {detail}"
            except anthropic.APIConnectionError as exc:
                api_ns += time.perf_counter_ns() - t0
                status, headers = None, None
                failure = f"connection failed ({' '.join(str(exc).split())})"
            if attempt >= self.max_attempts:
                raise ProviderError(
                    f"cloud API call failed after {attempt} attempt(s): {failure}; "
                    "try again later or raise max_attempts",
                    attempts=attempt,
                    status_code=status,
                )
            delay = self.backoff_s(attempt, headers)
            if delay > MAX_RETRY_AFTER_S:
                raise ProviderError(
                    f"cloud API asked to wait {delay:.0f} s after {failure}; try again later",
                    attempts=attempt,
                    status_code=status,
                )
            self._sleep(delay)
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


def _error_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return " ".join(str(getattr(exc, "message", "") or exc).split())
