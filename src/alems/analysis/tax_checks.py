"""When the tax interval's coverage is not vouched for (docs/METHODS.md §4.1), vectorised so
the coverage simulation (tests/coverage_sim.py) runs the very rules `summary` applies. A
row's coverage is vouched for (`coverage_checked`) when neither check fires (`unchecked`);
each check that fires gives the row a reason (`coverage_flags`).

- `spread_flags`: the pairs spread more than the checked region allows, beyond what a
  sample from a population AT the limit shows in 99 % of cases. A plain "sample sd > limit"
  test (the rule before) flagged half the data sets drawn at the limit, where coverage is
  fine, and its unflagged sets were the narrowest intervals (lower coverage, not higher).
- `log_ratio_outliers`: one pair's log ratio is an outlier among its stratum's pairs
  (studentized deleted residual above the Bonferroni t quantile): the pair ratios are not
  one smooth distribution — a second kind of run, or a glitch.
"""

from __future__ import annotations

import numpy as np

# Population spread up to which the interval's coverage was simulated ≥ 93 % at 3–30 pairs
# (log-normal and gamma pair ratios; docs/METHODS.md table): sd of log(agentic_i/linear_i)
# and coefficient of variation of the linear energies.
LOG_SD_LIMIT = 0.4
LINEAR_CV_LIMIT = 0.3
# A sample is flagged when its spread exceeds what a population at the limit shows in this
# share of samples of the same size (chi-square upper quantile of the sample sd).
SPREAD_QUANTILE = 0.99
# Family-wise false-alarm rate of the outlier test over a row's pairs (log-normal data).
OUTLIER_ALPHA = 0.01
# Log ratios this close count as equal (floating-point noise is not an outlier).
_LOG_TIE = 1e-12


def spread_margin(n, quantile: float = SPREAD_QUANTILE):
    """Factor by which a sample's sd exceeds its population's in `quantile` of samples of
    n values: sqrt(χ²_q(n−1)/(n−1)) (normal theory; NaN below two values)."""
    from scipy import stats as sps

    n = np.asarray(n, dtype=float)
    df = np.where(n > 1, n - 1, np.nan)
    return np.sqrt(sps.chi2.ppf(quantile, df) / df)


def spread_flags(sd_log, cv_linear, n, quantile: float = SPREAD_QUANTILE):
    """(log-ratio sd flag, linear CV flag), elementwise: the sample statistic of n pairs
    above limit × `spread_margin(n)`; NaN statistics are not flagged. (`quantile` other
    than the default: only for the simulation's comparison of margins.)"""
    margin = spread_margin(n, quantile)
    with np.errstate(invalid="ignore"):
        return (np.asarray(sd_log, dtype=float) > LOG_SD_LIMIT * margin,
                np.asarray(cv_linear, dtype=float) > LINEAR_CV_LIMIT * margin)


def spread_reasons(sd_log: float | None, cv_linear: float | None, n: int) -> list[str]:
    """The reason strings of `spread_flags` for one stratum of n pairs."""
    if n < 2:
        return []
    flag_sd, flag_cv = spread_flags(np.nan if sd_log is None else sd_log,
                                    np.nan if cv_linear is None else cv_linear, n)
    bound = float(spread_margin(n))
    out = []
    if flag_sd:
        out.append(f"sd of the log pair ratios {sd_log:.2f} > {LOG_SD_LIMIT * bound:.2f} (the "
                   f"checked limit {LOG_SD_LIMIT} and the sampling margin of {n} pairs)")
    if flag_cv:
        out.append(f"CV of the linear energies {cv_linear:.2f} > {LINEAR_CV_LIMIT * bound:.2f} "
                   f"(the checked limit {LINEAR_CV_LIMIT} and the sampling margin of {n} pairs)")
    return out


def unchecked(flag_sd, flag_cv, outlier):
    """THE coverage flag, elementwise: the spread beyond the checked region (either
    `spread_flags`) or an outlying pair (`log_ratio_outliers`). The simulation covered
    smooth families (log-normal, gamma) within the limits; a row with an outlying pair is
    of another kind — a second kind of run, or a glitch — so its coverage is not vouched
    for, whatever its spread."""
    return np.asarray(flag_sd) | np.asarray(flag_cv) | np.asarray(outlier)


def outlier_reason(z: float, threshold: float) -> str:
    """The reason string of a flagged `log_ratio_outliers` row."""
    shown = "∞" if z == np.inf else f"{z:.1f}"
    return (f"an outlying pair (log-ratio z {shown} > {threshold:.1f}): the pair ratios are "
            "not one smooth distribution, the only kind the coverage was checked for")


def log_ratio_outliers(linear, agentic, labels, alpha: float = OUTLIER_ALPHA):
    """The most outlying pair of each row (last axis = pairs; `labels` = stratum index per
    pair, each pair judged against the other pairs of its stratum).

    z_j = |x_j − mean(x_−j)| / (sd(x_−j) · sqrt(1 + 1/(n_h−1))) with x = log(agentic/linear)
    is t-distributed with n_h − 2 dof for log-normal ratios; the threshold is that t's
    1 − alpha/(2n) quantile (Bonferroni over the row's n pairs), so log-normal data are
    flagged in at most `alpha` of rows. Strata of fewer than 3 pairs are not tested.
    Returns (flagged, index, z, threshold) over the leading axes; index −1 where untested.
    """
    from scipy import stats as sps

    lin = np.asarray(linear, dtype=float)
    ag = np.asarray(agentic, dtype=float)
    labels = np.asarray(labels)
    n = lin.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(ag / lin)
    z = np.full(x.shape, np.nan)
    thr = np.full(n, np.inf)
    for h in np.unique(labels):
        m = labels == h
        n_h = int(m.sum())
        if n_h < 3:
            continue
        xs = x[..., m]
        with np.errstate(invalid="ignore"):   # a non-finite ratio (linear 0 J): no z, below
            xs = xs - np.mean(xs, axis=-1, keepdims=True)      # centred: less cancellation
        s1 = xs.sum(axis=-1, keepdims=True)
        s2 = (xs ** 2).sum(axis=-1, keepdims=True)
        rest_mean = (s1 - xs) / (n_h - 1)
        rest_var = np.maximum((s2 - xs ** 2 - (n_h - 1) * rest_mean ** 2) / (n_h - 2), 0.0)
        dev = np.abs(xs - rest_mean)
        scale = np.sqrt(rest_var * (1 + 1 / (n_h - 1)))
        # the sums' rounding leaves ~1e-8 · sqrt(s2) of spread where the others are equal
        equal_rest = scale <= _LOG_TIE + 1e-6 * np.sqrt(s2)
        with np.errstate(divide="ignore", invalid="ignore"):
            # others all equal: any real difference is infinitely far out
            zh = np.where(dev <= _LOG_TIE, 0.0, np.where(equal_rest, np.inf, dev / scale))
        z[..., m] = zh
        thr[m] = sps.t.ppf(1 - alpha / (2 * n), n_h - 2)
    excess = np.where(np.isnan(z), -np.inf, z / thr)
    if n == 0:
        shape = lin.shape[:-1]
        return np.zeros(shape, bool), np.full(shape, -1), np.full(shape, np.nan), \
            np.full(shape, np.nan)
    index = np.argmax(excess, axis=-1)
    best = np.take_along_axis(excess, index[..., None], axis=-1)[..., 0]
    tested = best > -np.inf
    z_best = np.where(tested, np.take_along_axis(z, index[..., None], axis=-1)[..., 0], np.nan)
    thr_best = np.where(tested, thr[index], np.nan)
    return best > 1.0, np.where(tested, index, -1), z_best, thr_best
