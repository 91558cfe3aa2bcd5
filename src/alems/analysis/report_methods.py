"""The report's Methods paragraph (and the paper pack's `methods.md`): what a paper's
methods section says about a batch, generated from the batch itself — hardware, energy
source and its label, sampling rate, baseline procedure, pairing and order, the estimator
and interval with their coverage check, pairs per stratum and the exclusions. Every figure
comes from the stored rows; what is not stored is said to be unknown, never guessed."""

from __future__ import annotations

from alems.analysis.groups import Group
from alems.analysis.precision import fmt_value
from alems.analysis.tax import ALL
from alems.analysis.tax_checks import LINEAR_CV_LIMIT, LOG_SD_LIMIT
from alems.analysis.views import arm_tax_rows

UNKNOWN = "not recorded"


def _join(items) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _hardware(group: Group, runs) -> str:
    host = group.host or {}
    cpus = sorted({str(c) for c in runs["cpu_model"].dropna()}) or (
        [host["cpu_model"]] if host.get("cpu_model") else [])
    hosts = sorted({str(h) for h in runs["host"].dropna()}) or (
        [host["host"]] if host.get("host") else [])
    parts = [f"{len(hosts)} host(s) ({_join(hosts) or UNKNOWN})",
             f"CPU {_join(cpus) or UNKNOWN}"]
    if host.get("cpus"):
        parts.append(f"{host['cpus']} logical CPUs")
    if host.get("kernel"):
        parts.append(f"Linux {host['kernel']}")
    if host.get("governor"):
        parts.append(f"cpufreq governor {host['governor']}")
    return "Runs were measured on " + ", ".join(parts) + "."


def _energy(summary: dict, runs) -> str:
    sources = summary["energy_sources"] or [UNKNOWN]
    if summary["estimate"]:
        label = ("ESTIMATED, not measured: CPU time of the process tree × a fixed power per "
                 "busy core; every energy figure carries the label ESTIMATE")
    else:
        label = "measured by hardware energy counters"
    hz = runs["achieved_hz"].dropna().astype(float)
    req = runs["requested_hz"].dropna().astype(float)
    rate = (f"sampled at {fmt_value(float(req.median()))} Hz requested "
            f"({fmt_value(float(hz.min()))}–{fmt_value(float(hz.max()))} Hz achieved)"
            if len(hz) and len(req) else f"sampling rate {UNKNOWN}")
    return f"Energy source: {_join(sources)} — {label}; {rate}."


def _baseline(runs) -> str:
    cols = ["baseline_id", "baseline_pkg_power_w_mean", "baseline_pkg_power_w_std",
            "baseline_repetitions", "baseline_duration_s", "baseline_measured_at"]
    base = runs[runs["baseline_id"].notna()][cols].drop_duplicates("baseline_id")
    if base.empty:
        return ("No idle baseline was recorded, so dynamic energy (package energy minus idle "
                "power × duration) is unavailable.")
    parts = []
    for b in base.itertuples(index=False):
        sd = b.baseline_pkg_power_w_std
        parts.append(f"#{int(b.baseline_id)}: {fmt_value(b.baseline_pkg_power_w_mean)}"
                     + ("" if sd != sd or sd is None else f" ± {fmt_value(sd)}")
                     + f" W idle package power over {int(b.baseline_repetitions)} × "
                       f"{fmt_value(b.baseline_duration_s)} s, measured "
                       f"{b.baseline_measured_at or UNKNOWN}")
    return ("Idle power was measured with no workload running (baseline "
            + "; ".join(parts) + "); each run's dynamic energy is its package energy minus "
            "the baseline power × its duration.")


def _pairing(group: Group) -> str:
    settings = group.settings or {}
    arms = settings.get("workflows") or []
    cool = settings.get("cool_down_s")
    order = (f"run in a seeded order (seed {group.seed}, {len(group.order)} runs stored)"
             if group.order else f"run in an order {UNKNOWN}")
    return (f"Each repetition of a task and provider ran every arm ({_join(arms) or UNKNOWN}) "
            "back to back as one pair; which arm ran first was counterbalanced within each "
            f"task × provider stratum and the pairs were {order}"
            + ("" if cool is None else f", with {fmt_value(float(cool))} s of cool-down "
                                       "between runs") + ".")


def _estimator(summary: dict) -> str:
    pct = int(round(summary["confidence"] * 100))
    heads = [t for t in arm_tax_rows(summary) if t["task"] == ALL and t["provider"] == ALL]
    checked = [t for t in heads if t.get("coverage_checked") is True]
    unchecked = [t for t in heads if t.get("coverage_checked") is False]
    cover = (f"The interval's coverage was checked by simulation (log-normal pair ratios with "
             f"log sd up to {LOG_SD_LIMIT}, linear-energy CV up to {LINEAR_CV_LIMIT}, no "
             "outlying pair); ")
    if unchecked:
        cover += ("the data of " + _join(f"{t['arm']} ({'; '.join(t['coverage_flags'])})"
                                         for t in unchecked)
                  + " lie outside that region, so their coverage is not established.")
    elif checked:
        cover += "the data of every headline interval lie within that region."
    else:
        cover += "no headline interval could be computed."
    d = summary["definitions"]
    return (f"The orchestration tax is the {d['tax_ratio']}; its {pct} % interval is "
            f"{d['tax_ci']}. " + cover)


def _strata(summary: dict) -> str:
    cells = [t for t in arm_tax_rows(summary) if t["task"] != ALL and t["provider"] != ALL]
    if not cells:
        return "No complete pair was recorded."
    text = "; ".join(f"{t['arm']} {t['task']}/{t['provider']} n = {t['n_pairs']}"
                     for t in cells)
    return f"Complete pairs per stratum (arm, task/provider): {text}."


def _exclusions(runs, summary: dict) -> str:
    failed = int((runs["status"] != "ok").sum())
    no_energy = int(((runs["status"] == "ok") & runs["dynamic_energy_uj"].isna()).sum())
    left_out = [w for w in summary["warnings"] if "left out of the tax" in w]
    text = (f"Of {len(runs)} runs, {failed} failed and {no_energy} completed without a dynamic "
            "energy; both are excluded from the energy statistics, and a pair missing an arm "
            "is excluded from the tax")
    return text + (" (" + "; ".join(left_out) + ")." if left_out else ".")


def methods_text(group: Group, summary: dict, runs) -> str:
    """One paragraph, ready to paste into a paper's methods section."""
    return " ".join([_hardware(group, runs), _energy(summary, runs), _baseline(runs),
                     _pairing(group), _estimator(summary), _strata(summary),
                     _exclusions(runs, summary)])
