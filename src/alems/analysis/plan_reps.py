"""`alems plan-reps`: how many repetitions a batch needs.

Two modes:
- formula: the spec's calculator, n = ceil(((z_{1-α/2} + z_power) / effect_size)²), where
  effect_size is a standardised effect (difference ÷ standard deviation);
- pilot (`--from-group`): effect_size is read as a *relative* effect (0.1 = 10 % of the
  mean) and the pilot batch's coefficient of variation (sd ÷ mean) turns it into a
  standardised one, d = effect ÷ CV. Done per task × provider × workflow on dynamic energy,
  and per task × provider on the paired tax ratios agentic_i ÷ linear_i (to detect a
  relative change of the tax). The batch needs the largest of these.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from alems.errors import AlemsError
from alems.analysis import stats
from alems.analysis.frames import runs_frame
from alems.analysis.groups import Group


def plan_formula(effect_size: float, power: float, alpha: float) -> dict:
    _check(effect_size, power, alpha)
    return {"mode": "formula", "effect_size": effect_size, "power": power, "alpha": alpha,
            "z_sum": stats.z_sum(power, alpha),
            "repetitions": stats.required_repetitions(effect_size, power, alpha),
            "formula": "ceil(((z_(1-alpha/2) + z_power) / effect_size)^2)"}


def _check(effect_size: float, power: float, alpha: float) -> None:
    if not effect_size > 0:
        raise AlemsError(f"--effect-size must be > 0 (got {effect_size})")
    if not 0 < power < 1:
        raise AlemsError(f"--power must be between 0 and 1, e.g. 0.8 (got {power})")
    if not 0 < alpha < 1:
        raise AlemsError(f"--alpha must be between 0 and 1, e.g. 0.05 (got {alpha})")


def _cv(values) -> tuple[int, float | None, float | None, float | None]:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(arr.size)
    if n < 2:
        return n, (float(arr.mean()) if n else None), None, None
    mean, sd = float(arr.mean()), float(arr.std(ddof=1))
    return n, mean, sd, (sd / abs(mean) if mean else None)


def plan_from_group(conn: sqlite3.Connection, group: Group, effect_size: float, power: float,
                    alpha: float) -> dict:
    _check(effect_size, power, alpha)
    runs = runs_frame(conn, group.group_id)
    if runs.empty:
        raise AlemsError(f"pilot group {group.group_id!r} has no runs yet")
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()].copy()
    ok["e_j"] = ok["dynamic_energy_uj"].astype(float) / 1e6
    rows = []
    for (task, provider, wf), cell in ok.groupby(["task_name", "provider", "workflow_type"]):
        rows.append(_row("energy", task, provider, wf, cell["e_j"].tolist(),
                         effect_size, power, alpha))
    for (task, provider), cell in ok.groupby(["task_name", "provider"]):
        lin = cell[cell["workflow_type"] == "linear"].set_index("run_number")["e_j"]
        ag = cell[cell["workflow_type"] == "agentic"].set_index("run_number")["e_j"]
        common = sorted(set(lin.index) & set(ag.index))
        if not common:
            continue
        ratios = [ag[i] / lin[i] for i in common if lin[i] > 0]
        rows.append(_row("tax_ratio", task, provider, "paired", ratios, effect_size, power, alpha))
    if not rows:
        raise AlemsError(f"pilot group {group.group_id!r} has no completed runs with energy")
    needed = [r["repetitions"] for r in rows if r["repetitions"] is not None]
    done = int(runs.groupby(["exp_id", "workflow_type"])["run_number"].nunique().min())
    return {"mode": "pilot", "group_id": group.group_id, "effect_size": effect_size,
            "effect_meaning": "relative to the mean (0.1 = 10 %)", "power": power,
            "alpha": alpha, "pilot_repetitions": done, "rows": rows,
            "repetitions": max(needed) if needed else None,
            "formula": "max(2, ceil(((z_(1-alpha/2) + z_power) * CV / effect_size)^2))"}


def _row(metric, task, provider, workflow, values, effect_size, power, alpha) -> dict:
    n, mean, sd, cv = _cv(values)
    reps = None if cv is None else stats.repetitions_for_relative_effect(cv, effect_size, power, alpha)
    return {"metric": metric, "task": task, "provider": provider, "workflow": workflow,
            "pilot_n": n, "mean": mean, "sd": sd, "cv": cv, "repetitions": reps,
            "note": None if reps is not None else "needs ≥ 2 pilot runs with energy"}
