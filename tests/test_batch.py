"""The batch runner: order, storage consistency, failures, crash safety and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alems.analysis.closing import batch_closing
from alems.cli.progress import format_summary
from alems.experiment.batch import BatchProgress, BatchRunner
from alems.experiment.plan import BatchConfig, plan_order
from alems.errors import AlemsError
from alems.experiment.providers import ProviderError
from alems.experiment.providers.scripted import ScriptedProvider, default_reply
from alems.store import runs as store_runs
from alems.store import samples as store_samples

from _hardening_util import count_runs

from _fake_sampling import BusyReplaySampler
from inproc import alems_inproc

REPO = Path(__file__).resolve().parents[1]
TASKS = ["gsm8k_basic", "factual_qa"]
BUSY_W = 30.0   # the fake sampler's extra package power during a model call


def three_step_reply(prompt, system=None):
    """A scripted model whose plans have three tool calls (so agentic = 2 model calls + 3 tools)."""
    if '"tool_calls"' in (system or ""):
        return ('{"tool_calls": [{"tool": "calculator", "expression": "1 + 1"}, '
                '{"tool": "calculator", "expression": "2 * 3"}, '
                '{"tool": "lookup", "table": "elements", "key": "Iron"}]}')
    return default_reply(prompt, system)


def make_runner(tmp_path, *, fail_agentic_rep=None, **cfg_kw) -> BatchRunner:
    kw = dict(tasks=TASKS, providers=["scripted"], repetitions=2, seed=7, hz=200.0,
              db_path=tmp_path / "data" / "experiments.db", save_db=True,
              baseline_duration_s=0.02, baseline_reps=2, group_id="g-test")
    kw.update(cfg_kw)
    cfg = BatchConfig(**kw)

    class Provider(ScriptedProvider):
        def generate(self, prompt, settings, *, system=None):
            if fail_agentic_rep is not None and '"tool_calls"' in (system or ""):
                raise ProviderError("HTTP 529 overloaded after 5 attempts")
            return super().generate(prompt, settings, system=system)

    def provider_factory(name):
        return Provider(three_step_reply, delay_s=0.005)

    return BatchRunner(cfg, sampler_factory=lambda: BusyReplaySampler(pkg_w=2.0, core_w=None,
                                                                      busy_w=BUSY_W, hz=200.0),
                       provider_factory=provider_factory, log=lambda m: None, progress=False,
                       closing=batch_closing)


class StopAfter(BatchProgress):
    """Interrupts a batch (as Ctrl-C would) once `n` runs have been stored."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def finished(self, key, row):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def all_runs(db_path):
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(
        "SELECT r.*, e.task_name, e.provider, e.group_id FROM runs r "
        "JOIN experiments e ON r.exp_id = e.exp_id ORDER BY r.run_id")]
    conn.close()
    return rows


def assert_store_consistent(db_path: Path):
    """Every row's Parquet exists and matches it; no Parquet file without a row."""
    rows = all_runs(db_path)
    root = db_path.parent
    listed = set()
    for r in rows:
        path = root / r["samples_path"]
        assert path.is_file(), r["samples_path"]
        listed.add(path.resolve())
        table = pq.read_table(path)
        t = table.column("t_ns").to_numpy()
        assert table.num_rows == r["sample_count"] >= 2
        assert int(t[0]) == r["t_start_ns"] and int(t[-1]) == r["t_end_ns"]
        assert r["duration_ns"] == int(t[-1] - t[0])
        ident = store_samples.read_run_identity(path)
        assert (ident["run_id"], ident["workflow_type"], ident["run_number"]) == (
            r["run_id"], r["workflow_type"], r["run_number"])
        phases = store_samples.read_phases(path)
        conn = sqlite3.connect(db_path)
        n_phases = conn.execute("SELECT COUNT(*) FROM phases WHERE run_id = ?",
                                (r["run_id"],)).fetchone()[0]
        conn.close()
        assert len(phases) == n_phases
        reasons = json.loads(r["null_reasons"])
        nulls = {k for k, v in r.items() if v is None} - {"error", "pair_order"}
        assert nulls == set(reasons), "every NULL metric has a reason, and only those"
    on_disk = {p.resolve() for p in (root / "samples").rglob("*") if p.is_file()}
    assert on_disk == listed, "no Parquet file without a run row (and no temp files)"
    return rows


# ---------------------------------------------------------------- order

def test_order_is_deterministic_counterbalanced_and_paired():
    a = plan_order(TASKS, ["local", "cloud"], ["linear", "agentic"], 10, seed=1)
    b = plan_order(TASKS, ["local", "cloud"], ["linear", "agentic"], 10, seed=1)
    c = plan_order(TASKS, ["local", "cloud"], ["linear", "agentic"], 10, seed=2)
    assert a == b and a != c
    assert len(a) == 2 * 2 * 10 * 2
    assert Counter((k.task, k.provider, k.workflow, k.rep) for k in a).most_common(1)[0][1] == 1
    assert [k.order_index for k in a] == list(range(len(a)))
    firsts = []
    for i in range(0, len(a), 2):          # the two arms of a pair are adjacent
        x, y = a[i], a[i + 1]
        assert (x.task, x.provider, x.rep) == (y.task, y.provider, y.rep)
        assert {x.workflow, y.workflow} == {"linear", "agentic"}
        assert (x.pair_order, y.pair_order) == (0, 1)
        firsts.append(x.workflow)
    assert Counter(firsts) == {"linear": 20, "agentic": 20}   # counterbalanced exactly
    reps_in_order = [k.rep for k in a[::2]]
    assert reps_in_order != sorted(reps_in_order)              # pairs are shuffled


def test_odd_number_of_pairs_and_single_workflow():
    odd = plan_order(["t"], ["p"], ["linear", "agentic"], 5, seed=3)
    firsts = Counter(k.workflow for k in odd if k.pair_order == 0)
    assert sorted(firsts.values()) == [2, 3]
    single = plan_order(["t"], ["p"], ["agentic"], 4, seed=3)
    assert {k.workflow for k in single} == {"agentic"} and all(k.pair_order is None for k in single)
    assert sorted(k.rep for k in single) == [1, 2, 3, 4]


# ---------------------------------------------------------------- in-process batches

def test_batch_stores_consistent_runs_phases_and_tax(tmp_path):
    runner = make_runner(tmp_path)
    summary = runner.run()
    db_path = tmp_path / "data" / "experiments.db"
    rows = assert_store_consistent(db_path)
    assert len(rows) == 2 * 2 * 2 and summary.ok == 8 and summary.errors == 0
    assert Counter((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows) \
        == Counter({(t, w, n): 1 for t in TASKS for w in ("linear", "agentic") for n in (1, 2)})
    plan = plan_order(TASKS, ["scripted"], ["linear", "agentic"], 2, seed=7)
    # runs were executed (run_id order) in the planned order, which is recorded
    assert [(r["task_name"], r["workflow_type"], r["run_number"]) for r in rows] == \
        [(k.task, k.workflow, k.rep) for k in plan]
    assert [r["order_index"] for r in rows] == list(range(8))
    conn = sqlite3.connect(db_path)
    order_json, status = conn.execute("SELECT order_json, status FROM batch_sessions").fetchone()
    assert json.loads(order_json) == [k.as_list() for k in plan] and status == "completed"
    agentic = [r for r in rows if r["workflow_type"] == "agentic"]
    assert all(r["llm_calls"] == 2 and r["tool_calls"] == 3 and r["planning_time_ms"] > 0
               for r in agentic)
    assert all(r["baseline_id"] is not None and r["energy_source"] == "powercap" for r in rows)
    taxes = conn.execute("SELECT linear_run_id, agentic_run_id, tax_ratio, tax_percent, "
                         "linear_dynamic_energy_uj, agentic_dynamic_energy_uj "
                         "FROM orchestration_tax_summary").fetchall()
    assert len(taxes) == 4
    # The fake sampler draws BUSY_W more while a model call (an `llm` phase) is open, so a
    # run's dynamic energy is BUSY_W × its model-call time within its samples, however long
    # a loaded machine made those calls: the tax follows from the records, not the clock.
    llm_s = dict(conn.execute(
        "SELECT p.run_id, SUM(MAX(MIN(p.end_ns, r.t_end_ns) - MAX(p.start_ns, r.t_start_ns), 0))"
        " / 1e9 FROM phases p JOIN runs r USING (run_id) WHERE p.kind = 'llm' "
        "GROUP BY p.run_id").fetchall())
    for lin_id, ag_id, ratio, pct, lin, ag in taxes:
        assert lin == pytest.approx(BUSY_W * llm_s[lin_id] * 1e6, rel=1e-6)
        assert ag == pytest.approx(BUSY_W * llm_s[ag_id] * 1e6, rel=1e-6)
        assert ratio == pytest.approx(ag / lin) and pct == pytest.approx((ag - lin) / lin * 100)
    kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM phases")}
    assert {"linear", "planning", "execution", "synthesis", "llm"} <= kinds
    assert summary.tax_pairs == 4
    assert summary.mean_tax_percent == pytest.approx(sum(t[3] for t in taxes) / 4)
    text = format_summary(summary)
    assert "g-test" in text and "linear" in text and "tax" in text


def test_react_triples_run_counterbalanced_with_tax_and_accuracy_per_arm(tmp_path):
    arms = ["linear", "agentic", "react"]
    plan = plan_order(TASKS, ["scripted"], arms, 2, seed=7)
    groups = [tuple(k.workflow for k in plan[i:i + 3]) for i in range(0, len(plan), 3)]
    assert all(sorted(g) == sorted(arms) for g in groups) and len(set(groups)) >= 2
    for arm in arms:  # rotated: no arm takes one position more than its share (4 triples)
        assert max(sum(g[pos] == arm for g in groups) for pos in range(3)) <= 2
    assert [k.pair_order for k in plan] == [0, 1, 2] * 4
    runner = make_runner(tmp_path, workflows=arms)
    summary = runner.run()
    assert summary.ok == 12 and summary.errors == 0
    assert set(summary.arm_headlines) == {"react"}
    assert "orchestration tax of react" in summary.arm_headlines["react"]
    assert "over 4 complete pair(s)" in summary.arm_headlines["react"]
    assert summary.tax_pairs == 4          # linear/agentic pairs keep their tax rows
    assert summary.accuracy["react"] == (0, 4)   # the scripted model answers "unknown"
    text = format_summary(summary)
    assert "react" in text and "0/4 0 %" in text and "accuracy below 50 %" in text

    from alems.analysis.groups import open_db, resolve_group
    from alems.analysis.summary import build_summary

    db = tmp_path / "data" / "experiments.db"
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    assert s["arm_tax"]["react"]["headline_text"] == summary.arm_headlines["react"]


def test_failed_runs_are_recorded_and_batch_goes_on(tmp_path):
    runner = make_runner(tmp_path, fail_agentic_rep=True, tasks=["gsm8k_basic"])
    summary = runner.run()
    rows = assert_store_consistent(tmp_path / "data" / "experiments.db")
    errs = [r for r in rows if r["status"] == "error"]
    assert len(errs) == 2 and all(r["workflow_type"] == "agentic" for r in errs)
    assert all("529" in r["error"] and r["success"] is None for r in errs)
    assert all(r["pkg_energy_uj"] is not None for r in errs), "failed attempts keep their energy"
    assert all(r["status"] == "ok" for r in rows if r["workflow_type"] == "linear")
    assert summary.errors == 2 and summary.ok == 2
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    assert conn.execute("SELECT COUNT(*) FROM orchestration_tax_summary").fetchone()[0] == 0


def test_crash_between_parquet_write_and_commit_then_resume(tmp_path, monkeypatch):
    real = store_runs.insert_phases
    calls = {"n": 0}

    def crashing(conn, run_id, phases):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash after the Parquet file was written")
        return real(conn, run_id, phases)

    monkeypatch.setattr(store_runs, "insert_phases", crashing)
    with pytest.raises(RuntimeError):
        make_runner(tmp_path).run()
    db_path = tmp_path / "data" / "experiments.db"
    rows = assert_store_consistent(db_path)
    assert len(rows) == 2
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "interrupted"
    conn.close()
    # a leftover from a kill -9 between rename and commit: a file with no row
    orphan = store_samples.samples_path(db_path, "g-test", rows[0]["exp_id"], 99)
    store_samples.write_samples(orphan, pq.read_table(db_path.parent / rows[0]["samples_path"]))
    monkeypatch.setattr(store_runs, "insert_phases", real)
    summary = make_runner(tmp_path).run()
    assert summary.done_before == 2 and summary.ran == 6
    rows = assert_store_consistent(db_path)
    assert not orphan.exists()
    keys = Counter((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows)
    assert len(keys) == 8 and set(keys.values()) == {1}
    conn = sqlite3.connect(db_path)   # pairs split across the crash still get their tax row
    assert conn.execute("SELECT COUNT(*) FROM orchestration_tax_summary").fetchone()[0] == 4


def test_disk_error_while_writing_samples_is_one_clear_error(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(store_samples.pq, "write_table", full)
    with pytest.raises(AlemsError, match="No space left"):
        make_runner(tmp_path, tasks=["gsm8k_basic"], repetitions=1).run()
    db_path = tmp_path / "data" / "experiments.db"
    assert all_runs(db_path) == []
    assert not [p for p in (db_path.parent / "samples").rglob("*") if p.is_file()]


def test_start_from_skips_earlier_repetitions(tmp_path):
    make_runner(tmp_path, repetitions=3, start_from=3, tasks=["gsm8k_basic"]).run()
    rows = all_runs(tmp_path / "data" / "experiments.db")
    assert sorted({r["run_number"] for r in rows}) == [3] and len(rows) == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    make_runner(tmp_path, tasks=["gsm8k_basic"], repetitions=1).run()
    with pytest.raises(AlemsError, match="different settings"):
        make_runner(tmp_path, tasks=["gsm8k_basic"], repetitions=1, seed=8).run()


def test_auto_resume_picks_unfinished_session_with_same_settings(tmp_path, monkeypatch):
    real = store_runs.insert_phases
    calls = {"n": 0}

    def crashing(conn, run_id, phases):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(conn, run_id, phases)

    monkeypatch.setattr(store_runs, "insert_phases", crashing)
    with pytest.raises(KeyboardInterrupt):
        make_runner(tmp_path, group_id=None, tasks=["gsm8k_basic"]).run()
    monkeypatch.setattr(store_runs, "insert_phases", real)
    # other settings -> a new session; same settings -> the unfinished one continues
    other = make_runner(tmp_path, group_id=None, tasks=["gsm8k_basic"], seed=99).run()
    again = make_runner(tmp_path, group_id=None, tasks=["gsm8k_basic"]).run()
    assert other.group_id != again.group_id
    assert again.done_before == 1 and again.ran == 3
    fresh = make_runner(tmp_path, group_id=None, tasks=["gsm8k_basic"], new_session=True).run()
    assert fresh.group_id not in (again.group_id, other.group_id) and fresh.ran == 4


# ---------------------------------------------------------------- CLI, subprocess

def env_for(tmp_path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("ALEMS_DB", None)
    env.pop("TEMPERATURE", None)
    return env


def alems(tmp_path, *args, timeout=120, module="alems"):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["--tasks", "no_such_task"], "no_such_task"),
    (["--tasks", "gsm8k_basic", "--providers", "martian"], "unknown provider"),
    (["--tasks", "gsm8k_basic", "--workflows", "linear,circular"], "unknown workflow"),
    (["--tasks", "gsm8k_basic", "--repetitions", "0"], "--repetitions"),
    (["--tasks", "gsm8k_basic", "--repetitions", "3", "--start-from", "4"], "--start-from"),
    (["--tasks", "gsm8k_basic", "--cool-down", "-1"], "--cool-down"),
    (["--tasks", "gsm8k_basic", "--country", "ZZ"], "ZZ"),
    (["--tasks", "gsm8k_basic", "--providers", "local", "--model", "/nonexistent.gguf"],
     "nonexistent.gguf"),
])
def test_validation_one_line_before_any_run(tmp_path, args, needle):
    base = ["batch", "--providers", "scripted", "--db", "data/experiments.db"]
    # in-process (run_app, as `alems` runs it); the first case also as a real process
    proc = alems_inproc(*base, *args, cwd=tmp_path, env=env_for(tmp_path))
    if needle == "no_such_task":
        proc = alems(tmp_path, *base, *args)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("alems: error:") and needle in lines[0], proc.stderr
    assert not (tmp_path / "data").exists(), "nothing may be written before validation passes"


def test_run_experiment_module_without_save_db_keeps_nothing(tmp_path):
    proc = alems(tmp_path, "--tasks", "gsm8k_basic", "--repetitions", "1", "--providers",
                 "scripted", "--hz", "200", "--baseline-duration", "0.05", "--baseline-reps",
                 "1", "--verbose", module="alems.run_experiment")
    assert proc.returncode == 0, proc.stderr
    assert "not saved" in proc.stdout and "temporary database" in proc.stderr
    assert "gsm8k_basic scripted linear rep 1" in proc.stderr + proc.stdout
    # the command line hands the runner its closing tax line (experiment never imports analysis)
    assert "orchestration tax" in proc.stdout
    assert not (tmp_path / "data").exists()


@pytest.mark.signals
def test_kill_9_then_same_command_resumes_without_loss_or_duplicates(tmp_path):
    args = ["batch", "--tasks", "gsm8k_basic,factual_qa", "--repetitions", "3", "--providers",
            "scripted", "--save-db", "--hz", "200", "--cool-down", "0.25",
            "--baseline-duration", "0.05", "--baseline-reps", "1", "--seed", "11"]
    db_path = tmp_path / "data" / "experiments.db"
    proc = subprocess.Popen([sys.executable, "-m", "alems", *args], cwd=tmp_path,
                            env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_runs(db_path) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    before = count_runs(db_path)
    assert 3 <= before < 12, "the batch must be killed part-way"
    first_rows = {(r["task_name"], r["workflow_type"], r["run_number"]): r["run_id"]
                  for r in all_runs(db_path)}
    done = alems(tmp_path, *args, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming batch" in done.stderr
    rows = assert_store_consistent(db_path)
    keys = Counter((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows)
    assert len(keys) == 12 and set(keys.values()) == {1}
    assert len({r["group_id"] for r in rows}) == 1
    for key, run_id in first_rows.items():        # nothing committed before the kill was lost
        assert any((r["task_name"], r["workflow_type"], r["run_number"]) == key
                   and r["run_id"] == run_id for r in rows)
    # running it once more does nothing new (the session is complete: a new one starts)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT status FROM batch_sessions").fetchall() == [("completed",)]
    assert conn.execute("SELECT COUNT(*) FROM orchestration_tax_summary").fetchone()[0] <= 6


def test_batch_with_replay_sampler_and_real_sample_results(tmp_path):
    from alems.measure import replay
    table = replay.synthetic_table(duration_s=30.0, hz=200.0, power_w={"pkg": 12.0})
    runner = make_runner(tmp_path, tasks=["gsm8k_basic"], repetitions=1)
    runner.sampler_factory = lambda: replay.ReplaySampler(table, energy_source="powercap")
    runner.run()
    rows = assert_store_consistent(tmp_path / "data" / "experiments.db")
    assert len(rows) == 2
    for r in rows:
        assert r["avg_power_watts"] == pytest.approx(12.0)
        assert r["dynamic_energy_uj"] == pytest.approx(0.0, abs=1.0)   # idle == busy here


def test_temperature_env_var_and_flags_reach_the_experiment(tmp_path):
    env = env_for(tmp_path)
    env["TEMPERATURE"] = "0.7"
    proc = alems_inproc("batch", "--tasks", "factual_qa", "--providers", "scripted",
                        "--workflows", "linear", "--save-db", "--hz", "200",
                        "--baseline-duration", "0.05", "--baseline-reps", "1",
                        "--max-tokens", "33", "--seed", "5", "--group-id", "temp-test",
                        cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    row = conn.execute("SELECT group_id, temperature, max_tokens, seed, workflows FROM "
                       "experiments").fetchone()
    assert row == ("temp-test", 0.7, 33, 5, "linear")
    runs = conn.execute("SELECT workflow_type, pair_order FROM runs").fetchall()
    assert runs == [("linear", None)]


@pytest.mark.signals
def test_ctrl_c_marks_session_interrupted_and_keeps_completed_runs(tmp_path):
    args = ["batch", "--tasks", "gsm8k_basic", "--repetitions", "4", "--providers", "scripted",
            "--save-db", "--hz", "200", "--cool-down", "0.25", "--baseline-duration", "0.05",
            "--baseline-reps", "1"]
    db_path = tmp_path / "data" / "experiments.db"
    proc = subprocess.Popen([sys.executable, "-m", "alems", *args], cwd=tmp_path,
                            env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_runs(db_path) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err.splitlines()[-1]
    rows = assert_store_consistent(db_path)
    assert 2 <= len(rows) < 8
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "interrupted"
    conn.close()
    again = alems(tmp_path, *args)
    assert again.returncode == 0 and "resuming" in again.stderr
    assert len(assert_store_consistent(db_path)) == 8


@pytest.mark.parametrize("args,needle", [
    (["--tasks", "gsm8k_basic", "--repetitions", "abc"], "--repetitions"),
    (["--tasks", "gsm8k_basic", "--bogus"], "--bogus"),
])
def test_run_experiment_unparsable_flags_are_one_line(tmp_path, args, needle):
    proc = alems(tmp_path, *args, module="alems.run_experiment")
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
