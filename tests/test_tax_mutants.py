"""Exact rules of the tax rows that mutation testing found unguarded (docs/TESTING.md):
the stratification of pooled rows, pairing, and the headline's wording."""

from __future__ import annotations

import math

import pytest

from alems.analysis import stats, tax
from alems.analysis.tax import ALL, Pair


def _provider_pairs():
    """One provider, two tasks whose energies differ 20-fold: the stratified jackknife
    (by task) and the unstratified one give different intervals."""
    out = []
    for task, lin, ratios in (("small", 1.0, (2.0, 2.4, 1.8)), ("big", 20.0, (1.2, 1.0, 1.5))):
        for rep, r in enumerate(ratios, start=1):
            out.append(Pair(task, "p", rep, lin * (1 + rep / 10), lin * (1 + rep / 10) * r))
    return out


def _row(rows, task, provider):
    return next(r for r in rows if r["task"] == task and r["provider"] == provider)


def test_provider_pooled_row_is_stratified_by_task():
    pairs = _provider_pairs()
    lin, ag = [p.linear_j for p in pairs], [p.agentic_j for p in pairs]
    by_task = stats.ratio_of_sums(lin, ag, strata=[p.task for p in pairs], equal_strata=True)
    pooled = stats.ratio_of_sums(lin, ag)
    assert by_task.ci_low != pytest.approx(pooled.ci_low, rel=1e-3)   # the test can tell
    row = _row(tax.tax_rows(pairs), ALL, "p")
    assert (row["tax_ratio"], row["ci_low"], row["ci_high"], row["df"]) == pytest.approx(
        (by_task.ratio, by_task.ci_low, by_task.ci_high, by_task.df), rel=1e-12)
    assert row["n_pairs"] == 6 and row["n_tasks"] == 2


def test_overall_row_is_stratified_by_task_and_provider():
    """The same task name under two providers is two strata in the overall row."""
    pairs = _provider_pairs() + [Pair(p.task, "q", p.run_number, p.linear_j * 3,
                                      p.agentic_j * 3 * (1.1 if p.run_number == 2 else 0.95))
                                 for p in _provider_pairs()]
    lin, ag = [p.linear_j for p in pairs], [p.agentic_j for p in pairs]
    cells = stats.ratio_of_sums(lin, ag, strata=[f"{p.task}/{p.provider}" for p in pairs],
                                equal_strata=True)
    tasks = stats.ratio_of_sums(lin, ag, strata=[p.task for p in pairs], equal_strata=True)
    assert cells.ci_low != pytest.approx(tasks.ci_low, rel=1e-6)
    rows = tax.tax_rows(pairs)
    assert [(r["task"], r["provider"]) for r in rows] == [
        ("big", "p"), ("big", "q"), ("small", "p"), ("small", "q"), (ALL, "p"), (ALL, "q"),
        (ALL, ALL)]
    row = rows[-1]
    assert (row["tax_ratio"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (cells.ratio, cells.ci_low, cells.ci_high), rel=1e-12)
    assert row["n_pairs"] == 12 and row["n_tasks"] == 2


def test_a_task_with_one_pair_leaves_its_provider_row_without_interval():
    pairs = _provider_pairs()[:4]          # 'small' x3, 'big' x1
    row = _row(tax.tax_rows(pairs), ALL, "p")
    assert row["ci_low"] is None and row["ci_null_reason"] == (
        "a task has a single complete pair: its variance cannot be estimated")
    assert row["coverage_checked"] is None and row["tax_percent_ci_low"] is None


def test_tax_row_fields_are_exact():
    pairs = [Pair("t", "p", 1, 10.0, 30.0), Pair("t", "p", 2, 12.0, 33.0),
             Pair("t", "p", 3, 11.0, 36.0)]
    row = tax.tax_row("t", "p", pairs, None, 0.9)
    est = stats.ratio_of_sums([10.0, 12.0, 11.0], [30.0, 33.0, 36.0], confidence=0.9)
    assert row["tax_ratio"] == 3.0 and row["tax_percent"] == est.percent
    assert row["tax_percent_ci_low"] == (est.ci_low - 1.0) * 100.0
    assert row["tax_percent_ci_high"] == (est.ci_high - 1.0) * 100.0
    assert (row["confidence"], row["n_pairs"], row["n_tasks"]) == (0.9, 3, 1)
    assert row["includes_one"] is False
    assert row["mean_of_pair_ratios"] == pytest.approx((3.0 + 2.75 + 36 / 11) / 3)
    assert row["coverage_checked"] is (not est.outside_checked_range)
    assert row["mean_of_pair_ratios_label"] == stats.MEAN_OF_RATIOS_LABEL


def test_cells_without_pairs_still_get_a_row():
    rows = tax.tax_rows([Pair("a", "p", 1, 1.0, 2.0)], cells=[("b", "p"), ("a", "p")])
    assert [(r["task"], r["provider"], r["n_pairs"]) for r in rows] == [
        ("a", "p", 1), ("b", "p", 0), (ALL, "p", 1), (ALL, ALL, 1)]


def test_pair_up_drops_incomplete_and_unusable_runs():
    runs = [("t", "p", 1, "linear", 2.0), ("t", "p", 1, "agentic", 5.0),
            ("t", "p", 2, "linear", 2.0), ("t", "p", 2, "agentic", None),
            ("t", "p", 3, "linear", math.nan), ("t", "p", 3, "agentic", 1.0),
            ("t", "p", "4", "linear", 1), ("t", "p", 4, "react", 3),
            ("t", "p", 4, "agentic", 4)]
    assert tax.pair_up(runs) == [Pair("t", "p", 1, 2.0, 5.0), Pair("t", "p", 4, 1.0, 4.0)]
    assert tax.pair_up(runs, "react") == [Pair("t", "p", 4, 1.0, 3.0)]


def test_all_device_energy_needs_both():
    assert tax.all_device_energy_j(2_000_000, 500_000) == 2.5
    assert tax.all_device_energy_j(None, 1) is None
    assert tax.all_device_energy_j(1, None) is None
    assert tax.all_device_energy_j(math.nan, 1) is None
    assert tax.all_device_energy_j(1, math.nan) is None


def test_other_arms_are_taxed_against_linear():
    runs = [("t", "p", r, wf, e) for r in (1, 2)
            for wf, e in (("linear", 2.0 * r), ("agentic", 3.0 * r), ("react", 5.0 * r))]
    out = tax.other_arm_taxes(runs)
    assert list(out) == ["react"]
    assert out["react"]["rows"][-1]["tax_ratio"] == 2.5
    assert out["react"]["rows"][-1]["arm"] == "react"
    text = out["react"]["headline_text"]
    assert text.startswith("orchestration tax of react: ")
    assert "(Σ react ÷ Σ linear dynamic energy over 2 complete pair(s) of 1 task(s)" in text


def test_headline_wording_exact():
    base = {"task": ALL, "provider": ALL, "n_pairs": 4, "n_tasks": 2, "confidence": 0.9,
            "tax_ratio": 1.5, "ci_low": 1.2, "ci_high": 1.9, "includes_one": False,
            "ci_null_reason": None}
    assert tax.format_headline(base) == (
        "orchestration tax: 1.50× [90 % CI 1.20–1.90] (Σ agentic ÷ Σ linear dynamic energy "
        "over 4 complete pair(s) of 2 task(s); interval excludes 1)")
    one = dict(base, task="t", ci_low=0.9, includes_one=True, arm="react")
    assert tax.format_headline(one) == (
        "orchestration tax of react: 1.50× [90 % CI 0.90–1.90] (Σ react ÷ Σ linear dynamic "
        "energy over 4 complete pair(s); interval includes 1: no detectable tax)")
    none = dict(base, ci_low=None, ci_high=None, ci_null_reason="one pair: no interval")
    assert tax.format_headline(none) == (
        "orchestration tax: 1.50× (Σ agentic ÷ Σ linear dynamic energy over 4 complete "
        "pair(s) of 2 task(s)); no 90 % interval: one pair: no interval")
    assert tax.format_headline(dict(base, tax_ratio=None, ci_null_reason=None)) == (
        "orchestration tax: n/a — no complete pair")
    assert tax.format_headline(dict(base, tax_ratio=None, ci_null_reason="why")) == (
        "orchestration tax: n/a — why")


def test_tax_row_carries_the_dispersion():
    pairs = [Pair("t", "p", 1, 10.0, 30.0), Pair("t", "p", 2, 12.0, 33.0),
             Pair("t", "p", 3, 11.0, 36.0)]
    row = tax.tax_row("t", "p", pairs, None, 0.95)
    est = stats.ratio_of_sums([10.0, 12.0, 11.0], [30.0, 33.0, 36.0])
    assert row["sd_log_pair_ratio"] == est.sd_log_pair_ratio is not None
    assert row["cv_linear"] == est.cv_linear is not None


def test_overall_is_the_all_all_row():
    rows = tax.tax_rows(_provider_pairs())
    assert [(r["task"], r["provider"]) for r in rows][-2:] == [(ALL, "p"), (ALL, ALL)]
    assert tax.overall(rows) is rows[-1]
    assert tax.overall(list(reversed(rows))) is rows[-1]
    assert "of ? task(s)" in tax.format_headline({k: v for k, v in rows[-1].items()
                                                  if k != "n_tasks"})


def _runs_db():
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE experiments (exp_id INTEGER, group_id TEXT, task_name TEXT, "
                 "provider TEXT)")
    conn.execute("CREATE TABLE runs (exp_id INTEGER, run_number INTEGER, workflow_type TEXT, "
                 "status TEXT, dynamic_energy_uj REAL)")
    conn.executemany("INSERT INTO experiments VALUES (?, ?, ?, ?)",
                     [(1, "g", "t", "p"), (2, "other", "t", "p")])
    rows = []
    for rep, (lin, ag, react) in enumerate(((2.0, 5.0, 9.0), (4.0, 7.0, 11.0),
                                            (3.0, 6.0, 12.0)), start=1):
        rows += [(1, rep, "linear", "ok", lin * 1e6), (1, rep, "agentic", "ok", ag * 1e6),
                 (1, rep, "react", "ok", react * 1e6), (2, rep, "linear", "ok", 1e6),
                 (2, rep, "agentic", "ok", 1e9)]
    rows += [(1, 4, "linear", "ok", 1e6), (1, 4, "agentic", "error", 5e6)]
    conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?)", rows)
    return conn


def test_read_pairs_and_headline_from_the_database():
    conn = _runs_db()
    assert tax.read_pairs(conn, "g") == [Pair("t", "p", 1, 2.0, 5.0), Pair("t", "p", 2, 4.0, 7.0),
                                         Pair("t", "p", 3, 3.0, 6.0)]
    assert [p.agentic_j for p in tax.read_pairs(conn, "g", "react")] == [9.0, 11.0, 12.0]
    head = tax.headline_tax(conn, "g", confidence=0.8)
    want = stats.ratio_of_sums([2.0, 4.0, 3.0], [5.0, 7.0, 6.0], confidence=0.8)
    assert (head["arm"], head["tax_ratio"], head["confidence"]) == ("agentic", 2.0, 0.8)
    assert (head["ci_low"], head["ci_high"]) == (want.ci_low, want.ci_high)
    react = tax.headline_tax(conn, "g", arm="react")
    assert (react["arm"], react["tax_ratio"], react["confidence"]) == ("react", 32 / 9, 0.95)
    other = tax.other_arm_taxes([("t", "p", r, w, e) for r in (1, 2, 3)
                                 for w, e in (("linear", 1.0 + r), ("react", 3.0 * r))], 0.8)
    assert {r["confidence"] for r in other["react"]["rows"]} == {0.8}



def test_all_devices_tax_is_the_tax_over_cpu_plus_gpu():
    energies_uj = [(1e6, 2e6, 3e6, 3e6), (2e6, 1e6, 4e6, 5e6), (1e6, 1e6, 2e6, 6e6),
                   (3e6, 0.0, 3e6, 1e6)]                 # linear CPU, GPU; agentic CPU, GPU
    runs = [("t", "p", rep, wf, cpu, gpu)
            for rep, (lc, lg, ac, ag) in enumerate(energies_uj, 1)
            for wf, cpu, gpu in (("linear", lc, lg), ("agentic", ac, ag))]
    pairs = [Pair("t", "p", 1, 3.0, 6.0), Pair("t", "p", 2, 3.0, 9.0),
             Pair("t", "p", 3, 2.0, 8.0), Pair("t", "p", 4, 3.0, 4.0)]
    rows = tax.tax_rows(pairs, 0.9)
    got = tax.all_devices_tax(runs, 0.9)
    assert got == {"tax_all_devices": rows, "tax_all_devices_energy": tax.ALL_DEVICES_LABEL,
                   "headline_all_devices_text": f"{tax.ALL_DEVICES_LABEL}: "
                                                f"{tax.format_headline(tax.overall(rows))}"}
    assert tax.overall(rows)["tax_ratio"] == 27 / 11
    assert tax.all_devices_tax(runs) == tax.all_devices_tax(runs, 0.95)     # the default
    assert got["tax_all_devices"] != tax.tax_rows(pairs, 0.95)    # the confidence asked
    assert tax.all_devices_tax([r[:5] + (None,) for r in runs]) == {}          # no GPU
    assert tax.all_devices_tax([r[:5] + (float("nan"),) for r in runs]) == {}
    one_missing = [r[:5] + (None,) if r[2] == 4 else r for r in runs]   # its pair left out
    assert tax.overall(tax.all_devices_tax(one_missing, 0.9)["tax_all_devices"])[
        "tax_ratio"] == 23 / 8


def _between_row(ratio, low, high, df, confidence=0.95, why=None):
    return {"tax_ratio": ratio, "ci_low": low, "ci_high": high, "df": df,
            "confidence": confidence, "ci_null_reason": why}


def test_tax_between_rows_and_reasons_exact():
    def none(why):
        return {"tax_ratio": None, "ci_low": None, "ci_high": None, "df": None,
                "ci_null_reason": why}

    a = _between_row(2.0, 1.5, 2.5, 9.0)
    assert tax.tax_between(a, a, same_batch=True) == none("A and B are the same batch")
    assert tax.tax_between(a, None) == none("B has no overall tax")
    assert tax.tax_between(a, _between_row(None, None, None, None)) == none("B has no overall tax")
    assert tax.tax_between(_between_row(2.0, None, None, None, why="one pair"), a) == none(
        "A's tax has no interval (one pair)")
    assert tax.tax_between(a, _between_row(2.0, 1.5, 2.5, None, why="x")) == none(
        "B's tax has no interval (x)")
    assert tax.tax_between(a, _between_row(2.0, 1.5, 2.5, 9.0, confidence=0.9)) == none(
        "A's and B's intervals are at different confidence levels")
    # two exact taxes (zero-width intervals): no spread, the smaller df, 1 included exactly
    exact = _between_row(2.0, 2.0, 2.0, 5.0)
    assert tax.tax_between(exact, exact) == {
        "tax_ratio": 1.0, "ci_low": 1.0, "ci_high": 1.0, "df": 5.0, "ci_null_reason": None,
        "confidence": 0.95, "includes_one": True}
    r = tax.tax_between(exact, _between_row(1.0, 1.0, 1.0, 7.0, confidence=0.95))
    assert r["df"] == 5.0 and r["includes_one"] is False
    assert r["tax_ratio"] == pytest.approx(2.0) and r["ci_low"] == r["ci_high"] == r["tax_ratio"]
    a90, b90 = _between_row(2.0, 1.5, 2.5, 9.0, 0.9), _between_row(1.0, 0.8, 1.25, 9.0, 0.9)
    r = tax.tax_between(a90, b90)                            # at the rows' own confidence
    assert (r["tax_ratio"], r["ci_low"], r["ci_high"], r["df"]) == tax.ratio_of_two_ratios(
        2.0, 1.5, 2.5, 9.0, 1.0, 0.8, 1.25, 9.0, confidence=0.9)


def test_ratio_of_two_ratios_confidence_bounds():
    args = (2.0, 1.5, 2.5, 9.0, 1.0, 0.8, 1.25, 9.0)
    assert tax.ratio_of_two_ratios(*args) == tax.ratio_of_two_ratios(*args, confidence=0.95)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError) as ei:
            tax.ratio_of_two_ratios(*args, confidence=bad)
        assert str(ei.value) == f"confidence must be in (0, 1), got {bad}"


def test_tax_cells_exact():
    from alems.analysis.tax import tax_cells

    dash = {"ratio": "–", "low": "–", "high": "–", "percent": "–"}
    assert tax_cells({"tax_ratio": None}) == dict(dash, ci="– (no complete pair)")
    assert tax_cells({"tax_ratio": None, "ci_null_reason": "one pair"}) == dict(
        dash, ci="– (one pair)")
    cells = tax_cells({"tax_ratio": 1.5, "ci_low": 1.2, "ci_high": 2.0})
    assert cells == {"ratio": "1.50×", "low": "1.20", "high": "2.00", "ci": "[1.20, 2.00]",
                     "percent": "+50"}
    # the percent's digits follow the interval, both of its ends
    assert tax_cells({"tax_ratio": 1.2345, "ci_low": 1.2301, "ci_high": 1.2399})[
        "percent"] == "+23.45"
    assert tax_cells({"tax_ratio": 1.2345, "ci_low": 1.0, "ci_high": 3.0})["percent"] == "+20"
