"""Custom arms (issue 21, docs/AGENTS.md): `--workflows linear,module:callable` runs your
agent as an arm beside the built-in ones — paired, counterbalanced, its model and tool
calls and marks as phases, its tax on the closing lines — and each way an arm can be bad
fails clearly: refused up front (not importable, wrong signature), or its run recorded as
failed with the batch going on (raises, returns a non-string, never returns)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter

import pytest

from alems.cli.progress import format_summary
from alems.errors import AlemsError
from alems.experiment.workflows.context import ArmCancelled
from alems.experiment.workflows.custom import load_arm

import _arms
from inproc import alems_inproc
from waiting import wait_until
from test_batch import all_runs, assert_store_consistent, env_for, make_runner

GOOD = "_arms:good"


def _run(tmp_path, workflows, **kw):
    runner = make_runner(tmp_path, workflows=workflows, **kw)
    lines: list[str] = []
    runner.log = lines.append
    return runner, lines


def _phases(db_path, run_id):
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT seq, name, kind, parent_seq, energy_uj, detail_json FROM phases "
                        "WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    conn.close()
    return rows


def test_custom_arm_runs_paired_counterbalanced_with_phases_and_tax(tmp_path):
    runner, _ = _run(tmp_path, ["linear", "agentic", GOOD], repetitions=3)
    summary = runner.run()
    db = tmp_path / "data" / "experiments.db"
    rows = assert_store_consistent(db)   # every NULL has its reason, Parquet matches rows
    mine = [r for r in rows if r["workflow_type"] == GOOD]
    assert len(mine) == 6 and all(r["status"] == "ok" for r in mine)
    # counterbalanced like the built-in arms: per task, first/second/third once each
    for task in ("gsm8k_basic", "factual_qa"):
        assert sorted(r["pair_order"] for r in mine if r["task_name"] == task) == [0, 1, 2]
    by_pair = Counter((r["task_name"], r["run_number"], r["pair_index"]) for r in rows)
    assert set(by_pair.values()) == {3}, "each repetition's three arms share one arm set"
    run = mine[0]
    # two model calls, the plan's three tool calls and one of its own, tokens summed
    assert (run["llm_calls"], run["tool_calls"], run["steps"]) == (2, 4, 6)
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] > 0
    assert run["plan_fallback"] is None
    assert "custom arm" in json.loads(run["null_reasons"])["plan_fallback"]
    phases = _phases(db, run["run_id"])
    by_seq = {p[0]: p for p in phases}
    top = [p for p in phases if p[3] is None]
    assert [(p[1], p[2]) for p in top] == [("agent", "agent")]
    names = [(p[1], p[2], by_seq[p[3]][1] if p[3] else None) for p in phases]
    # the marks tile the run: retrieve until the next mark, draft nested in answer
    assert ("retrieve", "step", "agent") in names and ("answer", "step", "agent") in names
    assert ("draft", "step", "answer") in names
    assert [n for n in names if n[1] == "llm"] == [("llm", "llm", "retrieve"),
                                                   ("llm", "llm", "draft")]
    assert Counter(n[0] for n in names if n[1] == "tool") == {"tool:calculator": 3,
                                                               "tool:lookup": 1}
    assert all(p[4] is not None and p[4] > 0 for p in phases), "every phase has its energy"
    trace = json.loads(run["trace_json"])
    assert trace[-1] == {"event": "answer", "text": run["response"]}
    # its tax beside agentic's on the closing lines
    text = format_summary(summary)
    assert f"orchestration tax of {GOOD}: " in text and "orchestration tax: " in text
    assert f"  {GOOD}" in text   # its row in the per-workflow table


@pytest.mark.parametrize("arm,needle", [
    ("no_such_module_xyz:agent", "cannot import no_such_module_xyz: ModuleNotFoundError"),
    ("_arms:missing", "_arms has no missing"),
    ("_arms:NOT_CALLABLE", "NOT_CALLABLE is a int, not a callable"),
    ("_arms:two_args", "must take exactly one argument"),
    ("_arms:coroutine", "is async"),
    ("bad name:x", "unknown workflow 'bad name:x'"),
    ("_arms:good<script>", "unknown workflow"),
])
def test_bad_arm_is_refused_in_one_line_before_anything_runs(tmp_path, arm, needle):
    proc = alems_inproc("batch", "--providers", "scripted", "--db", "data/experiments.db",
                        "--tasks", "gsm8k_basic", "--workflows", f"linear,{arm}",
                        cwd=tmp_path, env=env_for(tmp_path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("alems: error:") and needle in lines[0], \
        proc.stderr
    assert not (tmp_path / "data").exists(), "nothing may be written before validation passes"


def _failed_runs(tmp_path, arm, **kw):
    runner, lines = _run(tmp_path, ["linear", arm], repetitions=1, **kw)
    runner.run()
    rows = all_runs(tmp_path / "data" / "experiments.db")
    assert [r["status"] for r in rows if r["workflow_type"] == "linear"] == ["ok", "ok"], \
        "the batch went on: every linear run is stored ok"
    failed = [r for r in rows if r["workflow_type"] == arm]
    assert [r["status"] for r in failed] == ["error", "error"]
    logged = [line for line in lines if line.startswith("run failed")]
    assert len(logged) == 2 and all("\n" not in r["error"] for r in failed)
    return failed, logged


def test_arm_that_raises_is_a_failed_run_saying_what_and_where(tmp_path):
    failed, logged = _failed_runs(tmp_path, "_arms:raises")
    assert failed[0]["error"].startswith("ValueError: no plan today (at _arms.py:")
    assert failed[0]["error"] in logged[0]
    assert failed[0]["dynamic_energy_uj"] is not None, "the energy it spent is kept"


def test_arm_that_returns_a_non_string_is_a_failed_run(tmp_path):
    failed, _ = _failed_runs(tmp_path, "_arms:returns_int")
    assert failed[0]["error"] == "ArmError: _arms:returns_int returned int, not the answer string"


def test_arm_that_never_returns_is_stopped_at_its_next_call(tmp_path):
    failed, _ = _failed_runs(tmp_path, "_arms:loops", arm_timeout_s=0.3)
    assert failed[0]["error"].startswith("ArmTimeout: _arms:loops did not return within 0.3 s")


def test_arm_blocked_outside_the_context_stops_the_batch_after_recording_it(tmp_path):
    runner, _ = _run(tmp_path, ["linear", "_arms:stuck"], repetitions=2, arm_timeout_s=0.2)
    try:
        with pytest.raises(AlemsError, match=r"recorded as failed: _arms:stuck did not return "
                                             r"within 0\.2 s nor stop.*the batch stops"):
            runner.run()
    finally:
        _arms.RELEASE.set()
    rows = all_runs(tmp_path / "data" / "experiments.db")
    stuck = [r for r in rows if r["workflow_type"] == "_arms:stuck"]
    assert len(stuck) == 1 and stuck[0]["status"] == "error"
    assert stuck[0]["error"].startswith("ArmAbandoned: ")
    assert rows[-1]["run_id"] == stuck[0]["run_id"], "no run was measured after it"
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "interrupted"
    conn.close()


def test_context_calls_raise_after_cancel_and_messages_are_checked():
    from alems.experiment.providers.scripted import ScriptedProvider
    from alems.experiment.providers import GenerationSettings
    from alems.experiment.workflows.base import Limits, NullSampler, Tally
    from alems.experiment.workflows.context import ModelClient, ToolBox, _Guard

    guard, tally = _Guard(), Tally()
    model = ModelClient(ScriptedProvider(["Answer: 4"]), GenerationSettings(), NullSampler(),
                        tally, guard, Limits())
    assert model.complete("2 + 2?").text == "Answer: 4" and tally.llm_calls == 1
    for bad in ([], [{"role": "user"}], [{"role": "robot", "content": "x"}],
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]):
        with pytest.raises(AlemsError):
            model.complete(bad)
    # tools=True with --max-tool-calls 0 still asks for one call, as the agentic arm does
    none_left = ModelClient(ScriptedProvider(['{"tool_calls": []}']), GenerationSettings(),
                            NullSampler(), tally, guard, Limits(max_tool_calls=0))
    assert none_left.complete("2 + 2?", tools=True).tool_calls == []
    box = ToolBox(NullSampler(), tally, guard)
    assert box.call("calculator", {"expression": "6 * 7"}) == "42"
    with pytest.raises(box.Error, match="division by zero|divide"):
        box.call("calculator", {"expression": "1 / 0"})
    assert tally.tool_calls == 2 and tally.llm_calls == 2
    guard.cancelled.set()
    with pytest.raises(ArmCancelled):
        box.call("calculator", {"expression": "1"})
    assert not issubclass(ArmCancelled, Exception), "an agent's except Exception cannot eat it"


def test_load_arm_resolves_dotted_attributes_and_caches():
    assert load_arm("_arms:good") is _arms.good
    assert load_arm("_arms:RELEASE.wait") == _arms.RELEASE.wait


def test_arm_that_exits_fails_its_run_not_the_batch(tmp_path):
    failed, _ = _failed_runs(tmp_path, "_arms:exits")
    assert failed[0]["error"].startswith("SystemExit: 3 (at _arms.py:")


def test_the_context_ends_with_its_run(tmp_path):
    runner, _ = _run(tmp_path, ["linear", "_arms:leaks"], repetitions=1)
    runner.run()
    _arms.RAN_LATE.set()
    wait_until(lambda: len(_arms.LATE) == 2, "both runs' leftover threads call the context")
    assert _arms.LATE == ["ArmCancelled", "ArmCancelled"]


def test_a_module_that_exits_on_import_is_one_line(tmp_path):
    (tmp_path / "quits.py").write_text("raise SystemExit('no')\n")
    proc = alems_inproc("batch", "--providers", "scripted", "--db", "data/experiments.db",
                        "--tasks", "gsm8k_basic", "--workflows", "linear,quits:agent",
                        cwd=tmp_path, env=env_for(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("alems: error: custom arm quits:agent: cannot import "
                                   "quits: SystemExit: no")


def test_arm_timeout_out_of_range_is_one_line(tmp_path):
    proc = alems_inproc("batch", "--providers", "scripted", "--db", "data/experiments.db",
                        "--tasks", "gsm8k_basic", "--workflows", f"linear,{GOOD}",
                        "--arm-timeout", "0", cwd=tmp_path, env=env_for(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("alems: error: --arm-timeout must be between 0.001 and "
                                   "86400, got 0")


def test_ctrl_c_during_a_custom_run_stops_the_batch_and_the_arm(tmp_path):
    runner, _ = _run(tmp_path, ["_arms:interrupts"], repetitions=1)
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert _arms.INTERRUPTED_ARM_ENDED.wait(60), "the arm stopped at its next context call"
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "interrupted"
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0, "no half run stored"
    conn.close()


def test_ctrl_c_taken_by_the_arms_thread_stops_the_batch_before_the_arm_timeout(tmp_path):
    # The signal's handler runs only between the measuring thread's bytecodes; a SIGINT taken
    # by the arm's own thread does not wake one long join, which held it for the whole
    # --arm-timeout. The bound below is 600 x the join slice: it fails only where the Ctrl-C
    # waited for the timeout.
    runner, _ = _run(tmp_path, ["_arms:interrupted_on_its_own_thread"], repetitions=1,
                     arm_timeout_s=120.0)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert time.monotonic() - t0 < 60.0, "the Ctrl-C waited for the arm timeout"
    assert _arms.OWN_THREAD_ARM_ENDED.wait(60), "the arm stopped at its next context call"
