"""Exact values of alems.analysis.stats that mutation testing found unguarded
(docs/TESTING.md): the stratified jackknife and its Satterthwaite df against a plain
loop-by-loop implementation of the documented formula, the tax estimate's fields and
reasons, the t interval, and the sample-size calculators against published values."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from scipy import stats as sps  # noqa: E402

from alems.analysis import stats  # noqa: E402


def _reference_interval(lin, ag, strata, confidence):
    """docs/METHODS.md's formula, written out pair by pair."""
    n = len(lin)
    groups: dict = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    sl, sa = sum(lin), sum(ag)
    theta = math.log(sa / sl)
    var = var_sq_over_df = 0.0
    for idx in groups.values():
        n_h = len(idx)
        hl, ha = sum(lin[i] for i in idx), sum(ag[i] for i in idx)
        loo = [math.log((sa - ha + (ha - ag[j]) * n_h / (n_h - 1))
                        / (sl - hl + (hl - lin[j]) * n_h / (n_h - 1))) for j in idx]
        m = sum(loo) / n_h
        v_h = (n_h - 1) / n_h * sum((x - m) ** 2 for x in loo)
        var += v_h
        var_sq_over_df += v_h ** 2 / (n_h - 1)
    df = var ** 2 / var_sq_over_df if var_sq_over_df > 0 else float(n - len(groups))
    t = sps.t.ppf(0.5 + confidence / 2, df)
    return math.exp(theta - t * math.sqrt(var)), math.exp(theta + t * math.sqrt(var)), df


CASES = [
    ([10.0, 12.0, 11.0], [30.0, 33.0, 36.0], ["a"] * 3, 0.95),
    ([5.0, 6.0, 7.0, 8.0, 1.0, 1.2, 0.9], [9.0, 11.0, 15.0, 12.0, 3.0, 2.0, 2.5],
     ["x"] * 4 + ["y"] * 3, 0.9),
    ([1.0, 2.0, 40.0, 44.0, 3.0, 2.5], [2.0, 4.5, 50.0, 41.0, 6.0, 7.0],
     ["p", "p", "q", "q", "r", "r"], 0.8),
]


@pytest.mark.parametrize("lin, ag, strata, conf", CASES)
def test_jackknife_matches_the_formula_pair_by_pair(lin, ag, strata, conf):
    want = _reference_interval(lin, ag, strata, conf)
    got = stats.log_jackknife_interval(lin, ag, conf, strata)
    assert [float(x) for x in got] == pytest.approx(want, rel=1e-10)
    est = stats.ratio_of_sums(lin, ag, confidence=conf, strata=strata)
    assert (est.ci_low, est.ci_high, est.df) == pytest.approx(want, rel=1e-10)
    assert est.ratio == pytest.approx(sum(ag) / sum(lin), rel=1e-12)


def test_unstratified_jackknife_has_n_minus_1_df_and_is_vectorised():
    lin, ag, _, conf = CASES[1]
    want = _reference_interval(lin, ag, ["one"] * len(lin), conf)
    assert want[2] == pytest.approx(len(lin) - 1)
    rows_l = np.array([lin, [x * 2 for x in lin]])
    rows_a = np.array([ag, [x * 3 for x in ag]])
    low, high, df = stats.log_jackknife_interval(rows_l, rows_a, conf)
    assert low.shape == (2,) and (low[0], high[0], df[0]) == pytest.approx(want, rel=1e-10)
    # the second row: every agentic × 1.5 relative to linear -> the interval × 1.5
    assert (low[1], high[1]) == pytest.approx((want[0] * 1.5, want[1] * 1.5), rel=1e-10)


def test_jackknife_undefined_cases_are_nan():
    low, high, df = stats.log_jackknife_interval([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.95,
                                                 ["a", "a", "b"])
    assert math.isnan(low) and math.isnan(high) and math.isnan(df)   # a one-pair stratum
    low, high, df = stats.log_jackknife_interval(np.zeros((2, 0)), np.zeros((2, 0)))
    assert low.shape == (2,) and np.isnan(low).all() and np.isnan(df).all()
    low, high, _ = stats.log_jackknife_interval([1.0, -1.0, 2.0], [3.0, 4.0, 5.0])
    assert math.isnan(low) and math.isnan(high)                      # a leave-one-out ≤ 0
    low, high, _ = stats.log_jackknife_interval([1.0, 2.0], [-1.0, -2.0])
    assert math.isnan(low) and math.isnan(high)                      # Σ agentic ≤ 0
    # zero spread: zero width, df = n - strata
    low, high, df = stats.log_jackknife_interval([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0],
                                                 0.95, ["a", "a", "b", "b"])
    assert (low, high, df) == pytest.approx((2.0, 2.0, 2.0), rel=1e-12)


def test_ratio_estimate_fields_and_reasons():
    est = stats.ratio_of_sums([2.0, 4.0, float("nan"), 3.0], [4.0, 10.0, 1.0, None],
                              confidence=0.9)
    assert est.n_pairs == 2 and est.ratio == 14.0 / 6.0 and est.confidence == 0.9
    assert est.mean_of_pair_ratios == 2.25
    assert est.sd_log_pair_ratio == pytest.approx(np.std(np.log([2.0, 2.5]), ddof=1))
    assert est.cv_linear == pytest.approx(np.std([2.0, 4.0], ddof=1) / 3.0)
    assert est.percent == pytest.approx((14.0 / 6.0 - 1.0) * 100.0)
    assert est.df == 1.0 and est.ci_null_reason is None
    reasons = {
        "no complete pair": stats.ratio_of_sums([], []),
        "Σ linear dynamic energy ≤ 0: no ratio": stats.ratio_of_sums([0.0, 0.0], [1.0, 1.0]),
        "one pair: no interval": stats.ratio_of_sums([2.0], [3.0]),
        "a task has a single complete pair: its variance cannot be estimated":
            stats.ratio_of_sums([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], strata=["a", "a", "b"]),
        ("an energy sum without one pair is ≤ 0 (negative dynamic energies): no log-scale "
         "interval"): stats.ratio_of_sums([1.0, -1.0, 2.0], [3.0, 4.0, 5.0]),
    }
    for why, e in reasons.items():
        assert (e.ci_null_reason, e.ci_low, e.ci_high, e.df) == (why, None, None, None)
    assert reasons["no complete pair"].ratio is None
    assert reasons["no complete pair"].n_pairs == 0
    assert reasons["Σ linear dynamic energy ≤ 0: no ratio"].ratio is None
    assert reasons["one pair: no interval"].ratio == 1.5
    assert reasons["one pair: no interval"].mean_of_pair_ratios == 1.5
    assert reasons["one pair: no interval"].percent == 50.0
    # a pair with linear ≤ 0 is left out of the mean of pair ratios, not of the sums
    neg = stats.ratio_of_sums([1.0, -1.0, 2.0], [3.0, 4.0, 5.0])
    assert neg.ratio == 6.0 and neg.mean_of_pair_ratios == 2.75
    with pytest.raises(ValueError, match="same length"):
        stats.ratio_of_sums([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="one label per pair"):
        stats.ratio_of_sums([1.0, 2.0], [1.0, 2.0], strata=["a"])


def test_dispersion_is_the_largest_over_strata():
    sd, cv = stats._dispersion(np.array([1.0, 2.0, 10.0, 30.0, 5.0]),
                               np.array([2.0, 3.0, 10.0, 90.0, -1.0]),
                               np.array(["a", "a", "b", "b", "b"], dtype=object))
    assert sd == pytest.approx(max(np.std(np.log([2.0, 1.5]), ddof=1),
                                   np.std(np.log([1.0, 3.0]), ddof=1)))
    assert cv == pytest.approx(max(np.std([1.0, 2.0], ddof=1) / 1.5,
                                   np.std([10.0, 30.0, 5.0], ddof=1) / 15.0))
    assert stats._dispersion(np.array([1.0]), np.array([2.0]),
                             np.array(["a"], dtype=object)) == (None, None)
    assert stats._dispersion(np.array([-1.0, -2.0]), np.array([2.0, 3.0]),
                             np.array(["a", "a"], dtype=object)) == (None, None)


def test_includes_one_boundaries():
    def est(low, high, sd=None, cv=None):
        return stats.RatioEstimate(3, 1.0, low, high, None, 2.0, None, sd, cv, 0.95)

    assert est(1.0, 2.0).includes_one is True and est(0.5, 1.0).includes_one is True
    assert est(1.0001, 2.0).includes_one is False and est(0.5, 0.9999).includes_one is False
    assert est(None, 2.0).includes_one is None and est(1.0, None).includes_one is None


def test_t_interval_by_hand():
    iv = stats.t_interval([1.0, None, 2.0, float("nan"), 6.0, float("inf")], 0.9)
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2)
    half = sps.t.ppf(0.95, 2) * sd / math.sqrt(3)
    assert (iv.n, iv.mean, iv.confidence) == (3, 3.0, 0.9)
    assert iv.sd == pytest.approx(sd, rel=1e-12)
    assert (iv.ci_low, iv.ci_high) == pytest.approx((3 - half, 3 + half), rel=1e-12)
    assert iv.half_width == pytest.approx(half, rel=1e-12)
    assert stats.t_interval([4.0]) == stats.Interval(1, 4.0, None, None, None, 0.95)
    assert stats.t_interval([None]) == stats.Interval(0, None, None, None, None, 0.95)
    assert stats.Interval(1, 4.0, None, None, None, 0.95).half_width is None
    for bad in (0, 1, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
            stats.t_interval([1.0, 2.0], bad)
    assert stats.t_interval([1.0, 2.0], 0.999).ci_low < stats.t_interval([1.0, 2.0], 0.5).ci_low


def test_sample_size_calculators_against_published_values():
    # z formula: ((1.959964 + 0.841621) / 0.1)² = 784.9 -> 785
    assert stats.z_sum(0.8, 0.05) == pytest.approx(2.8015852, abs=1e-6)
    assert stats.required_repetitions() == 785
    assert stats.required_repetitions(0.5, 0.9, 0.01) == 60     # (2.5758+1.2816)²/0.25=59.5
    # the paired t-test's power (G*Power: d = 0.5, α = 0.05 two-sided, n = 34 -> 0.8078)
    assert stats.t_test_power(0.5, 34) == pytest.approx(0.8077775, abs=1e-6)
    assert stats.t_test_power(0.5, 1) is None                      # no t-test on one pair
    assert stats.t_test_power(0.5, 33, alpha=0.05) < 0.8
    assert stats.t_repetitions(0.5) == 34
    assert stats.t_repetitions(2.0) == 5                         # z alone says 2
    assert stats.t_repetitions(0.5, 0.9, 0.01) == 63
    assert stats.repetitions_for_relative_effect(0.2, 0.1) == 32   # (2.8016·2)² = 31.4
    assert stats.repetitions_for_relative_effect(0.0, 0.1) == 2
    assert stats.repetitions_for_relative_effect(0.01, 0.5) == 2
    for call in (lambda: stats.required_repetitions(0.0), lambda: stats.t_repetitions(-1.0),
                 lambda: stats.repetitions_for_relative_effect(0.2, 0.0)):
        with pytest.raises(ValueError, match="effect size must be > 0"):
            call()
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="coefficient of variation"):
            stats.repetitions_for_relative_effect(bad, 0.1)
    for power, alpha, what in ((0.8, 0.0, "alpha"), (0.8, 1.0, "alpha"), (0.0, 0.05, "power"),
                               (1.0, 0.05, "power")):
        with pytest.raises(ValueError, match=rf"^{what} must be in \(0, 1\), got"):
            stats.z_sum(power, alpha)
        with pytest.raises(ValueError, match=rf"^{what} must be in \(0, 1\)"):
            stats.t_repetitions(0.5, power, alpha)


def test_widen_for_baseline_adds_in_quadrature():
    iv = stats.t_interval([1.0, 2.0, 6.0])
    t_crit = sps.t.ppf(0.975, 2)
    half = t_crit * iv.sd / math.sqrt(3)
    low, high = stats.widen_for_baseline(iv, 0.5)
    wide = math.sqrt(half ** 2 + (t_crit * 0.5) ** 2)
    assert (low, high) == pytest.approx((3.0 - wide, 3.0 + wide), rel=1e-12)
    assert stats.widen_for_baseline(iv, None) == (iv.ci_low, iv.ci_high)
    assert stats.widen_for_baseline(iv, 0.0) == (iv.ci_low, iv.ci_high)
    one = stats.t_interval([1.0])
    assert stats.widen_for_baseline(one, 0.5) == (None, None)


def test_small_energies_are_not_special():
    """Energies below 1 J (sums, leave-one-out sums, pair values) are ordinary numbers."""
    lin = [0.01, 0.02, 0.03, 0.012]
    ag = [0.02, 0.05, 0.05, 0.03]
    want = _reference_interval(lin, ag, ["a"] * 4, 0.95)
    got = stats.log_jackknife_interval(lin, ag, 0.95)
    assert [float(x) for x in got] == pytest.approx(want, rel=1e-10)
    est = stats.ratio_of_sums(lin, ag)
    assert est.ratio == pytest.approx(0.15 / 0.072, rel=1e-12)
    assert est.mean_of_pair_ratios == pytest.approx((2.0 + 2.5 + 5 / 3 + 2.5) / 4, rel=1e-12)
    assert (est.ci_low, est.ci_high) == pytest.approx(want[:2], rel=1e-10)


def test_jackknife_rows_are_independent():
    lin = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    ag = np.array([[2.0, 5.0, 7.0], [3.0, 4.0, -9.0]])   # row 2: a leave-one-out sum < 0
    low, high, _ = stats.log_jackknife_interval(lin, ag)
    want = _reference_interval([1.0, 2.0, 3.0], [2.0, 5.0, 7.0], ["a"] * 3, 0.95)
    assert (low[0], high[0]) == pytest.approx(want[:2], rel=1e-10)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_undefined_intervals_raise_no_numpy_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for lin, ag in (([1.0, -1.0, 2.0], [3.0, 4.0, 5.0]),      # a leave-one-out sum 0
                        ([1.0, 2.0, 3.0], [3.0, 4.0, -9.0]),      # log of a negative ratio
                        ([1.0, 2.0], [2.0, 4.0])):                # zero spread: df 0/0
            stats.log_jackknife_interval(lin, ag)
            stats.ratio_of_sums(lin, ag)


def test_dispersion_uses_positive_pairs_and_positive_means():
    labels = np.array(["a"] * 4, dtype=object)
    sd, cv = stats._dispersion(np.array([0.5, 0.8, 0.0, 2.0]),
                               np.array([0.6, 2.0, 3.0, 0.0]), labels)
    assert sd == pytest.approx(np.std(np.log([1.2, 2.5]), ddof=1), rel=1e-12)
    assert cv == pytest.approx(np.std([0.5, 0.8, 0.0, 2.0], ddof=1) / 0.825, rel=1e-12)
    sd, cv = stats._dispersion(np.array([0.2, 0.4]), np.array([0.3, 0.9]),
                               np.array(["a", "a"], dtype=object))
    assert cv == pytest.approx(np.std([0.2, 0.4], ddof=1) / 0.3, rel=1e-12)
    assert sd == pytest.approx(np.std(np.log([1.5, 2.25]), ddof=1), rel=1e-12)
    assert stats._dispersion(np.array([1.0, -1.0]), np.array([1.0, 1.0]),
                             np.array(["a", "a"], dtype=object))[1] is None   # mean 0


def test_estimate_keeps_what_it_can_without_an_interval(monkeypatch):
    import sys

    one = stats.ratio_of_sums([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], strata=["a", "a", "b"])
    assert one.ratio == 1.5 and one.mean_of_pair_ratios == pytest.approx((2 + 1.5 + 4 / 3) / 3)
    assert one.cv_linear == pytest.approx(np.std([1.0, 2.0], ddof=1) / 1.5)
    assert one.sd_log_pair_ratio == pytest.approx(np.std(np.log([2.0, 1.5]), ddof=1))
    zero = stats.ratio_of_sums([0.0, 2.0, 4.0, None], [1.0, 4.0, 10.0, 5.0])
    assert zero.n_pairs == 3 and zero.ratio == 2.5 and zero.mean_of_pair_ratios == 2.25
    monkeypatch.setitem(sys.modules, "scipy", None)
    no_scipy = stats.ratio_of_sums([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert (no_scipy.ratio, no_scipy.ci_low, no_scipy.ci_high, no_scipy.df) == (
        1.5, None, None, None)
    assert no_scipy.ci_null_reason == "the interval needs scipy (pip install 'alems[reports]')"
    assert no_scipy.mean_of_pair_ratios == pytest.approx((2 + 1.5 + 4 / 3) / 3)
    assert no_scipy.cv_linear == pytest.approx(0.5)


def test_shape_errors_are_exact():
    with pytest.raises(ValueError) as ei:
        stats.ratio_of_sums([1.0], [1.0, 2.0])
    assert str(ei.value) == "linear and agentic must have the same length (one value per pair)"
    with pytest.raises(ValueError) as ei:
        stats.ratio_of_sums([1.0, 2.0], [1.0, 2.0], strata=["a"])
    assert str(ei.value) == "strata must have one label per pair"


def test_two_pairs_can_be_enough_for_a_huge_effect():
    crit = sps.t.ppf(0.975, 1)
    ncp = 15 * math.sqrt(2)
    assert stats.t_test_power(15.0, 2) == pytest.approx(
        sps.nct.sf(crit, 1, ncp) + sps.nct.cdf(-crit, 1, ncp), rel=1e-12)
    assert stats.t_test_power(15.0, 2) > 0.9
    assert stats.t_repetitions(15.0) == 2
    with pytest.raises(ValueError, match="effect size must be > 0"):
        stats.t_repetitions(0.0)


def test_widen_for_baseline_edge_intervals():
    flat = stats.t_interval([2.0, 2.0, 2.0])
    assert (flat.sd, flat.ci_low, flat.ci_high) == (0.0, 2.0, 2.0)
    assert stats.widen_for_baseline(flat, 0.5) == (2.0, 2.0)    # no t quantile to scale
    half_open = stats.Interval(3, 1.0, 0.5, 0.5, None, 0.95)
    assert stats.widen_for_baseline(half_open, 0.5) == (0.5, None)
    no_mean = stats.Interval(3, None, 0.5, 0.5, 1.5, 0.95)
    assert stats.widen_for_baseline(no_mean, 0.5) == (0.5, 1.5)


def test_an_outlying_pair_is_named_with_its_input_index_and_the_tax_without_it():
    """The outlier check of `ratio_of_sums` (tax_checks.log_ratio_outliers): the index is the
    caller's (a dropped incomplete pair before it counts), z and threshold are the check's,
    the tax without it keeps its stratum's weight, and the flag names the stratum."""
    from alems.analysis import tax_checks

    lin = [np.nan] + [10.0] * 12
    ag = [5.0, 11, 12, 11.5, 12.5, 11.8, 100, 15, 15.5, 14.5, 16, 15.2, 14.8]
    strata = ["x"] + ["A"] * 6 + ["B"] * 6
    r = stats.ratio_of_sums(lin, ag, strata=strata)
    flagged, i, z, thr = tax_checks.log_ratio_outliers(
        np.array(lin[1:]), np.array(ag[1:]), np.array([0] * 6 + [1] * 6))
    assert flagged and int(i) == 5
    assert r.outlier_index == 6 and r.outlier_z == float(z) and r.outlier_threshold == float(thr)
    a_without = sum(ag[1:6]) * 6 / 5                  # stratum A without the pair, reweighted
    assert r.ratio_without_outlier == pytest.approx((a_without + sum(ag[7:])) / 120, rel=1e-12)
    assert r.coverage_flags[-1] == "A: " + tax_checks.outlier_reason(float(z), float(thr))
    plain = stats.ratio_of_sums(lin[1:7], ag[1:7])    # one stratum: no prefix
    assert plain.outlier_index == 5 and plain.coverage_flags[-1].startswith("an outlying pair")


def test_equal_strata_weigh_each_stratum_by_the_design():
    """`equal_strata`: Σ_h mean agentic_h ÷ Σ_h mean linear_h, its interval the weighted
    jackknife's — different from the pooled ratio when strata have unequal pairs."""
    lin = [10.0, 12, 11, 5, 6, 5, 7, 6]
    ag = [20.0, 25, 21, 6, 7, 6, 8, 7]
    strata = ["A"] * 3 + ["B"] * 5
    eq = stats.ratio_of_sums(lin, ag, strata=strata, equal_strata=True)
    assert eq.ratio == pytest.approx((22 + 6.8) / (11 + 5.8), rel=1e-12)
    low, high, df = stats.log_jackknife_interval(np.array(lin), np.array(ag), 0.95,
                                                 np.array(strata), True)
    assert (eq.ci_low, eq.ci_high, eq.df) == (float(low), float(high), float(df))
    pooled = stats.ratio_of_sums(lin, ag, strata=strata)
    assert pooled.ratio == pytest.approx(100 / 62, rel=1e-12) and pooled.ci_low != eq.ci_low
    assert stats.ratio_of_sums(lin, ag, equal_strata=True).ratio == pooled.ratio  # no strata
