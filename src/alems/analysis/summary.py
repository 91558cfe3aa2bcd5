"""`alems summary`: per-workflow statistics, the orchestration tax and where each
non-linear arm's energy goes, with warnings wherever the data cannot carry a conclusion.
docs/METHODS.md says what each figure is and which estimator and interval it uses.

Definitions (docs/DEFINITIONS.md):
- energy statistics use dynamic (workload) energy of runs that completed (status 'ok');
- success rate = correct answers / all runs (an errored run is not a success);
- EpG = dynamic energy of *all* runs that have one (failed included) / number correct;
- the tax is `alems.analysis.tax`: Σ agentic / Σ linear dynamic energy over complete
  pairs, per task × provider, per provider and overall, with a t interval on its log
  (jackknife standard error); the summary's first line is `tax.format_headline` of the
  overall row. The mean of the per-pair ratios is reported alongside, labelled as such;
- phase shares are of each non-linear arm's runs' *package* energy (phases.energy_uj is
  package energy, idle included), by stage (planning/execution/synthesis) and by activity (model
  calls, tools, waiting); the remainder is time outside any such phase;
- footprints follow the store's NULL rule: none for a run whose dynamic energy is NULL or
  negative (below the idle baseline).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from pathlib import Path

import pandas as pd

from alems.errors import AlemsError
from alems.analysis import stats
from alems.analysis.precision import DEFAULT_CONFIDENCE
from alems.analysis.hosts import host_tax
from alems.analysis.views import arm_tax_rows
from alems.analysis.summary_warnings import (_baseline_warnings, _conditions_warnings, cell_label,
                                             _tax_warnings, estimate_warning,
                                             headline_caveats, loud_runs, ordered_warnings)
from alems.analysis.frames import run_footprints
from alems.store.summary_reads import (group_has_phases, share_phases_frame,
                                       summary_runs_frame)
from alems.analysis.groups import Group
from alems.analysis.tax import (ALL, CPU_LABEL, all_devices_tax,
                                format_headline, other_arm_taxes, overall, pair_up,
                                without_arm,
                                tax_rows)
from alems.catalog.arms import AGENTIC, LINEAR, ordered_arms

__all__ = ["build_summary", "summary_refusal", "workflow_table"]

SHORT_RUN_NS = 10_000_000          # < 10 ms: only a few RAPL updates (~1 ms each)
WIDE_CI_FRACTION = 0.20            # CI half-width above 20 % of the mean
NEGATIVE_DYNAMIC_REASON = ("dynamic energy is negative (below the idle baseline); "
                           "footprint undefined")   # the store's wording (experiment/metrics)
MEAN_CI = "Student t interval of the mean of runs, n − 1 dof"
STAGE_KINDS = ("planning", "execution", "synthesis")
ACTIVITY_KINDS = ("llm", "tool", "waiting")
KIND_LABELS = {"planning": "planning", "execution": "execution", "synthesis": "synthesis",
               "llm": "model calls", "tool": "tool execution", "waiting": "waiting",
               "other": "outside phases"}


def _f(x) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _energy_dict(iv: stats.Interval, ok: pd.DataFrame, confidence: float) -> dict:
    """`_interval_dict` of the mean dynamic energy, plus the interval widened for the
    idle baseline's standard error (`stats.widen_for_baseline`) where the runs carry it."""
    out = _interval_dict(iv)
    se = ok["dynamic_energy_se_uj"].dropna() / 1e6 if "dynamic_energy_se_uj" in ok else None
    base_se = float(se.mean()) if se is not None and len(se) else None
    low, high = stats.widen_for_baseline(iv, base_se)
    out.update(baseline_se=base_se, ci_low_with_baseline=low, ci_high_with_baseline=high)
    return out


def _interval_dict(iv: stats.Interval) -> dict:
    """Mean, sd and t interval; for these positive quantities an interval reaching below 0
    is flagged (the t interval is symmetric; it then says only "at most ci_high")."""
    below = iv.ci_low is not None and iv.ci_low < 0
    return {"n": iv.n, "mean": iv.mean, "sd": iv.sd, "ci_low": iv.ci_low, "ci_high": iv.ci_high,
            "estimator": "mean of runs", "interval_method": MEAN_CI,
            "ci_note": ("the t interval reaches below 0 for a positive quantity: too few or "
                        "too spread runs; read it as 'at most ci_high'") if below else None}


def _footprints(runs: pd.DataFrame, country, factors, unknown: set) -> tuple[pd.DataFrame, int]:
    """run_footprints with the store's NULL rule applied: a run with negative dynamic energy
    has no footprint (recomputing it would give negative grams). Returns (frame, runs
    nulled by the rule)."""
    fp = run_footprints(runs, country, factors, unknown)
    negative = runs["dynamic_energy_uj"].astype(float) < 0
    fp.loc[negative, :] = float("nan")
    return fp, int(negative.sum())


def summary_refusal(group_id: str, workflows_present: set[str]) -> str | None:
    """Why a group with runs of these arms has no summary (none: it has one)."""
    if not workflows_present:
        return (f"group {group_id!r} has no runs yet; wait for `alems batch` "
                "to record some (see `alems status`)")
    if LINEAR not in workflows_present or workflows_present == {LINEAR}:
        only = ", ".join(sorted(workflows_present))
        return (f"group {group_id!r} has only {only} runs; the orchestration tax "
                "compares linear with another arm (agentic, react, yours) on the same "
                "task — run the batch with --workflows linear,agentic")
    return None


def build_summary(conn: sqlite3.Connection, db_path: str | Path, group: Group, *,
                  confidence: float = DEFAULT_CONFIDENCE, country: str | None = None,
                  factors=None) -> dict:
    db_path = Path(db_path)
    runs = summary_runs_frame(conn, group.group_id)
    workflows_present = set(runs["workflow_type"])
    refusal = summary_refusal(group.group_id, workflows_present)
    if refusal:
        raise AlemsError(refusal)
    warnings: list[str] = []
    unknown_countries: set[str] = set()
    fp, n_negative = _footprints(runs, country, factors, unknown_countries)
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
            "dynamic_energy_j": _energy_dict(energy_iv, ok, confidence),
            "duration_s": _interval_dict(stats.t_interval(ok["duration_s"].tolist(), confidence)),
            "avg_power_w": _interval_dict(stats.t_interval(ok["avg_power_w"].tolist(), confidence)),
            "epg_j": epg, "epg_null_reason": epg_reason,
            "carbon_g_total": _f(cell["carbon_g_fp"].sum(min_count=1)),
            "water_ml_total": _f(cell["water_ml_fp"].sum(min_count=1)),
            "methane_mg_total": _f(cell["methane_mg_fp"].sum(min_count=1)),
            "n_runs_without_carbon": int(cell["carbon_g_fp"].isna().sum()),
        }
        workflow_rows.append(row)
        label = f"{task}/{provider}/{wf}"
        half = energy_iv.half_width
        if energy_iv.n < 2:
            warnings.append(f"{label}: {energy_iv.n} completed run(s) with energy — no "
                            "confidence interval possible; run more repetitions")
        elif energy_iv.mean and half is not None and half / abs(energy_iv.mean) > WIDE_CI_FRACTION:
            warnings.append(
                f"{label}: {int(confidence * 100)} % CI is "
                f"±{half / abs(energy_iv.mean):.0%}"
                f" of the mean with n={energy_iv.n} — too few runs for a firm conclusion; "
                "`alems plan-reps --from-group` says how many are needed")
        if epg is None:
            warnings.append(f"{label}: EpG undefined — {epg_reason}")

    ok_runs = runs[runs["ok"]]
    run_tuples = list(zip(ok_runs["task_name"], ok_runs["provider"], ok_runs["run_number"],
                          ok_runs["workflow_type"], ok_runs["dynamic_energy_j"], strict=True))
    pairs = pair_up(run_tuples)
    taxes = tax_rows(pairs, confidence,
                     cells=runs.groupby(["task_name", "provider"]).groups.keys())
    if AGENTIC not in workflows_present:
        without_arm(taxes, AGENTIC)
    arm_tax = other_arm_taxes(run_tuples, confidence)
    epg_of = {(r["task"], r["provider"], r["workflow"]): r["epg_j"] for r in workflow_rows}
    every_arm = [(AGENTIC, t) for t in taxes] + [
        (arm, t) for arm in ordered_arms(arm_tax) for t in arm_tax[arm]["rows"]]
    for arm, t in every_arm:
        in_row = ((runs["task_name"] == t["task"]) | (t["task"] == ALL)) & \
                 ((runs["provider"] == t["provider"]) | (t["provider"] == ALL))
        t["arm"] = arm
        t["epg_linear_j"] = epg_of.get((t["task"], t["provider"], LINEAR))
        t["epg_arm_j"] = epg_of.get((t["task"], t["provider"], arm))
        if arm == AGENTIC:
            t["epg_agentic_j"] = t["epg_arm_j"]
        t["estimate"] = bool(is_estimate[in_row].any())
        if not t.get("arm_absent"):
            warnings.extend(_tax_warnings(t, confidence))
    # repetitions each arm's tax leaves out (agentic's unlabelled, as the headline's)
    # (pairs counted per cell once: one pass per arm, not per cell, at 10⁵ runs)
    pairs_in = {arm: Counter((p.task, p.provider) for p in
                             (pairs if arm == AGENTIC else pair_up(run_tuples, arm)))
                for arm in ordered_arms(workflows_present - {LINEAR})}
    for (task, provider), cell in runs.groupby(["task_name", "provider"], sort=True):
        for arm, n_pairs_of in pairs_in.items():
            dropped = int(cell["run_number"].nunique() - n_pairs_of[(task, provider)])
            if dropped > 0:
                warnings.append(f"{cell_label(task, provider, arm)}: {dropped} repetition(s) "
                                "left out of the tax (an arm errored or has no energy)")

    phase_rows, unshared = _phase_shares(conn, runs, group)
    for arm, n_unshared in unshared.items():
        warnings.append(f"{n_unshared} {arm} run(s) left out of the phase shares: the "
                        "energy of the run or of one of its phases is unknown (a gap between "
                        "samples could hide a counter wrap)")

    # data-quality warnings over the whole group
    n_est = int(is_estimate.sum())
    warnings.extend(estimate_warning(n_est))
    n_err = int((runs["status"] != "ok").sum())
    if n_err:
        warnings.append(f"{n_err} run(s) failed with an error (excluded from energy statistics, "
                        "counted in EpG and success rate)")
    n_wrong = int((runs["success"] == 0).sum())
    if n_wrong:
        warnings.append(f"{n_wrong} run(s) gave a wrong answer (counted in EpG's energy)")
    short = runs[runs["duration_ns"].notna() & (runs["duration_ns"] < SHORT_RUN_NS)]
    if len(short):
        warnings.append(f"{len(short)} run(s) shorter than {SHORT_RUN_NS / 1e6:.0f} ms — only a "
                        "few "
                        "RAPL updates (~1 ms each); their energy is unreliable")
    clipped = int((runs["dynamic_clipped"] == 1).sum())
    if clipped:
        warnings.append(f"{clipped} run(s) had negative dynamic energy clipped to 0 (baseline ≥ "
                        "measured energy): the baseline may not match the run conditions")
    no_base = int(runs["baseline_id"].isna().sum())
    if no_base:
        warnings.append(f"{no_base} run(s) have no baseline: their dynamic energy is unavailable")
    if n_negative:
        warnings.append(f"{n_negative} run(s) have no carbon/water/methane: "
                        f"{NEGATIVE_DYNAMIC_REASON} (left out of the footprint totals)")
    warnings.extend(_baseline_warnings(runs))
    hosts = host_tax(runs, confidence=confidence)
    warnings.extend(hosts.warnings)
    warnings.extend(_conditions_warnings(runs))
    headline = overall(taxes)
    # grouped by kind, most consequential first (warning_groups); within a kind the
    # headline's caveats first, in headline_caveats' order; each once
    caveats = headline_caveats([headline] + [overall(arm_tax[arm]["rows"]) for arm in
                                             ordered_arms(arm_tax)], loud_runs(runs))
    warnings = ordered_warnings(caveats + warnings)
    devices = _all_devices_tax(ok_runs, confidence)
    return {
        "group_id": group.group_id, "created_at": group.created_at, "status": group.status,
        "confidence": confidence, "estimate": bool(n_est),
        "energy_sources": sorted(set(runs["energy_source"].dropna())),
        "headline": headline, "headline_text": format_headline(headline),
        "workflows": workflow_rows, "tax": taxes, "phases": phase_rows, "warnings": warnings,
        "headline_caveats": caveats,
        "tax_energy": CPU_LABEL, **devices,
        "arm_tax": arm_tax,
        "hosts": {"machines": hosts.hosts, "per_host": hosts.per_host, "pooled": hosts.pooled},
        "definitions": {
            "tax_all_devices": "the same tax over CPU package + GPU dynamic energy (runs that "
                               "measured a GPU through NVML); absent when none did",
            "dynamic_energy": "package energy − baseline power × duration (µJ → J)",
            "tax_ratio": stats.RATIO_ESTIMATOR + "; per task × provider, per provider "
                         "(task 'all') and overall (task and provider 'all')",
            "tax_ci": stats.RATIO_INTERVAL,
            "tax_percent": "(tax_ratio − 1) × 100",
            "mean_of_pair_ratios": stats.MEAN_OF_RATIOS_LABEL,
            "spec_tax_percent": "the spec's AVG(ots.tax_percent) is a mean of per-pair "
                                "percentages, not this tax",
            "epg": "dynamic energy of all runs (failed included) ÷ correct answers",
            "phase_share": "share of each non-linear arm's package energy (idle included) per "
                           "phase kind, over its runs whose package and phase energies are "
                           "all known",
            "ci": f"{int(confidence * 100)} % CI of the mean, {MEAN_CI}",
            "avg_power_w": "package energy ÷ duration (runs.avg_power_watts)",
            "footprint": "dynamic energy × grid factor; NULL where dynamic energy is NULL or "
                         "negative",
        },
    }


def _all_devices_tax(ok_runs: pd.DataFrame, confidence: float) -> dict:
    """The tax over every measured device, labelled, where runs measured a GPU."""
    if "gpu_dynamic_energy_uj" not in ok_runs:
        return {}
    return all_devices_tax(zip(ok_runs["task_name"], ok_runs["provider"], ok_runs["run_number"],
                               ok_runs["workflow_type"], ok_runs["dynamic_energy_uj"],
                               ok_runs["gpu_dynamic_energy_uj"], strict=True), confidence)


def _phase_shares(conn, runs: pd.DataFrame, group: Group) -> tuple[list[dict], dict]:
    """Shares of each non-linear arm's package energy per phase kind (`ordered_arms`
    order), and the number of its completed runs left out, by arm. A phase whose energy the
    measurement stored as NULL (a sample gap could hide a counter wrap) is never refilled;
    its run is left out of the shares altogether, so the numerator and the denominator add
    up the same runs."""
    done = runs[(runs["workflow_type"] != LINEAR) & (runs["status"] == "ok")]
    if done.empty or not group_has_phases(conn, group.group_id):
        return [], {}
    # only these runs' phases of these kinds, three columns: what the shares add up
    phases = share_phases_frame(conn, group.group_id, LINEAR, STAGE_KINDS + ACTIVITY_KINDS)
    unknown = set(phases.loc[phases["energy_uj"].isna(), "run_id"])
    unknown |= set(done.loc[done["pkg_energy_uj"].isna(), "run_id"])
    left_out = done[done["run_id"].isin(unknown)].groupby("workflow_type").size()
    usable = done[~done["run_id"].isin(unknown)]
    cell_keys = ["workflow_type", "task_name", "provider"]
    # one pass over the phases: energy per arm × task × provider × kind
    ph = phases[["run_id", "kind", "energy_uj"]].merge(usable[["run_id", *cell_keys]],
                                                       on="run_id")
    phase_uj = ph.assign(energy_uj=ph["energy_uj"].astype(float)).groupby(
        [*cell_keys, "kind"])["energy_uj"].sum()
    rows = []
    for arm in ordered_arms(usable["workflow_type"]):
        arm_runs = usable[usable["workflow_type"] == arm]
        for (task, provider), cell in arm_runs.groupby(["task_name", "provider"], sort=True):
            total_uj = float(cell["pkg_energy_uj"].astype(float).sum())
            if not total_uj > 0:
                continue
            for basis, kinds in (("stage", STAGE_KINDS), ("activity", ACTIVITY_KINDS)):
                sums = {k: float(phase_uj.get((arm, task, provider, k), 0.0)) for k in kinds}
                sums["other"] = max(total_uj - sum(sums.values()), 0.0)
                for kind, uj in sums.items():
                    rows.append({"arm": arm, "task": task, "provider": provider,
                                 "basis": basis, "kind": kind, "label": KIND_LABELS[kind],
                                 "energy_j": uj / 1e6, "share": uj / total_uj,
                                 "n_runs": int(len(cell))})
    return rows, {arm: int(left_out[arm]) for arm in ordered_arms(left_out.index)}


# ---------------------------------------------------------------- flat views for output
def workflow_table(summary: dict) -> list[dict]:
    """One flat row per task × provider × workflow, tax and phase columns joined in: a
    non-linear arm's row carries its own arm's tax and phase shares; a linear row the
    headline (agentic) tax."""
    taxes = {(t["arm"], t["task"], t["provider"]): t for t in arm_tax_rows(summary)}
    shares: dict = {}
    for p in summary["phases"]:
        cell = shares.setdefault((p["arm"], p["task"], p["provider"]), {})
        cell[f"share_{p['basis']}_{p['kind']}"] = p["share"]
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
        arm = AGENTIC if w["workflow"] == LINEAR else w["workflow"]
        t = taxes.get((arm, w["task"], w["provider"]), {})
        for k in ("n_pairs", "tax_ratio", "ci_low", "ci_high", "tax_percent",
                  "mean_of_pair_ratios"):
            row[("tax_" + k) if not k.startswith("tax") else k] = t.get(k)
        row.update(shares.get((w["workflow"], w["task"], w["provider"]), {}))
        rows.append(row)
    return rows
