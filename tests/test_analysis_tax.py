"""The headline tax (issue 8, items 4 and 5): one ratio of sums per task, provider and
overall; an interval whose coverage is checked here by simulation; NULL with a reason
where no honest interval exists."""

import math
import sqlite3

import numpy as np
import pytest

from alems.analysis import stats
from alems.analysis.groups import open_db, resolve_group
from alems.analysis.summary import build_summary, format_headline, headline_tax
from alems.analysis.tax import ALL, Pair, tax_rows
from analysis_fixture import build_fixture_db
from coverage_sim import coverage, pooled_coverage

# 20 000 replicates: the binomial standard error at 95 % is 0.15 %, so ±0.3 % (2 SE)
REPLICATES = 20_000


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_interval_coverage_log_normal_pair_ratios(n):
    """≥ 94 % at 3 pairs and up, where the percentile bootstrap had 73 % (3), 80 % (5) and
    86 % (10); typical spread: sd of log pair ratios 0.3, linear CV ≈ 0.2."""
    cov = coverage(n, sd_lin=0.2, sd_ratio=0.3, replicates=REPLICATES, seed=100 + n)
    assert 0.94 <= cov <= 0.975, cov       # not too narrow, nor uselessly wide


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_interval_coverage_edge_of_checked_range(n):
    """The corner of the range the summary calls 'checked' (stats.COVERAGE_CHECKED_*), where
    coverage is lowest (94.2 %): 100 000 replicates, ±0.14 %."""
    cov = coverage(n, sd_lin=stats.COVERAGE_CHECKED_LINEAR_CV,
                   sd_ratio=stats.COVERAGE_CHECKED_LOG_SD, replicates=5 * REPLICATES, seed=200 + n)
    assert cov >= 0.94, cov


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_pooled_interval_coverage(n):
    """The all-tasks rows: three tasks whose energies differ 20-fold, stratified jackknife."""
    cov = pooled_coverage(n, sd_lin=0.2, sd_ratio=0.3, replicates=REPLICATES // 2, seed=300 + n)
    assert 0.94 <= cov <= 0.99, cov


def test_production_function_is_the_simulated_one():
    rng = np.random.default_rng(1)
    lin = rng.uniform(4, 8, (50, 6))
    ag = lin * rng.lognormal(np.log(2), 0.3, (50, 6))
    low, high, _ = stats.log_jackknife_interval(lin, ag, 0.95)
    for i in range(50):
        est = stats.ratio_of_sums(lin[i], ag[i], confidence=0.95)
        assert est.ratio == pytest.approx(ag[i].sum() / lin[i].sum())
        assert (est.ci_low, est.ci_high) == pytest.approx((low[i], high[i]))


def test_interval_by_hand():
    lin, ag = [10.0, 12.0, 11.0], [30.0, 33.0, 36.0]
    theta = math.log(sum(ag) / sum(lin))
    loo = [math.log((sum(ag) - a) / (sum(lin) - x)) for x, a in zip(lin, ag)]
    m = sum(loo) / 3
    se = math.sqrt(2 / 3 * sum((v - m) ** 2 for v in loo))
    t = 4.302652729911275          # t_{0.975, 2}
    est = stats.ratio_of_sums(lin, ag)
    assert est.ci_low == pytest.approx(math.exp(theta - t * se))
    assert est.ci_high == pytest.approx(math.exp(theta + t * se))
    assert est.df == 2 and est.ci_low > 0


def test_no_detectable_tax_rests_on_the_new_interval():
    # three pairs at 1.1×, 1.3×, 1.2×: the bootstrap's [min, max] = [1.1, 1.3] excluded 1;
    # with three pairs the data cannot exclude "no tax"
    est = stats.ratio_of_sums([10.0, 10.0, 10.0], [11.0, 13.0, 12.0])
    assert est.ratio == pytest.approx(1.2)
    assert est.ci_low < 1.0 < est.ci_high and est.includes_one is True
    clear = stats.ratio_of_sums([10.0] * 6, [20.0, 22.0, 19.0, 21.0, 20.5, 19.5])
    assert clear.includes_one is False


def test_degenerate_cases_are_null_with_a_reason():
    neg = stats.ratio_of_sums([-1.0, 0.5], [2.0, 3.0])          # Σ linear ≤ 0
    assert neg.ratio is None and "≤ 0" in neg.ci_null_reason
    loo = stats.ratio_of_sums([1.0, -1.0, 2.0], [3.0, 4.0, 5.0])   # a leave-one-out sum ≤ 0
    assert loo.ratio == pytest.approx(6.0) and loo.ci_low is None
    assert "negative dynamic energies" in loo.ci_null_reason
    single = stats.ratio_of_sums([5.0, 6.0, 7.0], [9.0, 11.0, 15.0], strata=["a", "a", "b"])
    assert single.ratio == pytest.approx(35 / 18) and single.ci_low is None
    assert "single complete pair" in single.ci_null_reason
    same = stats.ratio_of_sums([5.0, 6.0], [10.0, 12.0])        # identical ratios: zero width
    assert same.ci_low == pytest.approx(2.0) and same.ci_high == pytest.approx(2.0)


def _pairs():
    out = []
    for provider, scale in (("local", 1.0), ("cloud", 0.2)):
        for task, (lin, tax) in {"t1": (5.0, 2.0), "t2": (20.0, 1.5), "t3": (1.0, 6.0)}.items():
            for rep, wiggle in enumerate((0.9, 1.0, 1.1, 1.05), start=1):
                out.append(Pair(task, provider, rep, lin * scale * wiggle,
                                lin * scale * tax * (2 - wiggle)))
    return out


def test_rows_per_task_per_provider_and_overall():
    pairs = _pairs()
    rows = tax_rows(pairs)
    keys = [(r["task"], r["provider"]) for r in rows]
    assert keys[-3:] == [(ALL, "cloud"), (ALL, "local"), (ALL, ALL)]
    assert len(rows) == 6 + 3
    for r in rows:
        sel = [p for p in pairs if r["task"] in (ALL, p.task) and r["provider"] in (ALL, p.provider)]
        assert r["n_pairs"] == len(sel)
        assert r["tax_ratio"] == pytest.approx(sum(p.agentic_j for p in sel) /
                                               sum(p.linear_j for p in sel))
        assert r["ci_low"] < r["tax_ratio"] < r["ci_high"]
        assert r["estimator"] == stats.RATIO_ESTIMATOR
        assert r["interval_method"] == stats.RATIO_INTERVAL
        assert "not the tax" in r["mean_of_pair_ratios_label"]
    # the overall ratio of sums is not the mean of the per-pair ratios
    assert rows[-1]["tax_ratio"] != pytest.approx(rows[-1]["mean_of_pair_ratios"], rel=0.01)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("tax") / "experiments.db")


def test_headline_is_the_summary_overall_row(db):
    raw = sqlite3.connect(db)
    lin, ag = zip(*raw.execute(
        "SELECT linear_dynamic_energy_uj, agentic_dynamic_energy_uj FROM orchestration_tax_summary"))
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    s = build_summary(conn, db, group)
    row = headline_tax(conn, group.group_id)
    overall = [t for t in s["tax"] if t["task"] == ALL and t["provider"] == ALL]
    assert len(overall) == 1 and overall[0]["tax_ratio"] == pytest.approx(row["tax_ratio"])
    assert row["tax_ratio"] == pytest.approx(sum(ag) / sum(lin))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((overall[0]["ci_low"],
                                                              overall[0]["ci_high"]))
    assert s["headline_text"] == format_headline(row)
    line = format_headline(row)
    assert line.startswith("orchestration tax: ") and f"{row['tax_ratio']:.2f}×" in line
    assert "95 % CI" in line and "excludes 1" in line


def test_format_headline_without_interval():
    row = tax_rows([Pair("t", "p", 1, 2.0, 5.0)])[-1]
    line = format_headline(row)
    assert "2.50×" in line and "one pair: no interval" in line
    assert "n/a" in format_headline(tax_rows([])[-1])


def test_headline_without_scipy_keeps_the_ratio(db, monkeypatch):
    """The batch's closing line runs without the [reports] extra: ratio, and a reason."""
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)
    row = headline_tax(sqlite3.connect(db), resolve_group(open_db(db), "latest").group_id)
    assert row["tax_ratio"] > 1 and row["ci_low"] is None and "scipy" in row["ci_null_reason"]
    assert "scipy" in format_headline(row)
