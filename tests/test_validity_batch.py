"""Issue 8 items 3 (metrics), 6, 7, 8, 9 and the one-headline wiring, through the batch."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest

from alems.analysis.closing import batch_closing
from alems.analysis.groups import open_db, resolve_group
from alems.analysis.report import build_report
from alems.analysis.summary import build_summary
from alems.cli.progress import format_summary
from alems.experiment import conditions
from alems.experiment.baseline import Baseline
from alems.experiment.batch import BatchRunner
from alems.experiment.metrics import run_metrics
from alems.experiment.plan import BatchConfig, plan_order
from alems.experiment.providers.scripted import ScriptedProvider
from alems.measure import quiet
from alems.measure.columns import build_columns
from alems.measure.result import SampleResult
from alems.measure.arrow import table_from_columns
from alems.measure.sources.base import Column

from _fake_sampling import BusyReplaySampler
from test_batch import three_step_reply


def _runner(tmp_path, providers_made: list | None = None, **kw) -> BatchRunner:
    args = dict(tasks=["gsm8k_basic", "factual_qa"], providers=["scripted"], repetitions=3,
                seed=5, hz=200.0, db_path=tmp_path / "e.db", baseline_duration_s=0.02,
                baseline_reps=3, group_id="g-val")
    args.update(kw)

    def provider_factory(name):
        p = ScriptedProvider(three_step_reply, delay_s=0.005)
        if providers_made is not None:
            providers_made.append(p)
        return p

    return BatchRunner(BatchConfig(**args),
                       sampler_factory=lambda: BusyReplaySampler(pkg_w=2.0, core_w=None,
                                                                 busy_w=30.0, hz=200.0),
                       provider_factory=provider_factory, log=lambda m: None,
                       closing=batch_closing)


# ---------------------------------------------------------------- item 3

def test_run_with_one_sample_stores_null_energy_with_a_reason():
    t = np.array([5_000_000], dtype=np.int64)
    out, _ = build_columns(t, np.array([[7]], dtype=np.int64),
                           [Column("z", [], "energy", 1.0, 10**9, "pkg", "package-0")], None)
    res = SampleResult(table_from_columns(out), [], "powercap", 100.0, {}, {}, {})
    base = Baseline("powercap", 1.0, 3, power_w={"pkg": 2.0}, power_w_std={"pkg": 0.1},
                    baseline_id=1)
    m = run_metrics(res, None, baseline=base)
    for col in ("pkg_energy_uj", "total_energy_uj", "dynamic_energy_uj"):
        assert m.columns[col] is None
        assert "sample" in m.null_reasons[col]


# ---------------------------------------------------------------- item 7

@pytest.mark.parametrize("arms", [["linear", "agentic"], ["linear", "agentic", "react"]])
@pytest.mark.parametrize("reps", [2, 3, 4, 6])
def test_arm_order_is_balanced_within_each_task_provider_stratum(arms, reps):
    plan = plan_order(["a", "b", "c"], ["p", "q"], arms, reps, seed=11)
    firsts = Counter((k.task, k.provider, k.workflow) for k in plan if k.pair_order == 0)
    for t in "abc":
        for p in "pq":
            counts = [firsts[(t, p, w)] for w in arms]
            assert sum(counts) == reps
            assert max(counts) - min(counts) <= 1, (t, p, counts)
            # every position too (a Latin square of rotations)
            for pos in range(len(arms)):
                at = Counter(k.workflow for k in plan
                             if (k.task, k.provider, k.pair_order) == (t, p, pos))
                assert max(at.values()) - min(at.get(w, 0) for w in arms) <= 1
    assert plan == plan_order(["a", "b", "c"], ["p", "q"], arms, reps, seed=11)
    assert plan != plan_order(["a", "b", "c"], ["p", "q"], arms, reps, seed=12)


# ---------------------------------------------------------------- items 6, 8, 9 + headline

def test_batch_warm_up_quiet_flags_baseline_se_and_one_headline(tmp_path, monkeypatch):
    made: list = []
    runner = _runner(tmp_path, made)
    summary = runner.run()
    # item 9: the first call of each provider is the unmeasured warm-up
    assert made and all(p.calls[0].prompt == conditions.WARM_UP_PROMPT for p in made)
    conn = open_db(tmp_path / "e.db")
    rows = conn.execute("SELECT * FROM runs").fetchall()
    assert len(rows) == 12
    for r in rows:
        # item 6: background load recorded, quiet flag with a reason when not quiet
        assert r["other_procs_running"] is not None and r["quiet"] in (0, 1)
        assert (r["quiet"] == 1) == (r["not_quiet_reason"] is None)
        # item 8: baseline SE × duration, and which baseline
        assert r["baseline_id"] is not None
        assert r["dynamic_energy_se_uj"] is not None and r["dynamic_energy_se_uj"] >= 0
        # item 2: largest gap and skipped deadlines stored
        assert r["max_sample_gap_ns"] is not None and r["skipped_deadlines"] is not None
    # wiring: closing line, summary and report show the same headline tax to 2 decimals
    group = resolve_group(conn, "g-val")
    s = build_summary(conn, tmp_path / "e.db", group)
    blocks = build_report(conn, tmp_path / "e.db", group)
    pat = re.compile(r"orchestration tax: ([0-9.]+)×")
    closing = pat.search(format_summary(summary)).group(1)
    assert closing == pat.search(s["headline_text"]).group(1)
    assert blocks[1].text == "Headline"   # the report opens with it, once
    assert closing == pat.search(blocks[2].text).group(1)
    assert all("bootstrap_seed" not in t for t in s["tax"])
    assert any(s["definitions"]["tax_ci"] in (b.text or "") for b in blocks)
    # item 8: the baseline's SE is carried into the energy interval of each arm
    for w in s["workflows"]:
        e = w["dynamic_energy_j"]
        if e["ci_low"] is not None and e["baseline_se"]:
            assert e["ci_low_with_baseline"] < e["ci_low"] <= e["ci_high"] < e["ci_high_with_baseline"]


def test_not_quiet_runs_are_flagged_in_runs_and_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(quiet, "read_stat", lambda proc_root=None: (9, 0, 100))
    runner = _runner(tmp_path, repetitions=1, tasks=["gsm8k_basic"])
    runner.run()
    conn = open_db(tmp_path / "e.db")
    flags = conn.execute("SELECT quiet, not_quiet_reason FROM runs").fetchall()
    assert flags and all(q == 0 and "other runnable" in why for q, why in flags)
    s = build_summary(conn, tmp_path / "e.db", resolve_group(conn, "g-val"))
    assert any("not measured on a quiet machine" in w for w in s["warnings"])


def test_require_quiet_waits_then_runs(tmp_path, monkeypatch):
    seq = iter([(9, 0, 100)] * 4 + [(1, 0, 200)] * 1000)
    monkeypatch.setattr(quiet, "read_stat", lambda proc_root=None: next(seq))
    monkeypatch.setattr(quiet, "own_running", lambda pid=None, proc_root=None: 1)
    monkeypatch.setattr(quiet, "WAIT_WINDOW_S", 0.01)
    waited = []
    real = quiet.wait_for_quiet

    def spy(timeout_s, **kw):
        out = real(timeout_s, window_s=0.01)
        waited.append(out)
        return out

    monkeypatch.setattr(conditions, "wait_for_quiet", spy)
    runner = _runner(tmp_path, repetitions=1, tasks=["gsm8k_basic"], require_quiet=True,
                     quiet_timeout_s=5.0)
    runner.run()
    assert len(waited) == 2 and all(q for q, _, _ in waited)


def test_wait_for_quiet_times_out_with_the_reason(monkeypatch):
    monkeypatch.setattr(quiet, "read_stat", lambda proc_root=None: (12, 0, 100))
    ok, waited, why = quiet.wait_for_quiet(0.05, window_s=0.01)
    assert not ok and waited >= 0.05 and "other runnable" in why


def test_baseline_is_remeasured_every_n_minutes(tmp_path, monkeypatch):
    from alems.experiment import baseline as bl

    clock = {"now": 0.0}
    real_age = bl.Baseline.age_s
    monkeypatch.setattr(bl.Baseline, "age_s", lambda self, now=None: real_age(self, now)
                        + clock["now"])

    class Ticking(ScriptedProvider):
        def generate(self, *a, **k):
            clock["now"] += 61.0  # each model call "takes" a minute
            return super().generate(*a, **k)

    runner = _runner(tmp_path, repetitions=2, tasks=["gsm8k_basic"], baseline_every_s=120.0)
    runner.provider_factory = lambda name: Ticking(three_step_reply)
    runner.run()
    conn = sqlite3.connect(tmp_path / "e.db")
    ids = [r[0] for r in conn.execute("SELECT baseline_id FROM runs ORDER BY order_index")]
    assert len(set(ids)) >= 2  # re-measured during the batch, each run says which it used
