"""The summary's warnings wherever the data cannot carry a conclusion: a tax interval on
too few pairs or outside the simulated coverage range, stale or foreign baselines, runs
that were not quiet or lost energy to a sample gap.

`headline_caveats` picks, in a fixed order, the caveats that qualify a headline tax (runs
not quiet, interval not vouched for — spread outside the checked region or an outlying
pair —, too few pairs): `alems summary` shows them
first, and the batch's closing lines, the report and the dashboard show the same strings
under the same headline. Needs no pandas (the batch's closing lines use it).

`warning_groups` is the one order of the full list (summary's `warnings`, hence `alems
summary`, the report and the dashboard): grouped by kind, the most consequential kind first
(WARNING_KINDS), in the order they were raised within a kind."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from alems.analysis.precision import fmt_ratio
from alems.analysis.tax import ALL, tax_cells

from alems.catalog.baselines import BASELINE_MAX_AGE_S
from alems.catalog.arms import AGENTIC

if TYPE_CHECKING:
    import pandas as pd

FEW_PAIRS = 10                     # below: the interval leans on the pair ratios' shape

# Warning kinds, most consequential first, each with the phrase its warnings carry (the
# builders below put it in their text, so wording and kind cannot drift apart); a warning
# without one of these phrases is of kind OTHER.
ESTIMATE_KIND, NOT_QUIET_KIND = "estimate", "not quiet"
UNCHECKED_KIND, FEW_PAIRS_KIND, OTHER_KIND = "interval unchecked", "few pairs", "other"
_ESTIMATE_PHRASE = "use ESTIMATED energy"
_NOT_QUIET_PHRASE = "were not measured on a quiet machine"
_UNCHECKED_PHRASE = "the interval's coverage was not checked for data like these"
_FEW_PAIRS_PHRASE = "the tax CI rests on only"
_KIND_PHRASES = ((ESTIMATE_KIND, _ESTIMATE_PHRASE), (NOT_QUIET_KIND, _NOT_QUIET_PHRASE),
                 (UNCHECKED_KIND, _UNCHECKED_PHRASE), (FEW_PAIRS_KIND, _FEW_PAIRS_PHRASE))
WARNING_KINDS = tuple(k for k, _ in _KIND_PHRASES) + (OTHER_KIND,)


def warning_kind(text: str) -> str:
    """The kind of one of the summary's warnings (see _KIND_PHRASES)."""
    for kind, phrase in _KIND_PHRASES:
        if phrase in text:
            return kind
    return OTHER_KIND


def warning_groups(warnings: list[str]) -> list[tuple[str, list[str]]]:
    """[(kind, its warnings)] in WARNING_KINDS order (kinds without one left out); each
    warning once, in its first-raised place within its kind."""
    groups: dict[str, list[str]] = {k: [] for k in WARNING_KINDS}
    for w in dict.fromkeys(warnings):
        groups[warning_kind(w)].append(w)
    return [(k, ws) for k, ws in groups.items() if ws]


def ordered_warnings(warnings: list[str]) -> list[str]:
    """`warning_groups` flattened: the summary's `warnings` as every surface lists them."""
    return [w for _, ws in warning_groups(warnings) for w in ws]


def estimate_warning(n_estimated: int) -> list[str]:
    if not n_estimated:
        return []
    return [f"{n_estimated} run(s) {_ESTIMATE_PHRASE} (CPU time × W/core), not measured; "
            "their energy, tax and footprint are estimates"]


def _parse_time(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def cell_label(task: str, provider: str, arm: str = AGENTIC) -> str:
    """How a warning names a task × provider of an arm's tax: the arm only where it is not
    the headline's (agentic)."""
    return f"{task}/{provider}" + ("" if arm == AGENTIC else f" ({arm})")


def _label(t: dict) -> str:
    return cell_label(t["task"], t["provider"], t.get("arm", AGENTIC))


def _few_pairs(t: dict) -> list[str]:
    if t["ci_low"] is None or t["n_pairs"] >= FEW_PAIRS:
        return []
    return [f"{_label(t)}: {_FEW_PAIRS_PHRASE} {t['n_pairs']} pairs — valid if the pair "
            "ratios are roughly log-normal, which so few pairs cannot show; run "
            f"{FEW_PAIRS}+ repetitions"]


def _outside_checked(t: dict) -> list[str]:
    if t["ci_low"] is None or t["coverage_checked"] is not False:
        return []
    pct = int(round(t["confidence"] * 100))
    return [f"{_label(t)}: {_UNCHECKED_PHRASE} — "
            f"{'; '.join(t['coverage_flags'])}; its {pct} % coverage is not established"]


def not_quiet_warning(loud: list[dict]) -> list[str]:
    """The warning about runs measured on a machine that was not quiet; `loud`: those runs
    (task_name, provider, workflow_type, run_number, not_quiet_reason) in the runs table's
    order (alems.store.reads.run_conditions)."""
    if not loud:
        return []
    first = loud[0]
    return [f"{len(loud)} run(s) {_NOT_QUIET_PHRASE} (e.g. "
            f"{first['task_name']}/{first['provider']}/{first['workflow_type']} rep "
            f"{int(first['run_number'])}: {first['not_quiet_reason']}); their energy "
            "includes other work's — rerun with --require-quiet"]


def headline_caveats(headlines: list[dict], loud: list[dict]) -> list[str]:
    """The caveats of the headline rows (each arm's overall tax row), in this order: runs
    not quiet, an interval outside the checked region, too few pairs."""
    out = not_quiet_warning(loud)
    for check in (_outside_checked, _few_pairs):
        for row in headlines:
            if row.get("tax_ratio") is not None:
                out.extend(check(row))
    return out


def _tax_warnings(t: dict, confidence: float) -> list[str]:
    label = _label(t)
    pct = int(round(confidence * 100))
    if t["tax_ratio"] is None:
        return [f"{label}: no tax — {t['ci_null_reason'] or 'no complete pair'}"]
    out = []
    if t["ci_low"] is None:
        out.append(f"{label}: no {pct} % interval for the tax — {t['ci_null_reason']}")
        return out
    pooled_copy = t["task"] == ALL and t["provider"] != ALL   # its tasks warn already
    if not pooled_copy:
        out.extend(_few_pairs(t))
    cell_row = t["task"] != ALL   # pooled rows' flags are their cells' (JSON has them);
    if cell_row:                  # the headline's own come first (headline_caveats)
        out.extend(_outside_checked(t))
    outlier = t.get("outlier_pair")
    if outlier and cell_row:
        z = outlier["log_ratio_z"]            # ∞: the other pairs' ratios are all equal
        out.append(f"{label}: repetition {outlier['run_number']} is an outlier among the pair "
                   f"ratios (z {'∞' if z == float('inf') else f'{z:.1f}'} > "
                   f"{outlier['threshold']:.1f}); "
                   f"without it the tax is {fmt_ratio(outlier['tax_ratio_without'])[0]}× "
                   f"instead of {tax_cells(t)['ratio']} — the pair ratios are not one smooth "
                   "distribution (a second kind of run, or a glitch: inspect it), and a "
                   "rarer kind of pair may be missing entirely")
    if t["includes_one"]:
        out.append(f"{label}: tax CI {tax_cells(t)['ci']} includes 1 — "
                   "the data do not show an orchestration tax")
    return out


def _baseline_warnings(runs: pd.DataFrame) -> list[str]:
    out = []
    by_base = runs[runs["baseline_id"].notna()].groupby("baseline_id")
    for bid, cell in by_base:
        measured = _parse_time(cell["baseline_measured_at"].iloc[0])
        starts = [t for t in (_parse_time(s) for s in cell["started_at"]) if t is not None]
        if measured is not None and starts:
            age_s = (max(starts) - measured).total_seconds()
            if age_s > BASELINE_MAX_AGE_S:
                out.append(f"baseline #{int(bid)} was measured {age_s / 3600:.1f} h before the "
                           "last "
                           f"run using it; idle power may have drifted — re-measure it")
            if min(starts) < measured:
                out.append(f"baseline #{int(bid)} was measured after some of the runs using it")
        b_src = cell["baseline_energy_source"].iloc[0]
        r_src = set(cell["energy_source"].dropna())
        if isinstance(b_src, str) and r_src and r_src != {b_src}:
            out.append(f"baseline #{int(bid)} came from {b_src} but runs used "
                       f"{', '.join(sorted(r_src))}")
    return out


def loud_runs(runs: pd.DataFrame) -> list[dict]:
    """The runs of the runs frame that were not quiet, as `not_quiet_warning` takes them."""
    if "quiet" not in runs:
        return []
    cols = ["task_name", "provider", "workflow_type", "run_number", "not_quiet_reason"]
    return runs.loc[runs["quiet"] == 0, cols].to_dict("records")


def _conditions_warnings(runs: pd.DataFrame) -> list[str]:
    """Runs measured on a machine that was not quiet (alems.measure.quiet), and runs whose
    energy is unknown because a sampling gap could hide a counter wrap."""
    out = []
    if "quiet" in runs:
        out.extend(not_quiet_warning(loud_runs(runs)))
    if "null_reasons" in runs:
        gaps = runs["null_reasons"].fillna("").str.contains("counter wrap", regex=False)
        if gaps.any():
            out.append(f"{int(gaps.sum())} run(s) have unknown energy: a gap between samples "
                       "could hide a whole counter wrap (see runs.max_sample_gap_ns)")
    return out
