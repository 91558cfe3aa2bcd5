"""Statistics against values computed independently (SciPy) and by hand."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from alems.analysis import stats

DATA = [1.0, 2.0, 3.0, 4.0, 5.0]


def test_t_interval_by_hand():
    iv = stats.t_interval(DATA, 0.95)
    # mean 3, sd sqrt(2.5), t_{0.975, 4} = 2.776445 (table value), n = 5
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert iv.n == 5 and iv.mean == pytest.approx(3.0)
    assert iv.sd == pytest.approx(1.5811388, rel=1e-6)
    assert iv.ci_low == pytest.approx(3.0 - half, abs=1e-5)
    assert iv.ci_high == pytest.approx(3.0 + half, abs=1e-5)
    # wider than the fixed-1.96 interval the spec's SQL uses
    assert half > 1.96 * math.sqrt(2.5) / math.sqrt(5)


def test_t_interval_matches_scipy_on_fixed_data():
    values = [12.1, 11.4, 13.0, 12.7, 11.9, 12.4, 13.3]
    for conf in (0.9, 0.95, 0.99):
        iv = stats.t_interval(values, conf)
        low, high = sps.t.interval(conf, df=len(values) - 1, loc=np.mean(values),
                                   scale=sps.sem(values))
        assert iv.ci_low == pytest.approx(low, rel=1e-12)
        assert iv.ci_high == pytest.approx(high, rel=1e-12)


def test_t_interval_small_and_missing():
    assert stats.t_interval([], 0.95).mean is None
    one = stats.t_interval([4.0, None, float("nan")], 0.95)
    assert one.n == 1 and one.mean == 4.0 and one.sd is None and one.ci_low is None


LIN = [5.0, 6.0, 5.5, 6.2, 5.8, 6.1]
AG = [11.0, 12.5, 10.9, 12.0, 12.2, 11.1]


def test_ratio_of_sums_point_estimate_and_brackets():
    # was test_bootstrap_ratio_reproducible_and_brackets: the percentile bootstrap is retired
    # (issue 8.5); the same point-estimate checks on its replacement, which is deterministic
    a = stats.ratio_of_sums(LIN, AG)
    b = stats.ratio_of_sums(LIN, AG)
    assert a.ratio == pytest.approx(sum(AG) / sum(LIN))
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < a.ratio < a.ci_high
    assert a.percent == pytest.approx((a.ratio - 1) * 100)
    assert a.mean_of_pair_ratios == pytest.approx(np.mean(np.array(AG) / np.array(LIN)))
    assert a.df == 5 and a.ci_null_reason is None and a.includes_one is False


def test_ratio_of_sums_edge_cases():
    one = stats.ratio_of_sums([2.0], [4.0])
    assert one.ratio == 2.0 and one.ci_low is None and "one pair" in one.ci_null_reason
    none = stats.ratio_of_sums([], [])
    assert none.ratio is None and none.ci_null_reason == "no complete pair"
    with pytest.raises(ValueError):
        stats.ratio_of_sums([1.0, 2.0], [1.0])


def test_required_repetitions_spec_formula():
    assert stats.required_repetitions(0.1, 0.8, 0.05) == 785
    assert stats.required_repetitions(0.5, 0.8, 0.05) == 32      # (2.8016/0.5)^2 = 31.4
    assert stats.required_repetitions(0.2, 0.9, 0.05) == 263     # (3.2415/0.2)^2 = 262.7
    with pytest.raises(ValueError):
        stats.required_repetitions(0.0)
    with pytest.raises(ValueError):
        stats.required_repetitions(0.1, power=1.2)


def test_repetitions_for_relative_effect():
    # CV 0.1 and a 10 % effect is a standardised effect of 1: (2.8016)^2 = 7.85 -> 8
    assert stats.repetitions_for_relative_effect(0.1, 0.1) == 8
    # doubling the CV quadruples n (before rounding): (2*2.8016)^2 = 31.4 -> 32
    assert stats.repetitions_for_relative_effect(0.2, 0.1) == 32
    assert stats.repetitions_for_relative_effect(0.0, 0.1) == 2


def test_t_power_is_exact_and_never_nan_so_repetitions_fall_with_the_effect():
    """scipy's noncentral t gives NaN at 2 pairs for d ≥ 6, and t_repetitions then stopped at
    2 for some large effects and not others. References: a 30-digit mpmath quadrature of
    P(|T| > t_crit) over the χ² density (independent of this code's integration)."""
    reference = {(6.0, 2): 0.49442749542148, (20.0, 2): 0.973524046184303,
                 (10.0, 3): 0.999999577169012, (6.0, 4): 0.999999737823528,
                 (0.5, 34): 0.807777501279274}
    for (d, n), want in reference.items():
        assert stats.t_test_power(d, n) == pytest.approx(want, abs=1e-12), (d, n)
    for d in (1.0, 5.0, 6.0, 8.0, 15.0, 50.0, 1e3):
        powers = [stats.t_test_power(d, n) for n in (2, 3, 4, 5)]
        assert all(p is not None and 0.0 <= p <= 1.0 for p in powers), (d, powers)
        assert powers == sorted(powers), (d, powers)
    assert stats.t_test_power(0.0, 10) == pytest.approx(0.05, abs=1e-12)   # no effect: α
    assert stats.t_test_power(-6.0, 2) == stats.t_test_power(6.0, 2)     # two-sided
    assert stats.t_test_power(6.0, 1) is None and stats.t_test_power(6.0, 0) is None
    reps = [stats.t_repetitions(d) for d in np.arange(0.5, 40.0, 0.25)]
    assert reps == sorted(reps, reverse=True) and reps[-1] == 2
    assert stats.t_repetitions(6.0) == 3 and stats.t_repetitions(10.0) == 3   # power@2 < 0.8


def test_baseline_standard_error_widens_the_energy_interval():
    """The baseline's SE × duration is an error every run shares: it widens the interval
    of the mean in quadrature (t_crit × SE), and no SE leaves it as it was."""
    iv = stats.t_interval([10.0, 12.0, 11.0, 13.0], 0.95)
    assert stats.widen_for_baseline(iv, None) == (iv.ci_low, iv.ci_high)
    low, high = stats.widen_for_baseline(iv, 2.0)
    t_crit = iv.half_width / (iv.sd / math.sqrt(iv.n))
    want = math.sqrt(iv.half_width ** 2 + (t_crit * 2.0) ** 2)
    assert high - iv.mean == pytest.approx(want) and iv.mean - low == pytest.approx(want)
    assert low < iv.ci_low and high > iv.ci_high
