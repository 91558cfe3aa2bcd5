"""The custom-arm protocol on the cloud provider: the worked example arm drives the real
anthropic SDK against a loopback Messages API (native tool use for its plan, plain calls
for its draft and critique), with tokens counted as for the built-in arms."""

from __future__ import annotations

import pytest

pytest.importorskip("anthropic", reason="the cloud extra (anthropic SDK) is not installed")

from anthropic_loopback import LoopbackServer, calls, ok  # noqa: E402

from alems.catalog.tasks import TaskItem  # noqa: E402
from alems.experiment.providers import GenerationSettings  # noqa: E402
from alems.experiment.providers.cloud import CloudProvider  # noqa: E402
from alems.experiment.workflows import run_workflow  # noqa: E402

from test_batch import REPO  # noqa: E402

ITEM = TaskItem(id="q1", prompt="A crate holds 24 bottles. How many in 17 crates after 5 break?",
                answer="403", answer_type="number")


def test_example_arm_on_the_cloud_provider(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    script = [calls(("calculator", {"expression": "24 * 17 - 5"}), input_tokens=50,
                    output_tokens=10),
              ok("403 bottles.\nAnswer: 403", input_tokens=30, output_tokens=5),
              ok("OK", input_tokens=40, output_tokens=1)]
    with LoopbackServer(script) as server:
        provider = CloudProvider(api_key="sk-test-loopback", base_url=server.url,
                                 max_attempts=1, timeout_s=10.0)
        result = run_workflow("examples.plan_execute_critique:agent", provider, ITEM,
                              GenerationSettings(max_tokens=64), None, max_tool_calls=3)
    assert result.answer == "403 bottles.\nAnswer: 403"
    assert (result.llm_calls, result.tool_calls) == (3, 1)
    assert (result.prompt_tokens, result.completion_tokens) == (120, 16)
    plan, draft, critique = (r["body"] for r in server.requests)
    assert [t["name"] for t in plan["tools"]] == ["calculator", "lookup"]
    assert plan["tool_choice"]["type"] == "auto", "tools=True is the plan mode: calls allowed"
    assert "tools" not in draft and "tools" not in critique
    assert "24 * 17 - 5" in draft["messages"][-1]["content"] and "-> 403" in \
        draft["messages"][-1]["content"]
    assert result.api_latency_ns > 0


def test_tools_true_returns_at_most_max_calls(monkeypatch):
    from alems.experiment.workflows.base import Limits, NullSampler, Tally
    from alems.experiment.workflows.context import ModelClient, _Guard

    three = calls(*[("calculator", {"expression": f"{i} + 1"}) for i in range(3)])
    with LoopbackServer([three]) as server:
        provider = CloudProvider(api_key="sk-test-loopback", base_url=server.url,
                                 max_attempts=1, timeout_s=10.0)
        tally = Tally()
        reply = ModelClient(provider, GenerationSettings(max_tokens=64), NullSampler(), tally,
                            _Guard(), Limits()).complete("q?", tools=True, max_calls=2)
    assert [c.input["expression"] for c in reply.tool_calls] == ["0 + 1", "1 + 1"]
    assert [t["call"]["input"] for t in tally.trace if t["event"] == "dropped"] == [
        {"expression": "2 + 1"}]
