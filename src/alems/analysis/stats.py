"""Statistics used by summary, plan-reps and report: nothing here touches the database.

- `t_interval`: mean, sample sd and a two-sided CI with Student's t (n-1 dof), not 1.96.
- `bootstrap_ratio_of_means`: the orchestration tax of paired runs as
  sum(agentic)/sum(linear) (= ratio of the means over the same pairs), with a percentile
  bootstrap CI that resamples *pairs* (keeps the pairing) from a fixed seed.
- `required_repetitions`: the spec's sample-size formula n = ((z_{1-α/2} + z_power)/d)².
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_BOOTSTRAP_SEED = 20240601
DEFAULT_BOOTSTRAP_RESAMPLES = 10000


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


def t_interval(values: Sequence[float | None], confidence: float = 0.95) -> Interval:
    """Mean, sd and the t-distribution CI of the mean of `values` (None/NaN dropped)."""
    from scipy import stats as sps

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
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


@dataclass(frozen=True)
class RatioEstimate:
    n_pairs: int
    ratio: float | None            # sum(agentic) / sum(linear) over the pairs
    ci_low: float | None
    ci_high: float | None
    mean_of_pair_ratios: float | None   # for reference: mean of agentic_i / linear_i
    confidence: float
    resamples: int
    seed: int

    @property
    def percent(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0


def bootstrap_ratio_of_means(linear: Sequence[float], agentic: Sequence[float], *,
                             confidence: float = 0.95,
                             resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
                             seed: int = DEFAULT_BOOTSTRAP_SEED) -> RatioEstimate:
    """Tax ratio of paired runs with a percentile bootstrap CI over the pairs.

    `linear[i]` and `agentic[i]` are one pair (same task, provider, repetition). The point
    estimate is Σagentic/Σlinear; each bootstrap replicate draws n pair indices with
    replacement (numpy PCG64 from `seed`, so the CI is reproducible). Replicates whose
    linear sum is ≤ 0 are dropped.
    """
    lin = np.asarray(linear, dtype=float)
    ag = np.asarray(agentic, dtype=float)
    if lin.shape != ag.shape:
        raise ValueError("linear and agentic must have the same length (one value per pair)")
    keep = np.isfinite(lin) & np.isfinite(ag)
    lin, ag = lin[keep], ag[keep]
    n = int(lin.size)
    if n == 0 or lin.sum() <= 0:
        return RatioEstimate(n, None, None, None, None, confidence, resamples, seed)
    ratio = float(ag.sum() / lin.sum())
    pos = lin > 0
    mean_pair = float(np.mean(ag[pos] / lin[pos])) if pos.any() else None
    if n < 2:
        return RatioEstimate(n, ratio, None, None, mean_pair, confidence, resamples, seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    lin_sums = lin[idx].sum(axis=1)
    ag_sums = ag[idx].sum(axis=1)
    ok = lin_sums > 0
    reps = ag_sums[ok] / lin_sums[ok]
    alpha = 1.0 - confidence
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return RatioEstimate(n, ratio, float(low), float(high), mean_pair, confidence,
                         resamples, seed)


def z_sum(power: float, alpha: float) -> float:
    """z_{1-α/2} + z_power (two-sided test)."""
    from scipy import stats as sps

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


def required_repetitions(effect_size: float = 0.1, power: float = 0.8,
                         alpha: float = 0.05) -> int:
    """The spec's calculator: ceil(((z_{1-α/2} + z_power) / effect_size)²)."""
    if not effect_size > 0:
        raise ValueError(f"effect size must be > 0, got {effect_size}")
    return int(math.ceil((z_sum(power, alpha) / effect_size) ** 2))


def repetitions_for_relative_effect(cv: float, relative_effect: float, power: float = 0.8,
                                    alpha: float = 0.05) -> int:
    """Repetitions to detect a shift of `relative_effect` × mean when sd/mean = `cv`.

    The spec's formula with the standardised effect d = relative_effect / cv, i.e.
    ceil(((z_{1-α/2} + z_power) · cv / relative_effect)²), at least 2 (a CI needs 2).
    """
    if not relative_effect > 0:
        raise ValueError(f"effect size must be > 0, got {relative_effect}")
    if cv < 0 or not math.isfinite(cv):
        raise ValueError(f"coefficient of variation must be finite and ≥ 0, got {cv}")
    return max(2, int(math.ceil((z_sum(power, alpha) * cv / relative_effect) ** 2)))
