"""THE orchestration tax, computed one way for the summary, the report and the batch's
closing line: Σ agentic ÷ Σ linear dynamic energy over complete pairs (same task, provider
and repetition; both runs ok with a dynamic energy), per task × provider, per provider
over all tasks (`task` "all") and overall (`task` and `provider` "all"), each with the
interval of `stats.ratio_of_sums`. Pooled rows weigh each task × provider as the design
did (equally): Σ_h mean agentic_h ÷ Σ_h mean linear_h, which is the ratio of sums whenever
every stratum kept the same number of pairs. Needs numpy (and scipy for the interval).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from dataclasses import dataclass
from collections.abc import Iterable

from alems.analysis import stats
from alems.analysis.precision import fmt_ratio, fmt_ratio_percent
from alems.catalog.arms import AGENTIC, LINEAR, ordered_arms

ALL = "all"
# Which energy a tax is over: the spec's definition (CPU package dynamic energy), or every
# measured device (CPU package + NVIDIA GPUs) where the runs measured a GPU.
CPU_LABEL = "CPU package energy (the spec's definition)"
ALL_DEVICES_LABEL = "all measured devices (CPU package + GPU)"


@dataclass(frozen=True)
class Pair:
    task: str
    provider: str
    run_number: int
    linear_j: float
    agentic_j: float


def pair_up(runs: Iterable[tuple], arm: str = AGENTIC) -> list[Pair]:
    """Complete pairs from (task, provider, run_number, workflow_type, dynamic_energy_j) of
    runs that completed with a dynamic energy; a repetition lacking an arm is left out.
    `arm` is the non-linear arm set against linear (`agentic`, or e.g. `react`); the pair's
    `agentic_j` then holds that arm's energy."""
    arms: dict[tuple, dict[str, float]] = {}
    for task, provider, rep, wf, energy_j in runs:
        if energy_j is None or energy_j != energy_j:      # None or NaN: not usable
            continue
        arms.setdefault((task, provider, int(rep)), {})[wf] = float(energy_j)
    return [Pair(t, p, r, a[LINEAR], a[arm])
            for (t, p, r), a in sorted(arms.items()) if LINEAR in a and arm in a]


def all_devices_tax(runs: Iterable[tuple], confidence: float = 0.95) -> dict:
    """The tax over every measured device, labelled, from (task, provider, run_number,
    workflow_type, CPU dynamic µJ, GPU dynamic µJ) of completed runs: {tax_all_devices
    (rows), tax_all_devices_energy (the label), headline_all_devices_text (its line)};
    {} when no run measured a GPU. `alems summary` and the batch's closing lines both
    use it, so both print the same line."""
    runs = list(runs)
    if not any(gpu is not None and gpu == gpu for *_, gpu in runs):   # None/NaN: none
        return {}
    pairs = pair_up((t, p, rep, wf, all_device_energy_j(cpu, gpu))
                    for t, p, rep, wf, cpu, gpu in runs)
    rows = tax_rows(pairs, confidence)
    return {"tax_all_devices": rows, "tax_all_devices_energy": ALL_DEVICES_LABEL,
            "headline_all_devices_text": f"{ALL_DEVICES_LABEL}: {format_headline(overall(rows))}"}


def read_pairs(conn: sqlite3.Connection, group_id: str, arm: str = AGENTIC) -> list[Pair]:
    """The group's complete pairs, straight from `runs` (what `build_summary` pairs too)."""
    from alems.store.reads import run_energies

    return pair_up((tuple(r) for r in run_energies(conn, group_id)), arm)


def all_device_energy_j(cpu_dynamic_uj, gpu_dynamic_uj) -> float | None:
    """A run's dynamic energy over every measured device (J): CPU package + GPUs; None
    unless both are known (a run without a GPU has no all-devices energy)."""
    if cpu_dynamic_uj is None or gpu_dynamic_uj is None:
        return None
    if cpu_dynamic_uj != cpu_dynamic_uj or gpu_dynamic_uj != gpu_dynamic_uj:  # NaN
        return None
    return (float(cpu_dynamic_uj) + float(gpu_dynamic_uj)) / 1e6


def tax_row(task: str, provider: str, pairs: list[Pair], strata, confidence: float,
            equal_strata: bool = False) -> dict:
    """One tax row over `pairs`; `strata` (one label per pair) stratifies the interval and,
    with `equal_strata`, weighs each stratum by the design (`stats.ratio_of_sums`)."""
    est = stats.ratio_of_sums([p.linear_j for p in pairs], [p.agentic_j for p in pairs],
                              confidence=confidence, strata=strata, equal_strata=equal_strata)

    def pct(v):
        return None if v is None else (v - 1.0) * 100.0

    outlier = None
    if est.outlier_index is not None:
        p = pairs[est.outlier_index]
        outlier = {"task": p.task, "provider": p.provider, "run_number": p.run_number,
                   "log_ratio_z": est.outlier_z, "threshold": est.outlier_threshold,
                   "tax_ratio_without": est.ratio_without_outlier}
    return {
        "task": task, "provider": provider, "n_pairs": est.n_pairs,
        "n_tasks": len({p.task for p in pairs}),
        "tax_ratio": est.ratio, "ci_low": est.ci_low, "ci_high": est.ci_high,
        "ci_null_reason": est.ci_null_reason, "confidence": confidence, "df": est.df,
        "includes_one": est.includes_one,
        "tax_percent": est.percent, "tax_percent_ci_low": pct(est.ci_low),
        "tax_percent_ci_high": pct(est.ci_high),
        "estimator": stats.RATIO_ESTIMATOR, "interval_method": stats.RATIO_INTERVAL,
        "mean_of_pair_ratios": est.mean_of_pair_ratios,
        "mean_of_pair_ratios_label": stats.MEAN_OF_RATIOS_LABEL,
        "sd_log_pair_ratio": est.sd_log_pair_ratio, "cv_linear": est.cv_linear,
        "coverage_checked": (None if est.ci_low is None else not est.outside_checked_range),
        "coverage_flags": list(est.coverage_flags),
        "outlier_pair": outlier,
        "pairs_per_stratum": _pairs_per_stratum(strata),
    }


def _pairs_per_stratum(strata) -> dict | None:
    """min/max complete pairs per stratum of a pooled row (None for a single-stratum row)."""
    if strata is None or len(set(strata)) < 2:
        return None
    counts = Counter(strata).values()
    return {"min": min(counts), "max": max(counts)}


def tax_rows(pairs: list[Pair], confidence: float = 0.95,
             cells: Iterable[tuple[str, str]] = ()) -> list[dict]:
    """Rows per task × provider (also for `cells` without a complete pair), then per
    provider over all tasks, then overall. Pooled rows stratify by task × provider and
    weigh every stratum equally — `alems batch` plans the same repetitions for each, so a
    stratum that lost pairs keeps the weight the design gave it; a pooled row over a single
    task is the same computation as that task's row."""
    rows = []
    by_cell: dict[tuple[str, str], list[Pair]] = {cell: [] for cell in cells}
    for p in pairs:
        by_cell.setdefault((p.task, p.provider), []).append(p)
    for (task, provider), cell in sorted(by_cell.items()):
        rows.append(tax_row(task, provider, cell, None, confidence))
    providers = sorted({provider for _, provider in by_cell})
    for provider in providers:
        cell = [p for p in pairs if p.provider == provider]
        rows.append(tax_row(ALL, provider, cell, [p.task for p in cell], confidence,
                            equal_strata=True))
    rows.append(overall_row(pairs, confidence))
    return rows


def overall_row(pairs: list[Pair], confidence: float = 0.95) -> dict:
    """`tax_rows`' overall row (task and provider "all"): every pair, stratified by task ×
    provider, each stratum weighed equally."""
    return tax_row(ALL, ALL, list(pairs), [f"{p.task}\x1f{p.provider}" for p in pairs],
                   confidence, equal_strata=True)


def other_arm_taxes(runs: list[tuple], confidence: float = 0.95) -> dict:
    """Every non-linear arm other than agentic (e.g. react) against linear, the same way:
    {arm: {"rows": tax rows, "headline_text": its one line}} from `pair_up`'s run tuples."""
    out = {}
    for arm in ordered_arms({r[3] for r in runs} - {LINEAR, AGENTIC}):
        rows = [{**r, "arm": arm} for r in tax_rows(pair_up(runs, arm), confidence)]
        out[arm] = {"rows": rows, "headline_text": format_headline(overall(rows))}
    return out


def without_arm(rows: list[dict], arm: str = AGENTIC) -> list[dict]:
    """`rows` of an arm the group never ran (e.g. `--workflows linear,mypkg:agent` has no
    agentic arm): their reason says so instead of 'no complete pair', and the tax tables
    and warnings leave them out (`arm_absent`); the headline line says it."""
    for r in rows:
        r["ci_null_reason"] = f"the group ran no {arm} arm (see the other arms' lines)"
        r["arm_absent"] = True
    return rows


def overall(rows: list[dict]) -> dict:
    """The overall row (task "all", provider "all") of `tax_rows` output or summary['tax']."""
    return next(r for r in rows if r["task"] == ALL and r["provider"] == ALL)


def headline_tax(conn: sqlite3.Connection, group_id: str, confidence: float = 0.95,
                 arm: str = AGENTIC) -> dict:
    """The headline: the overall tax row of the group (see `format_headline`); `arm` sets
    another non-linear arm (e.g. `react`) against linear the same way."""
    from alems.store.reads import group_workflows

    rows = [overall_row(read_pairs(conn, group_id, arm), confidence)]   # (only it is read)
    if arm not in group_workflows(conn, group_id):
        without_arm(rows, arm)
    return {**rows[0], "arm": arm}


def format_headline(row: dict) -> str:
    """One line: the overall tax with its interval, or why there is none."""
    n = row["n_pairs"]
    arm = row.get("arm", AGENTIC)
    name = "orchestration tax" if arm == AGENTIC else f"orchestration tax of {arm}"
    scope = (f"over {n} complete pair(s)" if row["task"] != ALL
             else f"over {n} complete pair(s) of {row.get('n_tasks', '?')} task(s)")
    if row["tax_ratio"] is None:
        return f"{name}: n/a — {row['ci_null_reason'] or 'no complete pair'}"
    pct = int(round(row["confidence"] * 100))
    cells = tax_cells(row)
    if row["ci_low"] is None:
        return (f"{name}: {cells['ratio']} (Σ {arm} ÷ Σ linear dynamic energy {scope}); "
                f"no {pct} % interval: {row['ci_null_reason']}")
    ratio, low, high = cells["ratio"], cells["low"], cells["high"]
    verdict = ("includes 1: no detectable tax" if row["includes_one"]
               else "excludes 1")
    return (f"{name}: {ratio} [{pct} % CI {low}–{high}] "
            f"(Σ {arm} ÷ Σ linear dynamic energy {scope}; interval {verdict})")


def tax_cells(row: dict) -> dict[str, str]:
    """A tax row's figures as text, the same on every surface (`precision.fmt_ratio`):
    ratio ('14×'), low, high, ci ('[0.074, 2600]', or '– (why)') and percent ('+1300')."""
    if row.get("tax_ratio") is None:
        why = row.get("ci_null_reason") or "no complete pair"
        return {"ratio": "–", "low": "–", "high": "–", "ci": f"– ({why})", "percent": "–"}
    ratio, low, high = fmt_ratio(row["tax_ratio"], row.get("ci_low"), row.get("ci_high"))
    ci = (f"[{low}, {high}]" if row.get("ci_low") is not None
          else f"– ({row.get('ci_null_reason')})")
    return {"ratio": f"{ratio}×", "low": low, "high": high, "ci": ci,
            "percent": fmt_ratio_percent(row["tax_ratio"], row.get("ci_low"),
                                         row.get("ci_high"))}


def ratio_of_two_ratios(a: float, a_low: float, a_high: float, a_df: float,
                        b: float, b_low: float, b_high: float, b_df: float,
                        confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(a ÷ b, low, high, df) for two independent taxes, each with its `confidence`
    log-scale t interval exp(θ ± t_df · se) (`log_jackknife_interval`): each se is read
    back from its interval, the log ratio's variance is the sum of the two, and the t
    quantile takes Satterthwaite's df (se_a² + se_b²)² / (se_a⁴/df_a + se_b⁴/df_b)."""
    from scipy import stats as sps

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    def se(low, high, df):
        return (math.log(high) - math.log(low)) / (2 * sps.t.ppf(0.5 + confidence / 2, df))

    va, vb = se(a_low, a_high, a_df) ** 2, se(b_low, b_high, b_df) ** 2
    spread = va ** 2 / a_df + vb ** 2 / b_df
    df = (va + vb) ** 2 / spread if spread > 0 else min(a_df, b_df)
    theta = math.log(a) - math.log(b)
    half = sps.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    return math.exp(theta), math.exp(theta - half), math.exp(theta + half), df


def tax_between(a: dict | None, b: dict | None, same_batch: bool = False) -> dict:
    """Tax A ÷ tax B of two batches' headline rows, as a row `tax_cells` prints: the
    interval of `stats.ratio_of_two_ratios` (the batches are independent), or none with
    the reason — then the ratio is not given either (`tax_ratio` None)."""
    def none(why: str) -> dict:
        return {"tax_ratio": None, "ci_low": None, "ci_high": None, "df": None,
                "ci_null_reason": why}

    if same_batch:
        return none("A and B are the same batch")
    for name, row in (("A", a), ("B", b)):
        if row is None or row.get("tax_ratio") is None:
            return none(f"{name} has no overall tax")
        if row.get("ci_low") is None or row.get("df") is None:
            return none(f"{name}'s tax has no interval ({row.get('ci_null_reason')})")
    assert a is not None and b is not None
    if a["confidence"] != b["confidence"]:
        return none("A's and B's intervals are at different confidence levels")
    ratio, low, high, df = ratio_of_two_ratios(
        a["tax_ratio"], a["ci_low"], a["ci_high"], a["df"],
        b["tax_ratio"], b["ci_low"], b["ci_high"], b["df"], a["confidence"])
    return {"tax_ratio": ratio, "ci_low": low, "ci_high": high, "df": df,
            "ci_null_reason": None, "confidence": a["confidence"],
            "includes_one": low <= 1.0 <= high}


def headline_text(conn: sqlite3.Connection, group_id: str, arm: str = AGENTIC) -> str:
    """The overall tax line, the same as `alems summary`'s and the report's first line
    (`arm`: another non-linear arm against linear, e.g. react); `alems batch` closes with
    it (alems.analysis.closing)."""
    return format_headline(headline_tax(conn, group_id, arm=arm))
