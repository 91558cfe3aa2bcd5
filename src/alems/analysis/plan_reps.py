"""`alems plan-reps`: how many repetitions (pairs) a batch needs.

The design is paired: each repetition runs linear and every other arm (agentic, react,
custom) of the same task back to back, and a test of their difference is a one-sample test
on the n pair differences. The effect size is therefore d = mean difference ÷ SD of the differences.

Two modes:
- formula: the spec's calculator n = ceil(((z_{1-α/2} + z_power) / d)²) — the normal (z)
  approximation, kept as the spec documents it (0.1 / 0.8 / 0.05 → 785) — beside the
  smallest n whose paired *t*-test reaches the power (noncentral t; what a t-test on the
  data will actually deliver, a few more pairs);
- pilot (`--from-group`): the effect is *relative* (0.1 = 10 %). For the tax, it is sized
  on the log pair ratios log(arm_i / linear_i) of every non-linear arm: detecting a 10 %
  change of the tax is a shift of log(1.1) in their mean, so d = log(1 + effect) ÷ SD(log
  ratios). For each workflow's energy, d = effect ÷ CV (a one-sample t-test of a shift of
  effect × mean).
  The batch needs the largest n. A pilot of fewer than 10 pairs gets a warning: its SD is
  too uncertain for the figure to be more than a rough guide.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np

from alems.errors import AlemsError, UsageError
from alems.analysis import stats
from alems.store.reads import runs_frame
from alems.analysis.groups import Group
from alems.analysis.summary_warnings import cell_label
from alems.catalog.arms import LINEAR, ordered_arms

MIN_PILOT_PAIRS = 10
DESIGN = "paired design (effect = mean difference ÷ SD of the pair differences)"
FORMULA_Z = "ceil(((z_(1-alpha/2) + z_power) / d)^2)  [spec; normal approximation]"
FORMULA_T = "smallest n with t-test power >= power (noncentral t, df n-1, ncp d*sqrt(n))"
# A pilot sizes two different tests: each workflow's energy alone (no pairs involved) and
# the tax on the pairs. Each row says which, and what its mean is.
PILOT_DESIGN = ("energy rows: one-sample t on one workflow's runs, d = effect ÷ CV; tax rows: "
                "paired t on the log pair ratios, d = log(1 + effect) ÷ SD(log ratio)")
ENERGY_TEST, TAX_TEST = "one-sample t", "paired t (log ratios)"
ENERGY_MEAN_LABEL = "arithmetic mean dynamic energy (J)"
TAX_MEAN_LABEL = "geometric mean of pair ratios"


def plan_formula(effect_size: float, power: float, alpha: float) -> dict:
    _check(effect_size, power, alpha)
    return {"mode": "formula", "design": DESIGN, "effect_size": effect_size, "power": power,
            "alpha": alpha, "z_sum": stats.z_sum(power, alpha),
            "repetitions": stats.required_repetitions(effect_size, power, alpha),
            "formula": FORMULA_Z,
            "repetitions_t": stats.t_repetitions(effect_size, power, alpha),
            "formula_t": FORMULA_T}


# Effects outside this range give no usable plan: below it more than 10^7 pairs, above it
# fewer than the 2 pairs any interval needs (and 1e-300 overflows the formula).
EFFECT_SIZE_MIN, EFFECT_SIZE_MAX = 1e-3, 10.0
# Beyond these the normal quantiles (and so the plan) run off any usable range.
POWER_MIN, POWER_MAX = 0.01, 0.999999
ALPHA_MIN, ALPHA_MAX = 1e-6, 0.5


def _check(effect_size: float, power: float, alpha: float) -> None:
    if not EFFECT_SIZE_MIN <= effect_size <= EFFECT_SIZE_MAX:
        raise UsageError(f"--effect-size must be between {EFFECT_SIZE_MIN:g} and "
                         f"{EFFECT_SIZE_MAX:g}, e.g. 0.1 (got {effect_size})")
    if not POWER_MIN <= power <= POWER_MAX:
        raise UsageError(f"--power must be between {POWER_MIN:g} and {POWER_MAX:g}, e.g. 0.8 "
                         f"(got {power})")
    if not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise UsageError(f"--alpha must be between {ALPHA_MIN:g} and {ALPHA_MAX:g}, e.g. 0.05 "
                         f"(got {alpha})")


def _cv(values) -> tuple[int, float | None, float | None, float | None]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(arr.size)
    if n < 2:
        return n, (float(arr.mean()) if n else None), None, None
    mean, sd = float(arr.mean()), float(arr.std(ddof=1))
    return n, mean, sd, (sd / abs(mean) if mean else None)


def sd_upper_factor(n: int, confidence: float = 0.95) -> float | None:
    """How much larger the true SD may be than one estimated from n values (one-sided
    `confidence` bound, chi-square with n − 1 df); None below 2 values."""
    from scipy import stats as sps

    if n < 2:
        return None
    return math.sqrt((n - 1) / float(sps.chi2.ppf(1 - confidence, n - 1)))


def plan_from_group(conn: sqlite3.Connection, group: Group, effect_size: float, power: float,
                    alpha: float) -> dict:
    _check(effect_size, power, alpha)
    runs = runs_frame(conn, group.group_id)
    if runs.empty:
        raise AlemsError(f"pilot group {group.group_id!r} has no runs yet")
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()].copy()
    ok["e_j"] = ok["dynamic_energy_uj"].astype(float) / 1e6
    rows, warnings = [], []
    for (task, provider, wf), cell in ok.groupby(["task_name", "provider", "workflow_type"]):
        n, mean, sd, cv = _cv(cell["e_j"].tolist())
        d = None if not cv else effect_size / cv
        row = _row("energy", task, provider, wf, n, mean, sd, cv, d, power, alpha,
                   "one-sample t: a shift of effect × mean; d = effect ÷ CV")
        row.update(test_label=ENERGY_TEST, mean_label=ENERGY_MEAN_LABEL)
        rows.append(row)
    arms = [a for a in ordered_arms(ok["workflow_type"]) if a != LINEAR]
    for arm in arms:   # every non-linear arm's tax against linear, built-in arms first
        for (task, provider), cell in ok.groupby(["task_name", "provider"]):
            tax = _tax_row(cell, arm, task, provider, effect_size, power, alpha)
            if tax is None:
                continue
            rows.append(tax)
            n = tax["pilot_n"]
            if n < MIN_PILOT_PAIRS:
                factor = sd_upper_factor(n)
                more = ("" if factor is None else
                        f"; the true SD may be {factor:.1f}× the pilot's (95 % bound), which "
                        f"would need {factor ** 2:.0f}× the repetitions")
                warnings.append(f"{cell_label(task, provider, arm)}: the pilot has only {n} "
                                f"complete pair(s) (< {MIN_PILOT_PAIRS}), so its SD — and the "
                                f"repetitions it gives — are rough{more}")
    if not rows:
        raise AlemsError(f"pilot group {group.group_id!r} has no completed runs with energy")
    needed = [r["repetitions"] for r in rows if r["repetitions"] is not None]
    done = int(runs.groupby(["exp_id", "workflow_type"])["run_number"].nunique().min())
    return {"mode": "pilot", "group_id": group.group_id, "design": PILOT_DESIGN,
            "effect_size": effect_size, "effect_meaning": "relative to the mean (0.1 = 10 %)",
            "power": power, "alpha": alpha, "pilot_repetitions": done, "rows": rows,
            "repetitions": max(needed) if needed else None, "warnings": warnings,
            "formula": FORMULA_T,
            "formula_z": "max(2, ceil(((z_(1-alpha/2) + z_power) / d)^2))  [spec, for reference]"}


def _tax_row(cell, arm: str, task, provider, effect_size: float, power: float,
             alpha: float) -> dict | None:
    """The repetitions that size `arm`'s tax over linear on one task × provider: a paired t
    on the log pair ratios; None where the pilot has no complete (linear, arm) pair."""
    lin = cell[cell["workflow_type"] == LINEAR].set_index("run_number")["e_j"]
    other = cell[cell["workflow_type"] == arm].set_index("run_number")["e_j"]
    common = sorted(set(lin.index) & set(other.index))
    if not common:
        return None
    logs = [math.log(other[i] / lin[i]) for i in common if lin[i] > 0 and other[i] > 0]
    n, mean_log, sd_log, _ = _cv(logs)
    d = None if not sd_log else math.log1p(effect_size) / sd_log
    row = _row("tax_ratio", task, provider, f"{arm} ÷ {LINEAR}", n,
               None if mean_log is None else math.exp(mean_log), sd_log, None, d, power,
               alpha, f"paired t on log({arm}/{LINEAR}): d = log(1 + effect) ÷ SD(log ratio)")
    row.update(test_label=TAX_TEST, mean_label=TAX_MEAN_LABEL, arm=arm)
    return row


def _row(metric, task, provider, workflow, n, mean, sd, cv, d, power, alpha, test) -> dict:
    note = None
    if n < 2 or sd is None:
        reps = reps_z = None
        note = "needs ≥ 2 pilot runs with energy"
    elif sd == 0:
        reps = reps_z = 2
        note = "no spread in the pilot: 2 is a floor, not an estimate"
    elif d is None:
        reps = reps_z = None
        note = "mean is 0: a relative effect is undefined"
    else:
        reps = stats.t_repetitions(d, power, alpha)
        reps_z = max(2, stats.required_repetitions(d, power, alpha))
    return {"metric": metric, "task": task, "provider": provider, "workflow": workflow,
            "pilot_n": n, "mean": mean, "sd": sd, "cv": cv, "effect_d": d, "test": test,
            "repetitions": reps, "repetitions_z": reps_z, "note": note}
