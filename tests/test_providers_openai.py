"""OpenAI-compatible providers (openai, groq, ollama, and `cloud` resolved to Groq) drive the
real openai SDK against a loopback chat-completions server: answers, native tool calls,
malformed calls, refusals, retries, give-up; keys checked before any SDK import."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("openai", reason="the openai extra (openai SDK) is not installed")

from openai_loopback import (OpenAILoopback, bearer, calls, ok, rate_limited,  # noqa: E402
                             refusal, server_error)

from alems.catalog.tasks import TaskItem  # noqa: E402
from alems.errors import AlemsError  # noqa: E402
from alems.experiment.providers import (GenerationSettings, ProviderError,  # noqa: E402
                                        get_provider, resolve_cloud)
from alems.experiment.providers.openai_compat import (NO_KEY,  # noqa: E402
                                                      OpenAICompatProvider, is_private_url)
from alems.experiment.providers.retry import RetryPolicy  # noqa: E402
from alems.experiment.workflows import run_agentic, run_react  # noqa: E402

SETTINGS = GenerationSettings(max_tokens=64, temperature=0.3, seed=7)
QUESTION = TaskItem("q1", "A crate holds 24 bottles. How many bottles are in 17 crates "
                    "after 5 break?", "403", "number")
KEY_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GROQ_API_KEY", "ANTHROPIC_API_KEY",
            "ALEMS_GROQ_BASE_URL", "ALEMS_OLLAMA_BASE_URL", "ALEMS_CLOUD_MODEL")


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


class SleepRecorder:
    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(server, **kw) -> tuple[OpenAICompatProvider, SleepRecorder]:
    sleeper = SleepRecorder()
    options = dict(base_url=server.base_url, model="loopback-model", backoff_base_s=0.25,
                   backoff_max_s=2.0, max_attempts=3, timeout_s=10.0, sleep=sleeper,
                   jitter=0.0)
    options.update(kw)
    return OpenAICompatProvider(**options), sleeper


def test_plain_answer_tokens_latency_model_and_settings_sent():
    with OpenAILoopback([ok("The answer is 4.\nAnswer: 4", 31, 9, model="served-m")]) as server:
        provider, sleeper = make(server)
        provider.check()
        gen = provider.generate("What is 2+2?", SETTINGS, system="Be brief.")
    assert gen.text == "The answer is 4.\nAnswer: 4"
    assert (gen.prompt_tokens, gen.completion_tokens) == (31, 9)
    assert gen.api_latency_ns > 0 and gen.compute_ns == 0 and gen.wall_ns >= gen.api_latency_ns
    assert gen.model == "served-m"          # the model the server says answered
    assert gen.attempts == 1 and sleeper.delays == []
    (req,) = server.requests
    assert bearer(req["headers"]) == NO_KEY   # loopback: no key needed, a placeholder sent
    body = req["body"]
    assert body["model"] == "loopback-model"
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (64, 0.3, 7)
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "What is 2+2?"}]


def test_agentic_plan_is_native_tool_calls_and_results_go_back_as_tool_messages():
    plan = calls(("calculator", {"expression": "24 * 17 - 5"}),
                 ("lookup", {"table": "elements", "key": "Iron", "column": "symbol"}),
                 text="I will compute it.")
    with OpenAILoopback([plan, ok("There are 403 bottles.\nAnswer: 403")]) as server:
        provider, _ = make(server)
        result = run_agentic(provider, QUESTION, SETTINGS, None, max_steps=5, max_tool_calls=5)
    assert result.answer == "There are 403 bottles.\nAnswer: 403"
    assert (result.llm_calls, result.tool_calls, result.malformed_tool_calls) == (2, 2, 0)
    first, second = (r["body"] for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["calculator", "lookup"]
    assert first["tools"][1]["function"]["parameters"]["properties"]["table"]["enum"] == \
        ["countries", "elements", "inventory"]
    assert first["tool_choice"] == "auto" and "parallel_tool_calls" not in first
    assert second["tool_choice"] == "none"
    assistant = second["messages"][2]
    assert assistant["content"] == "I will compute it."
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == \
        {"expression": "24 * 17 - 5"}
    tool_msgs = [m for m in second["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs] == \
        [(ids[0], "403"), (ids[1], "Fe")]
    assert second["messages"][-1]["role"] == "user"   # the synthesis instruction follows


def test_malformed_tool_calls_are_answered_with_errors_and_counted():
    plan = calls(("calculator", '{"expression": "2+2"'),          # arguments not JSON
                 ("web_search", {"query": "bottles"}),             # unknown tool
                 ("calculator", {"expr": "2+2"}),                  # wrong field
                 ("calculator", "[1, 2]"))                         # not an object
    with OpenAILoopback([plan, ok("Answer: 4")]) as server:
        provider, _ = make(server)
        result = run_agentic(provider, QUESTION, SETTINGS, None)
    assert (result.malformed_tool_calls, result.tool_calls) == (4, 0)
    tool_msgs = [m for m in server.requests[1]["body"]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 4 and all(m["content"].startswith("error: malformed")
                                       for m in tool_msgs)
    assert "not valid JSON" in tool_msgs[0]["content"]
    assert "unknown tool 'web_search'" in tool_msgs[1]["content"]
    assert "missing expression" in tool_msgs[2]["content"]
    assert "JSON object" in tool_msgs[3]["content"]
    # the call that did not parse goes back to the server exactly as it came
    sent = server.requests[1]["body"]["messages"][2]["tool_calls"][0]["function"]
    assert sent["arguments"] == '{"expression": "2+2"'


def test_react_one_call_per_step_and_refusal_recorded():
    with OpenAILoopback([calls(("calculator", {"expression": "24 * 17 - 5"}), text="Mult."),
                         ok("There are 403 bottles left.")]) as server:
        provider, _ = make(server)
        result = run_react(provider, QUESTION, SETTINGS, None, max_steps=4, max_tool_calls=2)
        server.push(refusal("I can't continue with this."))
        refused = run_agentic(provider, QUESTION, SETTINGS, None)
    assert result.answer == "There are 403 bottles left." and result.tool_calls == 1
    first = server.requests[0]["body"]
    assert first["tool_choice"] == "auto" and first["parallel_tool_calls"] is False
    assert refused.llm_calls == 1 and refused.answer == "I can't continue with this."
    assert any(e["event"] == "refusal" for e in refused.trace)


def test_rate_limit_then_success_honours_retry_after():
    with OpenAILoopback([rate_limited("1"), ok("fine", 5, 2)]) as server:
        provider, sleeper = make(server)
        gen = provider.generate("hi", SETTINGS)
    assert (gen.text, gen.attempts, len(server.requests)) == ("fine", 2, 2)
    assert sleeper.delays == [1.0]


def test_server_error_until_give_up_is_a_provider_error_with_backoff():
    with OpenAILoopback(default=server_error()) as server:
        provider, sleeper = make(server, max_attempts=3)
        with pytest.raises(ProviderError) as info:
            provider.generate("hi", SETTINGS)
    assert info.value.attempts == 3 and info.value.status_code == 500
    assert "after 3 attempt(s)" in str(info.value) and "HTTP 500" in str(info.value)
    assert len(server.requests) == 3 and sleeper.delays == [0.25, 0.5]
    assert "\n" not in str(info.value)


def test_backoff_jitter_stays_within_its_fraction():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0, jitter=0.5,
                         rng=random.Random(3))
    waits = [policy.backoff_s(n) for n in (1, 2, 3, 4, 5)]
    for wait, full in zip(waits, (1, 2, 4, 8, 8), strict=True):
        assert full * 0.5 <= wait <= full
    fractions = {round(w / f, 6) for w, f in zip(waits, (1, 2, 4, 8, 8), strict=True)}
    assert len(fractions) > 1   # random, not a constant factor
    assert policy.backoff_s(1, {"retry-after": "3"}) == 3.0   # the server's wait, unjittered


def test_unauthorised_is_not_retried_and_names_the_key(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "bad")
    with OpenAILoopback([]) as server:
        server.default = type(server.default)(401, message="Invalid API Key")
        monkeypatch.setenv("ALEMS_GROQ_BASE_URL", server.base_url)
        provider = get_provider("groq")
        with pytest.raises(ProviderError, match="GROQ_API_KEY") as info:
            provider.generate("hi", SETTINGS)
    assert info.value.attempts == 1 and len(server.requests) == 1
    assert bearer(server.requests[0]["headers"]) == "bad"


def test_model_asked_of_a_server_that_serves_one_and_refused_when_several():
    with OpenAILoopback([ok("x")], models=("only-one",)) as server:
        provider, _ = make(server, model=None)
        provider.check()
        assert provider.model == "only-one" and server.model_lists == 1
        assert provider.generate("hi", SETTINGS).model == "only-one"
    with OpenAILoopback(models=("a", "b")) as server:
        provider, _ = make(server, model=None)
        with pytest.raises(AlemsError, match=r"serves 2 \(a, b\); pass --model NAME"):
            provider.check()


def test_keys_where_needed_and_placeholders_where_not(monkeypatch):
    with pytest.raises(AlemsError, match="OPENAI_API_KEY is not set"):
        get_provider("openai", base_url="https://api.example.com/v1").check_key()
    with pytest.raises(AlemsError, match="GROQ_API_KEY is not set"):
        get_provider("groq").check_key()
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:1/v1", "http://10.1.2.3/v1",
                "http://192.168.0.9:11434/v1", "http://[::1]:8000/v1"):
        assert is_private_url(url) and get_provider("openai", base_url=url).api_key == NO_KEY
    assert not is_private_url("http://8.8.8.8/v1") and not is_private_url("https://groq.com")
    ollama = get_provider("ollama")
    assert ollama.base_url == "http://127.0.0.1:11434/v1" and ollama.api_key == NO_KEY
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    assert get_provider("openai", base_url="http://127.0.0.1:1/v1").api_key == "sk-real"
    assert get_provider("openai").base_url == "https://api.openai.com/v1"


def test_cloud_is_anthropic_when_its_key_is_set_else_groq_with_groq_key(monkeypatch):
    assert resolve_cloud()[0] == "anthropic"
    with pytest.raises(AlemsError, match="ANTHROPIC_API_KEY is not set.*GROQ_API_KEY"):
        get_provider("cloud").check_key()
    monkeypatch.setenv("GROQ_API_KEY", "gk")
    cloud = get_provider("cloud", model=None)
    assert (cloud.name, cloud.backend, cloud.model) == ("cloud", "groq", "llama-3.1-8b-instant")
    assert "GROQ_API_KEY is set and ANTHROPIC_API_KEY is not" in cloud.resolved_why
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak")
    assert get_provider("cloud").backend == "anthropic"
    assert get_provider("groq").name == "groq"


@pytest.mark.parametrize("name,key", [("groq", "GROQ_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                      ("cloud", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")])
def test_check_names_the_missing_key_before_importing_any_sdk(monkeypatch, name, key):
    from import_guard import refuse_imports

    guard = refuse_imports(monkeypatch, "openai", "anthropic")
    provider = get_provider(name)
    with pytest.raises(AlemsError, match=f"{key} is not set"):
        provider.check()
    assert guard.tried == []


def test_unknown_provider_lists_the_api_providers():
    with pytest.raises(AlemsError, match="choose one of: local, cloud, anthropic, groq, "
                                         "openai, ollama$"):
        get_provider("gpt")


# ------------------------------------------------------------------ alems doctor

def test_doctor_asks_local_servers_and_leaves_remote_apis_alone(monkeypatch, tmp_path):
    from alems.cli.doctor_providers import providers_section

    from inproc import alems_inproc

    free = OpenAILoopback().start()
    dead_url = free.base_url
    free.stop()                               # nothing listens there any more
    monkeypatch.setenv("ALEMS_OLLAMA_BASE_URL", dead_url)
    monkeypatch.setenv("GROQ_API_KEY", "gk")   # default URL: remote, must not be contacted
    with OpenAILoopback(models=("m1", "m2")) as server:
        entries = {e["name"]: e for e in providers_section(server.base_url)}
        assert server.model_lists == 1
        proc = alems_inproc("doctor", "--json", "--base-url", server.base_url, cwd=tmp_path)
        assert server.model_lists == 2
    assert entries["openai"]["ok"] and entries["openai"]["answers"] is True
    assert entries["openai"]["detail"] == "serves 2 model(s): m1, m2"
    assert entries["openai"]["key"] == "not needed"
    assert entries["ollama"]["ok"] is False and "does not answer" in entries["ollama"]["detail"]
    assert entries["groq"]["ok"] and entries["groq"]["answers"] is None
    assert "not contacted" in entries["groq"]["detail"]
    assert entries["cloud"]["target"].startswith("Groq at https://api.groq.com/openai/v1")
    assert entries["anthropic"]["ok"] is False and entries["anthropic"]["key"] == "missing"
    assert proc.returncode == 0, proc.stderr
    listed = {e["name"]: e for e in json.loads(proc.stdout)["providers"]}
    assert listed["openai"]["detail"] == "serves 2 model(s): m1, m2"
