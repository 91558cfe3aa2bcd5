"""`alems summary`: per-workflow statistics, the orchestration tax and where agentic energy
goes, with warnings wherever the data cannot carry a conclusion.

Definitions (shared/DESIGN.md):
- energy statistics use dynamic (workload) energy of runs that completed (status 'ok');
- success rate = correct answers / all runs (an errored run is not a success);
- EpG = dynamic energy of *all* runs that have one (failed included) / number correct;
- tax ratio = Σ agentic / Σ linear dynamic energy over complete pairs (same task, provider
  and repetition, both arms ok) — a ratio of means over the same pairs — with a percentile
  bootstrap CI resampling pairs (fixed seed); tax_percent = (ratio − 1) × 100. The mean of
  the per-pair ratios is reported alongside for reference;
- phase shares are of the agentic runs' *package* energy (phases.energy_uj is package
  energy, idle included), by stage (planning/execution/synthesis) and by activity (model
  calls, tools, waiting); the remainder is time outside any such phase.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime
from pathlib import Path

import pandas as pd

from alems.errors import AlemsError
from alems.analysis import stats
from alems.analysis.frames import phases_frame, run_footprints, runs_frame
from alems.analysis.groups import Group
from alems.analysis.samples import energy_between_uj, load_energy

SHORT_RUN_NS = 10_000_000          # < 10 ms: only a few RAPL updates (~1 ms each)
BASELINE_MAX_AGE_S = 3600.0        # baseline measured more than 1 h before a run
WIDE_CI_FRACTION = 0.20            # CI half-width above 20 % of the mean
MIN_BOOTSTRAP_PAIRS = 10           # percentile bootstrap is too narrow below this
STAGE_KINDS = ("planning", "execution", "synthesis")
ACTIVITY_KINDS = ("llm", "tool", "waiting")
KIND_LABELS = {"planning": "planning", "execution": "execution", "synthesis": "synthesis",
               "llm": "model calls", "tool": "tool execution", "waiting": "waiting",
               "other": "outside phases"}


def _parse_time(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _f(x) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _interval_dict(iv: stats.Interval) -> dict:
    return {"n": iv.n, "mean": iv.mean, "sd": iv.sd, "ci_low": iv.ci_low, "ci_high": iv.ci_high}


def _phase_energy(phases: pd.DataFrame, runs: pd.DataFrame, db_path: Path) -> pd.Series:
    """phases.energy_uj, integrating from the run's samples where the column is NULL."""
    energy = phases["energy_uj"].astype(float).copy()
    missing = energy.isna()
    if missing.any():
        paths = runs.set_index("run_id")["samples_path"].to_dict()
        cache: dict = {}
        for idx in phases.index[missing]:
            rid = phases.at[idx, "run_id"]
            if rid not in cache:
                cache[rid] = load_energy(db_path, paths.get(rid))
            series = cache[rid]
            if series is not None:
                energy.at[idx] = energy_between_uj(series[0], series[1],
                                                   int(phases.at[idx, "start_ns"]),
                                                   int(phases.at[idx, "end_ns"]))
    return energy


def build_summary(conn: sqlite3.Connection, db_path: str | Path, group: Group, *,
                  confidence: float = 0.95, country: str | None = None, factors=None,
                  bootstrap_seed: int = stats.DEFAULT_BOOTSTRAP_SEED,
                  bootstrap_resamples: int = stats.DEFAULT_BOOTSTRAP_RESAMPLES) -> dict:
    db_path = Path(db_path)
    runs = runs_frame(conn, group.group_id)
    if runs.empty:
        raise AlemsError(f"group {group.group_id!r} has no runs yet; wait for `alems batch` "
                         "to record some (see `alems status`)")
    workflows_present = set(runs["workflow_type"])
    if "agentic" not in workflows_present or "linear" not in workflows_present:
        only = ", ".join(sorted(workflows_present))
        raise AlemsError(f"group {group.group_id!r} has only {only} runs; the orchestration tax "
                         "compares linear with agentic runs of the same task — run the batch "
                         "with --workflows linear,agentic")
    warnings: list[str] = []
    unknown_countries: set[str] = set()
    fp = run_footprints(runs, country, factors, unknown_countries)
    if unknown_countries:
        warnings.append(f"no grid factors for {', '.join(sorted(unknown_countries))}: footprint "
                        "left empty for those runs (add them with --factors PATH)")
    runs = runs.join(fp.add_suffix("_fp"))
    runs["ok"] = (runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()
    runs["dynamic_energy_j"] = runs["dynamic_energy_uj"].astype(float) / 1e6
    runs["duration_s"] = runs["duration_ns"].astype(float) / 1e9
    power = runs["avg_power_watts"].astype(float)
    fallback = runs["pkg_energy_uj"].astype(float) / 1e6 / runs["duration_s"]
    runs["avg_power_w"] = power.where(power.notna(), fallback)
    is_estimate = runs["energy_source"] == "estimate"

    workflow_rows = []
    for (task, provider, wf), cell in runs.groupby(["task_name", "provider", "workflow_type"],
                                                  sort=True):
        ok = cell[cell["ok"]]
        n_correct = int((cell["success"] == 1).sum())
        spent_j = float(cell["dynamic_energy_j"].dropna().sum())
        if n_correct == 0:
            epg, epg_reason = None, "no correct answers"
        else:
            epg, epg_reason = spent_j / n_correct, None
        energy_iv = stats.t_interval(ok["dynamic_energy_j"].tolist(), confidence)
        row = {
            "task": task, "provider": provider, "workflow": wf,
            "n_runs": int(len(cell)), "n_ok": int(len(ok)),
            "n_errors": int((cell["status"] != "ok").sum()),
            "n_correct": n_correct,
            "success_rate": n_correct / len(cell),
            "energy_source": ",".join(sorted(set(cell["energy_source"].dropna()))) or None,
            "estimate": bool(is_estimate[cell.index].any()),
            "dynamic_energy_j": _interval_dict(energy_iv),
            "duration_s": _interval_dict(stats.t_interval(ok["duration_s"].tolist(), confidence)),
            "avg_power_w": _interval_dict(stats.t_interval(ok["avg_power_w"].tolist(), confidence)),
            "epg_j": epg, "epg_null_reason": epg_reason,
            "carbon_g_total": _f(cell["carbon_g_fp"].sum(min_count=1)),
            "water_ml_total": _f(cell["water_ml_fp"].sum(min_count=1)),
            "methane_mg_total": _f(cell["methane_mg_fp"].sum(min_count=1)),
        }
        workflow_rows.append(row)
        label = f"{task}/{provider}/{wf}"
        if energy_iv.n < 2:
            warnings.append(f"{label}: {energy_iv.n} completed run(s) with energy — no "
                            "confidence interval possible; run more repetitions")
        elif energy_iv.mean and energy_iv.half_width / abs(energy_iv.mean) > WIDE_CI_FRACTION:
            warnings.append(
                f"{label}: {int(confidence * 100)} % CI is ±{energy_iv.half_width / abs(energy_iv.mean):.0%}"
                f" of the mean with n={energy_iv.n} — too few runs for a firm conclusion; "
                "`alems plan-reps --from-group` says how many are needed")
        if epg is None:
            warnings.append(f"{label}: EpG undefined — {epg_reason}")

    tax_rows = []
    for (task, provider, exp_id), cell in runs.groupby(["task_name", "provider", "exp_id"], sort=True):
        ok = cell[cell["ok"]]
        lin = ok[ok["workflow_type"] == "linear"].set_index("run_number")["dynamic_energy_j"]
        ag = ok[ok["workflow_type"] == "agentic"].set_index("run_number")["dynamic_energy_j"]
        common = sorted(set(lin.index) & set(ag.index))
        est = stats.bootstrap_ratio_of_means(lin.loc[common].tolist(), ag.loc[common].tolist(),
                                             confidence=confidence, seed=bootstrap_seed,
                                             resamples=bootstrap_resamples)
        wf_rows = {r["workflow"]: r for r in workflow_rows
                   if r["task"] == task and r["provider"] == provider}
        tax_rows.append({
            "task": task, "provider": provider, "n_pairs": est.n_pairs,
            "tax_ratio": est.ratio, "ci_low": est.ci_low, "ci_high": est.ci_high,
            "tax_percent": est.percent,
            "tax_percent_ci_low": None if est.ci_low is None else (est.ci_low - 1) * 100,
            "tax_percent_ci_high": None if est.ci_high is None else (est.ci_high - 1) * 100,
            "mean_of_pair_ratios": est.mean_of_pair_ratios,
            "method": "ratio of means over complete pairs; percentile bootstrap over pairs",
            "bootstrap_seed": est.seed, "bootstrap_resamples": est.resamples,
            "epg_linear_j": wf_rows.get("linear", {}).get("epg_j"),
            "epg_agentic_j": wf_rows.get("agentic", {}).get("epg_j"),
            "estimate": bool(is_estimate[cell.index].any()),
        })
        label = f"{task}/{provider}"
        if est.ratio is None:
            warnings.append(f"{label}: no complete linear/agentic pair with energy — no tax")
        elif est.ci_low is None:
            warnings.append(f"{label}: only {est.n_pairs} complete pair — no CI for the tax")
        elif est.n_pairs < MIN_BOOTSTRAP_PAIRS:
            warnings.append(f"{label}: the tax CI rests on only {est.n_pairs} pairs — a bootstrap "
                            f"over fewer than {MIN_BOOTSTRAP_PAIRS} pairs understates the "
                            "uncertainty; run more repetitions")
        if est.ci_low is not None and est.ci_low <= 1.0 <= est.ci_high:
            warnings.append(f"{label}: tax CI [{est.ci_low:.2f}, {est.ci_high:.2f}] includes 1.0 — "
                            "the data do not show an orchestration tax")
        dropped = int(cell["run_number"].nunique() - len(common))
        if dropped > 0:
            warnings.append(f"{label}: {dropped} repetition(s) left out of the tax (an arm "
                            "errored or has no energy)")

    phase_rows = _phase_shares(conn, runs, group, db_path)

    # data-quality warnings over the whole group
    n_est = int(is_estimate.sum())
    if n_est:
        warnings.append(f"{n_est} run(s) use ESTIMATED energy (CPU time × W/core), not measured; "
                        "their energy, tax and footprint are estimates")
    n_err = int((runs["status"] != "ok").sum())
    if n_err:
        warnings.append(f"{n_err} run(s) failed with an error (excluded from energy statistics, "
                        "counted in EpG and success rate)")
    n_wrong = int((runs["success"] == 0).sum())
    if n_wrong:
        warnings.append(f"{n_wrong} run(s) gave a wrong answer (counted in EpG's energy)")
    short = runs[runs["duration_ns"].notna() & (runs["duration_ns"] < SHORT_RUN_NS)]
    if len(short):
        warnings.append(f"{len(short)} run(s) shorter than {SHORT_RUN_NS / 1e6:.0f} ms — only a few "
                        "RAPL updates (~1 ms each); their energy is unreliable")
    clipped = int((runs["dynamic_clipped"] == 1).sum())
    if clipped:
        warnings.append(f"{clipped} run(s) had negative dynamic energy clipped to 0 (baseline ≥ "
                        "measured energy): the baseline may not match the run conditions")
    no_base = int(runs["baseline_id"].isna().sum())
    if no_base:
        warnings.append(f"{no_base} run(s) have no baseline: their dynamic energy is unavailable")
    warnings.extend(_baseline_warnings(runs))
    return {
        "group_id": group.group_id, "created_at": group.created_at, "status": group.status,
        "confidence": confidence, "estimate": bool(n_est),
        "energy_sources": sorted(set(runs["energy_source"].dropna())),
        "workflows": workflow_rows, "tax": tax_rows, "phases": phase_rows, "warnings": warnings,
        "definitions": {
            "dynamic_energy": "package energy − baseline power × duration (µJ → J)",
            "tax_ratio": "Σ agentic / Σ linear dynamic energy over complete pairs; 95 % CI: "
                         "percentile bootstrap over pairs, fixed seed",
            "tax_percent": "(tax_ratio − 1) × 100",
            "epg": "dynamic energy of all runs (failed included) ÷ correct answers",
            "phase_share": "share of agentic package energy (idle included) per phase kind",
            "ci": f"{int(confidence * 100)} % CI of the mean, Student t with n−1 dof",
            "avg_power_w": "package energy ÷ duration (runs.avg_power_watts)",
        },
    }


def _baseline_warnings(runs: pd.DataFrame) -> list[str]:
    out = []
    by_base = runs[runs["baseline_id"].notna()].groupby("baseline_id")
    for bid, cell in by_base:
        measured = _parse_time(cell["baseline_measured_at"].iloc[0])
        starts = [t for t in (_parse_time(s) for s in cell["started_at"]) if t is not None]
        if measured is not None and starts:
            age_s = (max(starts) - measured).total_seconds()
            if age_s > BASELINE_MAX_AGE_S:
                out.append(f"baseline #{int(bid)} was measured {age_s / 3600:.1f} h before the last "
                           f"run using it; idle power may have drifted — re-measure it")
            if min(starts) < measured:
                out.append(f"baseline #{int(bid)} was measured after some of the runs using it")
        b_src = cell["baseline_energy_source"].iloc[0]
        r_src = set(cell["energy_source"].dropna())
        if isinstance(b_src, str) and r_src and r_src != {b_src}:
            out.append(f"baseline #{int(bid)} came from {b_src} but runs used "
                       f"{', '.join(sorted(r_src))}")
    return out


def _phase_shares(conn, runs: pd.DataFrame, group: Group, db_path: Path) -> list[dict]:
    phases = phases_frame(conn, group.group_id)
    ag_runs = runs[(runs["workflow_type"] == "agentic") & (runs["status"] == "ok")]
    if phases.empty or ag_runs.empty:
        return []
    phases = phases[phases["run_id"].isin(ag_runs["run_id"])].copy()
    phases["energy_uj_eff"] = _phase_energy(phases, ag_runs, db_path)
    rows = []
    for (task, provider), cell in ag_runs.groupby(["task_name", "provider"], sort=True):
        total_uj = float(cell["pkg_energy_uj"].astype(float).sum())
        if not total_uj > 0:
            continue
        ph = phases[phases["run_id"].isin(cell["run_id"])]
        for basis, kinds in (("stage", STAGE_KINDS), ("activity", ACTIVITY_KINDS)):
            sums = {k: float(ph.loc[ph["kind"] == k, "energy_uj_eff"].sum()) for k in kinds}
            sums["other"] = max(total_uj - sum(sums.values()), 0.0)
            for kind, uj in sums.items():
                rows.append({"task": task, "provider": provider, "basis": basis, "kind": kind,
                             "label": KIND_LABELS[kind], "energy_j": uj / 1e6,
                             "share": uj / total_uj})
    return rows


# ---------------------------------------------------------------- flat views for output
def workflow_table(summary: dict) -> list[dict]:
    """One flat row per task × provider × workflow, tax and phase columns joined in."""
    taxes = {(t["task"], t["provider"]): t for t in summary["tax"]}
    shares: dict = {}
    for p in summary["phases"]:
        shares.setdefault((p["task"], p["provider"]), {})[f"share_{p['basis']}_{p['kind']}"] = p["share"]
    rows = []
    for w in summary["workflows"]:
        row = {k: w[k] for k in ("task", "provider", "workflow", "n_runs", "n_ok", "n_errors",
                                 "n_correct", "success_rate", "energy_source", "estimate")}
        for metric in ("dynamic_energy_j", "duration_s", "avg_power_w"):
            for stat in ("mean", "sd", "ci_low", "ci_high"):
                row[f"{metric}_{stat}"] = w[metric][stat]
        row["epg_j"] = w["epg_j"]
        row["epg_null_reason"] = w["epg_null_reason"]
        for k in ("carbon_g_total", "water_ml_total", "methane_mg_total"):
            row[k] = w[k]
        t = taxes.get((w["task"], w["provider"]), {})
        for k in ("n_pairs", "tax_ratio", "ci_low", "ci_high", "tax_percent", "mean_of_pair_ratios"):
            row[("tax_" + k) if not k.startswith("tax") else k] = t.get(k)
        if w["workflow"] == "agentic":
            row.update(shares.get((w["task"], w["provider"]), {}))
        rows.append(row)
    return rows
