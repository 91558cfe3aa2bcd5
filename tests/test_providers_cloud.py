"""The cloud provider drives the real anthropic SDK against a loopback Messages API."""

from __future__ import annotations

import pytest

pytest.importorskip("anthropic", reason="the cloud extra (anthropic SDK) is not installed")

from anthropic_loopback import (  # noqa: E402
    LoopbackServer,
    auth_error,
    calls,
    refusal,
    tool_use,
    ok,
    overloaded,
    rate_limited,
    sent_api_key,
    server_error,
)

from alems.errors import AlemsError  # noqa: E402
from alems.experiment.providers import Generation, GenerationSettings, ProviderError, get_provider  # noqa: E402
from alems.experiment.providers.cloud import CloudProvider, retry_after_s  # noqa: E402

SETTINGS = GenerationSettings(max_tokens=64, temperature=0.3, seed=7)


class SleepRecorder:
    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(server, **kw) -> tuple[CloudProvider, SleepRecorder]:
    sleeper = SleepRecorder()
    options = dict(api_key="sk-test-loopback", base_url=server.url, backoff_base_s=0.25,
                   backoff_max_s=2.0, max_attempts=3, timeout_s=10.0, sleep=sleeper,
                   jitter=0.0)  # exact delays; the jitter has its own test (test_retry)
    options.update(kw)
    return CloudProvider(**options), sleeper


def test_success_counts_tokens_and_latency_and_sends_settings():
    with LoopbackServer([ok("The answer is 4.\nAnswer: 4", input_tokens=31, output_tokens=9)]) as server:
        provider, sleeper = make(server, model="claude-test-model")
        provider.check()
        gen = provider.generate("What is 2+2?", SETTINGS, system="Be brief.")
    assert isinstance(gen, Generation)
    assert gen.text == "The answer is 4.\nAnswer: 4"
    assert (gen.prompt_tokens, gen.completion_tokens) == (31, 9)
    assert gen.api_latency_ns > 0 and gen.compute_ns == 0
    assert gen.wall_ns >= gen.api_latency_ns
    assert gen.attempts == 1 and gen.seed_applied is False
    assert gen.model == "claude-test-model"
    assert sleeper.delays == []
    (req,) = server.requests
    assert sent_api_key(req["headers"]) == "sk-test-loopback"
    body = req["body"]
    assert body["model"] == "claude-test-model"
    assert body["max_tokens"] == 64 and body["temperature"] == 0.3
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert "seed" not in body  # the Messages API takes none; Generation records that


def test_rate_limit_is_retried_honouring_retry_after():
    with LoopbackServer([rate_limited(retry_after="1"), ok("fine", 5, 2)]) as server:
        provider, sleeper = make(server)
        gen = provider.generate("hi", SETTINGS)
    assert gen.text == "fine"
    assert gen.attempts == 2
    assert len(server.requests) == 2
    assert sleeper.delays == [1.0]  # the server's retry-after, not our back-off
    assert (gen.prompt_tokens, gen.completion_tokens) == (5, 2)


def test_overload_without_retry_after_uses_exponential_backoff():
    with LoopbackServer([overloaded(), server_error(), ok("done")]) as server:
        provider, sleeper = make(server, max_attempts=4)
        gen = provider.generate("hi", SETTINGS)
    assert gen.attempts == 3 and gen.text == "done"
    assert sleeper.delays == [0.25, 0.5]


def test_persistent_server_error_becomes_provider_error_after_n_attempts():
    with LoopbackServer(default=server_error()) as server:
        provider, sleeper = make(server, max_attempts=3)
        with pytest.raises(ProviderError) as info:
            provider.generate("hi", SETTINGS)
    err = info.value
    assert isinstance(err, AlemsError)
    assert err.attempts == 3 and err.status_code == 500
    assert "after 3 attempt(s)" in str(err) and "HTTP 500" in str(err)
    assert len(server.requests) == 3
    assert sleeper.delays == [0.25, 0.5]
    assert "\n" not in str(err)


def test_authentication_error_is_not_retried():
    with LoopbackServer([auth_error()]) as server:
        provider, sleeper = make(server)
        with pytest.raises(ProviderError) as info:
            provider.generate("hi", SETTINGS)
    assert info.value.status_code == 401 and info.value.attempts == 1
    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert len(server.requests) == 1 and sleeper.delays == []


def test_missing_key_is_one_clear_line_before_any_request(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)   # else `cloud` is Groq
    with LoopbackServer() as server:
        provider = get_provider("cloud", base_url=server.url)
        with pytest.raises(AlemsError, match="ANTHROPIC_API_KEY is not set") as info:
            provider.check()
        with pytest.raises(AlemsError, match="ANTHROPIC_API_KEY is not set"):
            provider.generate("hi", SETTINGS)
    assert "\n" not in str(info.value)
    assert server.requests == []


def test_key_and_base_url_from_environment(monkeypatch):
    with LoopbackServer([ok("env ok")]) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        provider = get_provider("cloud", model=None)
        provider.check()
        assert provider.generate("hi", SETTINGS).text == "env ok"
    assert sent_api_key(server.requests[0]["headers"]) == "sk-from-env"


def test_connection_refused_is_retried_then_reported():
    server = LoopbackServer().start()
    url = server.url
    server.stop()  # nothing listens on the port any more
    provider = CloudProvider(api_key="k", base_url=url, max_attempts=2, backoff_base_s=0.0,
                             timeout_s=2.0, sleep=lambda s: None)
    with pytest.raises(ProviderError, match="after 2 attempt"):
        provider.generate("hi", SETTINGS)


def test_retry_after_parsing():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None


def test_unknown_provider_and_unknown_option_are_clear():
    with pytest.raises(AlemsError, match=r"unknown provider .gpt.; choose one of: local, cloud, "):
        get_provider("gpt")
    with pytest.raises(AlemsError, match="does not take option.*n_ctx"):
        get_provider("cloud", n_ctx=512)


# ------------------------------------------------------------------ native tool use

from alems.catalog.tasks import TaskItem  # noqa: E402
from alems.experiment.workflows import run_agentic, run_react  # noqa: E402

QUESTION = TaskItem("q1", "A crate holds 24 bottles. How many bottles are in 17 crates after 5 break?",
                    "403", "number")


def test_agentic_plan_is_native_tool_use_and_results_go_back_as_tool_result_blocks():
    plan = calls(("calculator", {"expression": "24 * 17 - 5"}),
                 ("lookup", {"table": "elements", "key": "Iron", "column": "symbol"}),
                 text="I will compute it.")
    with LoopbackServer([plan, ok("There are 403 bottles.\nAnswer: 403")]) as server:
        provider, _ = make(server)
        result = run_agentic(provider, QUESTION, SETTINGS, None, max_steps=5, max_tool_calls=5)
    assert result.answer == "There are 403 bottles.\nAnswer: 403"
    assert (result.llm_calls, result.tool_calls, result.malformed_tool_calls) == (2, 2, 0)
    assert result.plan_fallback is False
    first, second = (r["body"] for r in server.requests)
    assert [t["name"] for t in first["tools"]] == ["calculator", "lookup"]
    assert first["tools"][1]["input_schema"]["properties"]["table"]["enum"] == ["countries", "elements", "inventory"]
    assert first["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": False}
    assert second["tool_choice"] == {"type": "none"}
    assistant, user = second["messages"][1:]
    uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert assistant["content"][0] == {"type": "text", "text": "I will compute it."}
    results = [b for b in user["content"] if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
    assert [(r["content"], r["is_error"]) for r in results] == [("403", False), ("Fe", False)]
    assert user["content"][-1]["type"] == "text"  # the synthesis instruction follows the results


def test_malformed_tool_calls_are_answered_with_errors_and_counted():
    plan = calls(("calculator", {"expr": "2+2"}), ("web_search", {"query": "bottles"}),
                 ("calculator", {"expression": "2 +* 2"}))
    with LoopbackServer([plan, ok("Answer: 4")]) as server:
        provider, _ = make(server)
        result = run_agentic(provider, QUESTION, SETTINGS, None)
    assert (result.malformed_tool_calls, result.tool_calls) == (3, 0)
    results = [b for b in server.requests[1]["body"]["messages"][2]["content"] if b["type"] == "tool_result"]
    assert len(results) == 3 and all(r["is_error"] for r in results)
    assert "missing expression" in results[0]["content"] and "unknown expr" in results[0]["content"]
    assert "unknown tool 'web_search'" in results[1]["content"]
    assert "cannot parse" in results[2]["content"]
    tools_run = [e for e in result.trace if e["event"] == "tool"]
    assert [e["malformed"] for e in tools_run] == [True, True, True]


def test_refusal_ends_the_run_without_further_calls():
    with LoopbackServer([refusal()]) as server:
        provider, _ = make(server)
        result = run_agentic(provider, QUESTION, SETTINGS, None)
        server.push(tool_use("calculator", {"expression": "24 * 17"}, text="First the crates."),
                    refusal("I can't continue with this."))
        react = run_react(provider, QUESTION, SETTINGS, None)
    assert len(server.requests) == 3
    assert result.answer == "" and result.llm_calls == 1 and result.plan_fallback is False
    assert any(e["event"] == "refusal" for e in result.trace)
    assert react.answer == "I can't continue with this." and react.tool_calls == 1
    assert any(e["event"] == "refusal" for e in react.trace)


def test_react_loop_one_call_per_step_then_answer():
    with LoopbackServer([tool_use("calculator", {"expression": "24 * 17 - 5"}, text="Multiply, subtract."),
                         ok("There are 403 bottles left.")]) as server:
        provider, _ = make(server)
        result = run_react(provider, QUESTION, SETTINGS, None, max_steps=4, max_tool_calls=2)
    assert result.answer == "There are 403 bottles left."
    assert (result.llm_calls, result.tool_calls) == (2, 1)
    first, second = (r["body"] for r in server.requests)
    assert first["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    (res,) = [b for b in second["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert res["content"] == "403" and res["is_error"] is False
    step = next(e for e in result.trace if e["event"] == "step")
    assert step["thought"] == "Multiply, subtract."


def test_react_last_step_is_asked_for_an_answer_without_tools():
    with LoopbackServer([tool_use("calculator", {"expression": "24 * 17"}),
                         ok("Answer: 403")]) as server:
        provider, _ = make(server)
        result = run_react(provider, QUESTION, SETTINGS, None, max_steps=2)
    assert result.answer == "Answer: 403"
    assert server.requests[1]["body"]["tool_choice"] == {"type": "none"}
