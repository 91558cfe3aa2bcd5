"""Statistics used by summary, plan-reps and report: nothing here touches the database.

- `t_interval`: mean, sample sd and a two-sided CI with Student's t (n-1 dof), not 1.96.
- `ratio_of_sums`: THE orchestration tax of paired runs, Σ agentic / Σ linear (= the ratio
  of the mean energies over the same pairs; pooled over strata, optionally each stratum
  weighted equally), with a Student-t interval on log(ratio) whose standard error is the
  leave-one-pair-out jackknife (`log_jackknife_interval`), and the checks of
  `tax_checks` (spread beyond the checked region, an outlying pair); coverage simulated in
  tests/coverage_sim.py (docs/METHODS.md).
- `required_repetitions`: the spec's sample-size formula n = ((z_{1-α/2} + z_power)/d)²;
  `t_repetitions`: the same question answered with the t-test's exact power.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from alems.analysis import tax_checks

RATIO_ESTIMATOR = ("ratio of sums: Σ agentic ÷ Σ linear dynamic energy over complete pairs; "
                   "pooled rows: Σ over task × provider of mean agentic ÷ Σ of mean linear "
                   "(each stratum weighted as planned: equally)")
RATIO_INTERVAL = ("Student t on log(ratio of sums) with the leave-one-pair-out jackknife "
                  "standard error (stratified by task for pooled rows; Satterthwaite dof)")
MEAN_OF_RATIOS_LABEL = "mean of per-pair ratios (for reference only; not the tax)"
MIN_T_PAIRS = 2        # a paired t-test needs the sd of its differences: two pairs at least
# The checked region's limits live in tax_checks (with the flag's sampling margin); these
# names are kept for callers that quote them.
COVERAGE_CHECKED_LOG_SD = tax_checks.LOG_SD_LIMIT
COVERAGE_CHECKED_LINEAR_CV = tax_checks.LINEAR_CV_LIMIT


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float | None
    sd: float | None          # sample standard deviation (ddof=1); None when n < 2
    ci_low: float | None      # None when n < 2
    ci_high: float | None
    confidence: float

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


def _clean(values: Sequence[float | None]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def t_interval(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """Mean, sd and the t-distribution CI of the mean of `values` (None/NaN dropped)."""
    from scipy import stats as sps

    _check_confidence(confidence)
    arr = _clean(values)
    n = int(arr.size)
    if n == 0:
        return Interval(0, None, None, None, None, confidence)
    mean = float(arr.mean())
    if n < 2:
        return Interval(1, mean, None, None, None, confidence)
    sd = float(arr.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half, confidence)


# ------------------------------------------------------------------ the orchestration tax
def _stratum_labels(n: int, strata) -> np.ndarray:
    if strata is None:
        return np.zeros(n, dtype=int)
    return np.unique(np.asarray(strata, dtype=object).astype(str),
                     return_inverse=True)[1].reshape(-1)


def log_jackknife(linear, agentic, strata=None, equal_strata: bool = False):
    """θ = log(tax) and the leave-one-pair-out values θ_(j), vectorised over the last axis.

    The tax is Σ_h W_h·mean agentic_h ÷ Σ_h W_h·mean linear_h over strata h (one unless
    `strata` labels the pairs): W_h = n_h (the plain ratio of sums Σ agentic ÷ Σ linear) or,
    with `equal_strata`, W_h = 1 — each stratum weighs as the design planned it (`alems
    batch` plans the same repetitions for every task × provider), so a stratum that lost
    pairs keeps its weight. Leaving pair j of stratum h out, the stratum's mean is that of
    its other pairs (the delete-one stratified jackknife; with W_h = n_h this reweights the
    rest of the stratum by n_h/(n_h−1)). Returns (θ, θ_(j), labels, sizes); NaN where a sum
    is ≤ 0 (no log-scale ratio).
    """
    lin = np.asarray(linear, dtype=float)
    ag = np.asarray(agentic, dtype=float)
    n = lin.shape[-1]
    labels = _stratum_labels(n, strata)
    sizes = np.bincount(labels) if n else np.zeros(0, dtype=int)
    if equal_strata:        # pair weight W_h / n_h: every stratum's mean counts once
        lin, ag = lin / sizes[labels], ag / sizes[labels]
    sum_l = lin.sum(axis=-1, keepdims=True)
    sum_a = ag.sum(axis=-1, keepdims=True)
    onehot = labels[:, None] == np.arange(sizes.size)[None, :]          # (n, H)
    stratum_l = (lin @ onehot)[..., labels]                              # (..., n)
    stratum_a = (ag @ onehot)[..., labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(sizes > 1, sizes / np.maximum(sizes - 1, 1), np.nan)[labels]
        loo_l = sum_l - stratum_l + (stratum_l - lin) * w
        loo_a = sum_a - stratum_a + (stratum_a - ag) * w
        ok = (loo_l > 0) & (loo_a > 0)
        loo = np.where(ok, np.log(np.where(ok, loo_a / loo_l, 1.0)), np.nan)
        pos = (sum_l[..., 0] > 0) & (sum_a[..., 0] > 0)
        theta = np.where(pos, np.log(np.where(pos, sum_a[..., 0] / sum_l[..., 0], 1.0)), np.nan)
    return theta, loo, labels, sizes


def log_jackknife_interval(linear, agentic, confidence: float = 0.95, strata=None,
                           equal_strata: bool = False):
    """Vectorised CI of the tax (`log_jackknife`) over the last axis (the pairs).

    Each stratum h contributes V_h = (n_h−1)/n_h Σ_{j∈h} (θ_(j) − mean_h)² with n_h − 1
    degrees of freedom; se² = Σ V_h, and the t quantile takes Satterthwaite's
    df = (Σ V_h)² / Σ V_h²/(n_h − 1) (= n − 1 for one stratum), so a pooled row whose
    variance comes from one task is not credited with the other tasks' pairs. The interval
    is exp(θ ± t · se). Returns (low, high, df): NaN where it is undefined (a sum or a
    leave-one-out sum ≤ 0, or a stratum with fewer than two pairs).
    """
    from scipy import stats as sps

    _check_confidence(confidence)
    lin = np.asarray(linear, dtype=float)
    theta, loo, labels, sizes = log_jackknife(lin, agentic, strata, equal_strata)
    n = lin.shape[-1]
    if n == 0 or (sizes < 2).any():
        nan = np.full(lin.shape[:-1], np.nan)
        return nan, nan.copy(), nan.copy()
    var = np.zeros(lin.shape[:-1])
    var_sq_over_df = np.zeros(lin.shape[:-1])
    for h, n_h in enumerate(sizes):
        cell = loo[..., labels == h]
        dev = cell - cell.mean(axis=-1, keepdims=True)
        v_h = (n_h - 1) / n_h * (dev ** 2).sum(axis=-1)
        var = var + v_h
        var_sq_over_df = var_sq_over_df + v_h ** 2 / (n_h - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # zero spread in every stratum: any df gives a zero-width interval
        df = np.where(var_sq_over_df > 0, var ** 2 / var_sq_over_df, float(n - sizes.size))
    se = np.sqrt(var)
    t = sps.t.ppf(0.5 + confidence / 2, df=df)
    valid = np.isfinite(theta) & np.isfinite(loo).all(axis=-1)
    low = np.where(valid, np.exp(theta - t * se), np.nan)
    high = np.where(valid, np.exp(theta + t * se), np.nan)
    return low, high, df


@dataclass(frozen=True)
class RatioEstimate:
    n_pairs: int
    ratio: float | None            # the tax (`log_jackknife`): Σ agentic / Σ linear per stratum
    ci_low: float | None
    ci_high: float | None
    ci_null_reason: str | None     # why there is no interval (None when there is one)
    df: float | None               # degrees of freedom of the t quantile (Satterthwaite)
    mean_of_pair_ratios: float | None   # for reference: mean of agentic_i / linear_i
    sd_log_pair_ratio: float | None     # sd of log(agentic_i / linear_i) (max over strata)
    cv_linear: float | None             # sd / mean of linear energy (max over strata)
    confidence: float
    # why the interval's coverage is not vouched for (tax_checks.unchecked: spread reasons,
    # then an outlying pair's); () = checked
    coverage_flags: tuple[str, ...] = ()
    # the most outlying pair (tax_checks.log_ratio_outliers) when it is flagged: its index
    # in the input, its z and threshold, and the tax without it
    outlier_index: int | None = None
    outlier_z: float | None = None
    outlier_threshold: float | None = None
    ratio_without_outlier: float | None = None

    @property
    def percent(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0

    @property
    def includes_one(self) -> bool | None:
        """True when the interval includes 1 (no detectable tax); None without interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= 1.0 <= self.ci_high

    @property
    def outside_checked_range(self) -> bool:
        """The data are not of the kind the coverage simulation vouches for: more spread
        than the checked region, or an outlying pair (tax_checks.unchecked)."""
        return bool(self.coverage_flags)


def ratio_of_sums(linear: Sequence[float], agentic: Sequence[float], *,
                  confidence: float = 0.95, strata: Sequence | None = None,
                  equal_strata: bool = False) -> RatioEstimate:
    """The tax of paired runs: Σagentic/Σlinear with the `log_jackknife_interval` CI.

    `linear[i]` and `agentic[i]` are one pair (same task, provider, repetition); `strata[i]`
    (e.g. the task) makes the jackknife stratified, for rows that pool several tasks, and
    `equal_strata` weighs each stratum by the design instead of by its pairs (the tax is
    then Σ_h mean agentic_h ÷ Σ_h mean linear_h; `log_jackknife`). Pairs with a missing
    value are dropped. No interval (with a reason) when the sums are not positive, with
    fewer than two pairs, or when a stratum has a single pair.
    """
    _check_confidence(confidence)
    lin = np.asarray(linear, dtype=float)
    ag = np.asarray(agentic, dtype=float)
    if lin.shape != ag.shape:
        raise ValueError("linear and agentic must have the same length (one value per pair)")
    labels = np.asarray(["all"] * lin.size if strata is None else list(strata), dtype=object)
    if labels.shape != lin.shape:
        raise ValueError("strata must have one label per pair")
    keep = np.isfinite(lin) & np.isfinite(ag)
    lin, ag, labels = lin[keep], ag[keep], labels[keep].astype(str)
    n = int(lin.size)

    def result(ratio=None, low=None, high=None, reason=None, df=None, extras=(None,) * 3,
               **checks):
        return RatioEstimate(n, ratio, low, high, reason, df, *extras, confidence, **checks)

    if n == 0:
        return result(reason="no complete pair")
    weighted = equal_strata and strata is not None
    strat = None if strata is None else labels
    idx = _stratum_labels(n, strat)
    sizes = np.bincount(idx)
    pair_w = 1.0 / sizes[idx] if weighted else np.ones(n)    # as in `log_jackknife`
    if not (lin * pair_w).sum() > 0:
        return result(reason="Σ linear dynamic energy ≤ 0: no ratio")
    ratio = float((ag * pair_w).sum() / (lin * pair_w).sum())
    mean_pair = float(np.mean(ag[lin > 0] / lin[lin > 0])) if (lin > 0).any() else None
    extras = (mean_pair, *_dispersion(lin, ag, labels))
    if n < 2:
        return result(ratio, reason="one pair: no interval", extras=extras)
    if (sizes < 2).any():
        return result(ratio, reason="a task has a single complete pair: its variance cannot "
                      "be estimated", extras=extras)
    try:
        low, high, df = log_jackknife_interval(lin, ag, confidence, strat, weighted)
        out_flag, out_i, out_z, out_thr = tax_checks.log_ratio_outliers(lin, ag, idx)
        flags = _spread_reasons(lin, ag, labels)
    except ImportError:
        return result(ratio, reason="the interval needs scipy (pip install 'alems[reports]')",
                      extras=extras)
    if not (np.isfinite(low) and np.isfinite(high)):
        return result(ratio, reason="an energy sum without one pair is ≤ 0 (negative dynamic "
                      "energies): no log-scale interval", extras=extras)
    outlier = {}
    if out_flag:
        j = int(out_i)
        without = float(np.exp(log_jackknife(lin, ag, strat, weighted)[1][j]))
        outlier = {"outlier_index": int(np.flatnonzero(keep)[j]), "outlier_z": float(out_z),
                   "outlier_threshold": float(out_thr), "ratio_without_outlier": without}
        # the coverage flag is tax_checks.unchecked: spread or an outlying pair
        flags.append(_stratum_prefix(labels, labels[j])
                     + tax_checks.outlier_reason(float(out_z), float(out_thr)))
    return result(ratio, float(low), float(high), df=float(df), extras=extras,
                  coverage_flags=tuple(flags), **outlier)


def _dispersion(lin: np.ndarray, ag: np.ndarray, labels: np.ndarray):
    """(sd of log pair ratios, CV of linear energy), the largest over the strata: what the
    coverage simulation's checked region is stated in (None below two usable pairs)."""
    sd_logs, cvs = [], []
    for h in np.unique(labels.astype(str)):
        sd_h, cv_h = _stratum_spread(lin, ag, labels.astype(str) == h)
        sd_logs += [] if sd_h is None else [sd_h]
        cvs += [] if cv_h is None else [cv_h]
    return (max(sd_logs) if sd_logs else None), (max(cvs) if cvs else None)


def _stratum_spread(lin: np.ndarray, ag: np.ndarray, m: np.ndarray):
    l_h, a_h = lin[m], ag[m]
    pos = (l_h > 0) & (a_h > 0)
    sd_h = float(np.std(np.log(a_h[pos] / l_h[pos]), ddof=1)) if pos.sum() >= 2 else None
    cv_h = (float(np.std(l_h, ddof=1) / l_h.mean()) if l_h.size >= 2 and l_h.mean() > 0
            else None)
    return sd_h, cv_h


def _spread_reasons(lin: np.ndarray, ag: np.ndarray, labels: np.ndarray) -> list[str]:
    """Why the interval's coverage is not vouched for: each stratum's spread beyond the
    checked region (`tax_checks.spread_reasons`), prefixed by the stratum when several."""
    labels = labels.astype(str)
    reasons = []
    for h in np.unique(labels):
        m = labels == h
        sd_h, cv_h = _stratum_spread(lin, ag, m)
        reasons += [_stratum_prefix(labels, h) + r
                    for r in tax_checks.spread_reasons(sd_h, cv_h, int(m.sum()))]
    return reasons


def _stratum_prefix(labels: np.ndarray, h: str) -> str:
    """'task/provider: ' before a pooled row's reason (several strata), else ''."""
    return f"{str(h).replace(chr(31), '/')}: " if len(set(labels.astype(str))) > 1 else ""


# ------------------------------------------------------------------ sample size
def z_sum(power: float, alpha: float) -> float:
    """z_{1-α/2} + z_power (two-sided test)."""
    from scipy import stats as sps

    _check_power_alpha(power, alpha)
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


def _check_power_alpha(power: float, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")


def required_repetitions(effect_size: float = 0.1, power: float = 0.8,
                         alpha: float = 0.05) -> int:
    """The spec's calculator: ceil(((z_{1-α/2} + z_power) / effect_size)²) — the normal
    approximation to a paired (one-sample) test, d = mean difference ÷ sd of differences."""
    if not effect_size > 0:
        raise ValueError(f"effect size must be > 0, got {effect_size}")
    return int(math.ceil((z_sum(power, alpha) / effect_size) ** 2))


def t_test_power(effect_size: float, n: int, alpha: float = 0.05) -> float | None:
    """Power of the two-sided one-sample (paired) t-test with n observations (pairs) when the
    true standardised effect is `effect_size`: P(|T| > t_{1−α/2, n−1}) for a noncentral t
    with df n − 1 and ncp d·√n. None below `MIN_T_PAIRS` pairs (no t-test: its sd needs 2).

    T = (Z + ncp)/S with S = sqrt(χ²_df/df): power = 1 − ∫ [Φ(c·s − ncp) − Φ(−c·s − ncp)]
    f_S(s) ds, split where c·s = ncp. scipy's `nct` gives NaN at small df and large ncp (d ≥ 6
    at 2 pairs; t_repetitions was non-monotonic); this matches a 30-digit quadrature to 1e-13."""
    from scipy import integrate
    from scipy import stats as sps
    from scipy.special import ndtr

    if n < MIN_T_PAIRS:
        return None
    if not math.isfinite(effect_size):
        raise ValueError(f"effect size must be finite, got {effect_size}")
    _check_power_alpha(0.5, alpha)
    df, ncp = n - 1, abs(effect_size) * math.sqrt(n)
    c = float(sps.t.ppf(1 - alpha / 2, df))
    # log density of S = sqrt(χ²_df / df) up to its s terms (plain math: quad calls it often)
    log_norm = math.log(2.0) + (df / 2) * math.log(df / 2) - math.lgamma(df / 2)

    def miss(s: float) -> float:
        if s <= 0.0:
            return 0.0
        log_f = log_norm + (df - 1) * math.log(s) - df * s * s / 2
        return float(ndtr(c * s - ncp) - ndtr(-c * s - ncp)) * math.exp(log_f)

    s_step = ncp / c
    edges = sorted({0.0, s_step / 2, s_step, 1.0, 2 * s_step + 1}) + [math.inf]
    beta = sum(integrate.quad(miss, lo, hi, epsabs=1e-15, epsrel=1e-12, limit=200)[0]
               for lo, hi in itertools.pairwise(edges))
    return min(1.0, max(0.0, 1.0 - beta))


def t_repetitions(effect_size: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Smallest n ≥ 2 whose paired t-test reaches `power`: start at the z formula (which
    t never beats) and step up until the exact t power is met."""
    if not effect_size > 0:
        raise ValueError(f"effect size must be > 0, got {effect_size}")
    _check_power_alpha(power, alpha)
    n = max(MIN_T_PAIRS, int(math.ceil((z_sum(power, alpha) / effect_size) ** 2)))
    while (t_test_power(effect_size, n, alpha) or 0.0) < power:   # not None: n ≥ MIN_T_PAIRS
        n += 1
    return n


def repetitions_for_relative_effect(cv: float, relative_effect: float, power: float = 0.8,
                                    alpha: float = 0.05) -> int:
    """The spec's z formula for a shift of `relative_effect` × mean when sd/mean = `cv`:
    d = relative_effect / cv, ceil(((z_{1-α/2} + z_power) / d)²), at least 2 (a CI needs 2).
    `t_repetitions(relative_effect / cv, …)` is the t-based answer to the same question."""
    if not relative_effect > 0:
        raise ValueError(f"effect size must be > 0, got {relative_effect}")
    if cv < 0 or not math.isfinite(cv):
        raise ValueError(f"coefficient of variation must be finite and ≥ 0, got {cv}")
    return max(2, int(math.ceil((z_sum(power, alpha) * cv / relative_effect) ** 2)))


def widen_for_baseline(iv: Interval,
                       baseline_se: float | None) -> tuple[float | None, float | None]:
    """The t interval of a mean of dynamic energies, widened for the idle baseline's own
    uncertainty: every run subtracts an estimated baseline power × duration, so the mean
    carries the mean baseline standard error (`runs.dynamic_energy_se_uj`, SE × duration)
    as an error that averaging over runs does not shrink. Half-widths add in quadrature:
    sqrt(t_hw² + (t_crit × baseline_se)²). None bounds stay None."""
    if iv.ci_low is None or iv.ci_high is None or iv.mean is None or not baseline_se:
        return iv.ci_low, iv.ci_high
    half = (iv.ci_high - iv.ci_low) / 2.0
    t_crit = half / (iv.sd / math.sqrt(iv.n)) if iv.sd and iv.n else 0.0
    wide = math.sqrt(half ** 2 + (t_crit * baseline_se) ** 2)
    return iv.mean - wide, iv.mean + wide
