"""`alems summary` and `alems plan-reps` output through the real command line (in-process
run_app, as `alems` runs it): the headline first, honest precision, plan-reps' design."""

import json
import math
import re
import sqlite3

import numpy as np
import pytest

from alems.analysis.precision import fmt_interval, fmt_ratio
from alems.cli import app
from alems.cli._common import run_app
from analysis_fixture import build_fixture_db


def alems(capsys, *args):
    code = run_app(app, list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("scli") / "experiments.db")


def test_summary_first_line_is_the_overall_tax(db, capsys):
    code, out, err = alems(capsys, "summary", "--db", str(db), "--format", "json")
    assert code == 0, err
    s = json.loads(out)
    overall = [t for t in s["tax"] if t["task"] == "all" and t["provider"] == "all"]
    per_provider = [t for t in s["tax"] if t["task"] == "all" and t["provider"] == "local"]
    assert len(overall) == 1 and len(per_provider) == 1
    o = overall[0]
    raw = sqlite3.connect(db)
    # each task × provider (one experiment) weighs as designed: Σ of means ÷ Σ of means
    n, lin, ag = zip(*raw.execute(
        "SELECT COUNT(*), AVG(linear_dynamic_energy_uj), AVG(agentic_dynamic_energy_uj) "
        "FROM orchestration_tax_summary GROUP BY exp_id"))
    assert o["tax_ratio"] == pytest.approx(sum(ag) / sum(lin)) and o["n_pairs"] == sum(n)
    assert o["estimator"].startswith("ratio of sums") and "jackknife" in o["interval_method"]
    assert "spec" in s["definitions"]["spec_tax_percent"]
    code, out, err = alems(capsys, "summary", "--db", str(db))
    assert code == 0, err
    first = out.splitlines()[0]
    ratio, low, high = fmt_ratio(o["tax_ratio"], o["ci_low"], o["ci_high"])
    assert first.startswith("orchestration tax: ") and first == s["headline_text"]
    assert f"{ratio}× [95 % CI {low}–{high}]" in first
    # the mean of per-pair ratios is labelled as such wherever it is shown
    assert "mean of pair ratios (not the tax)" in out


def test_summary_energies_without_false_precision(db, capsys):
    code, out, _ = alems(capsys, "summary", "--db", str(db), "--format", "json")
    s = json.loads(out)
    code, table, _ = alems(capsys, "summary", "--db", str(db))
    for w in s["workflows"]:
        e = w["dynamic_energy_j"]
        mean, low, high = fmt_interval(e["mean"], e["ci_low"], e["ci_high"])
        assert f"[{low}, {high}]" in table
        half = (e["ci_high"] - e["ci_low"]) / 2
        if half > 0.05:       # an interval of ±0.05 J or wider cannot support 3 decimals
            assert f"{e['mean']:.3f}" not in table
        assert re.search(rf"\b{re.escape(mean)} ± ", table)


def test_interval_below_zero_is_flagged(tmp_path, capsys):
    db = build_fixture_db(tmp_path / "spread.db", tasks=("gsm8k_basic",), with_error=False)
    raw = sqlite3.connect(db)
    for rep, uj in zip(range(1, 5), (0.1e6, 9e6, 0.2e6, 0.15e6)):
        raw.execute("UPDATE runs SET dynamic_energy_uj=? WHERE workflow_type='linear' AND "
                    "run_number=?", (uj, rep))
    raw.commit()
    code, out, err = alems(capsys, "summary", "--db", str(db), "--format", "json")
    assert code == 0, err
    s = json.loads(out)
    lin = next(w for w in s["workflows"] if w["workflow"] == "linear")["dynamic_energy_j"]
    assert lin["ci_low"] < 0 and "below 0" in lin["ci_note"]
    ag = next(w for w in s["workflows"] if w["workflow"] == "agentic")["dynamic_energy_j"]
    assert ag["ci_note"] is None
    code, out, _ = alems(capsys, "summary", "--db", str(db))
    assert "]†" in out and "† the 95 % t interval reaches below 0 J" in out
    # the tax interval is on the log scale: always above 0
    assert all(t["ci_low"] is None or t["ci_low"] > 0 for t in s["tax"])


def test_plan_reps_formula_says_design_and_t(capsys):
    code, out, err = alems(capsys, "plan-reps", "--effect-size", "0.1", "--power", "0.8",
                           "--alpha", "0.05")
    assert code == 0, err
    assert "785 by the spec's z formula" in out and "787 by the paired t-test" in out
    assert "paired design (effect = mean difference ÷ SD of the pair differences)" in out
    code, out, _ = alems(capsys, "plan-reps", "--format", "json")
    plan = json.loads(out)
    assert plan["repetitions"] == 785 and plan["repetitions_t"] == 787


def test_plan_reps_pilot_sizes_tax_on_log_ratios_and_warns(db, capsys):
    code, out, err = alems(capsys, "plan-reps", "--from-group", "latest", "--db", str(db),
                           "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    raw = sqlite3.connect(db)
    pairs = raw.execute("SELECT linear_dynamic_energy_uj, agentic_dynamic_energy_uj FROM "
                        "orchestration_tax_summary t JOIN experiments e USING (exp_id) "
                        "WHERE e.task_name = 'gsm8k_basic'").fetchall()
    logs = np.log([a / lin for lin, a in pairs])
    row = next(r for r in plan["rows"] if r["metric"] == "tax_ratio" and r["task"] == "gsm8k_basic")
    assert row["sd"] == pytest.approx(logs.std(ddof=1))
    assert row["effect_d"] == pytest.approx(math.log(1.1) / logs.std(ddof=1))
    assert row["mean"] == pytest.approx(math.exp(logs.mean()))
    assert any("only 4 complete pair(s) (< 10)" in w for w in plan["warnings"])
    code, out, _ = alems(capsys, "plan-reps", "--from-group", "latest", "--db", str(db))
    assert "warning: gsm8k_basic/local: the pilot has only 4" in out
    assert "reps (t)" in out and "reps (z, spec)" in out


def test_plan_reps_pilot_of_ten_pairs_does_not_warn(tmp_path, capsys):
    db = build_fixture_db(tmp_path / "ten.db", tasks=("gsm8k_basic",), reps=10, with_error=False)
    code, out, err = alems(capsys, "plan-reps", "--from-group", "latest", "--db", str(db),
                           "--format", "json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == []
