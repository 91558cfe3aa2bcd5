"""`alems report`: a self-contained HTML or PDF report of one batch.

The content is built once (`build_report`: headings, paragraphs, tables, figures) and
rendered by `report_render.render_html` (tables as HTML, figures as base64 <img>);
`render_pdf` typesets that same HTML on A4 pages with WeasyPrint, following the
stylesheet's print rules; `report_pack` writes the paper pack from the same blocks.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from alems.analysis import figures
from alems.analysis.blocks import Block
from alems.analysis.groups import Group
from alems.analysis.report_examples import example_blocks
from alems.analysis.report_methods import methods_text
from alems.analysis.summary import KIND_LABELS, build_summary
from alems.analysis.summary_warnings import ordered_warnings
from alems.analysis.views import (ESTIMATE_TAG, HOST_COLUMNS, arm_tax_rows, headline_lines,
                                  host_tax_rows, phase_arms, phase_subject, tax_columns,
                                  tax_table)
from alems.store import reads
from alems.store.reads import phases_frame, runs_frame
from alems.catalog.arms import ACTIVITY_KINDS, AGENTIC, STAGE_KINDS


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.{digits}f}"
    return str(v)


def _ms(d: dict, digits=2) -> str:
    if d["mean"] is None:
        return "–"
    return f"{d['mean']:.{digits}f}" + ("" if d["sd"] is None else f" ± {d['sd']:.{digits}f}")


def _value(v) -> str:
    """A stored value as report text: missing → "–", true/false → yes/no, whole floats without
    ".0", lists comma-separated, dicts as "key: value; key: value" (nested in parentheses)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "–" if v != v else f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "–"
    if isinstance(v, dict):
        return "; ".join(f"{_label(k)}: " + (f"({_value(x)})" if isinstance(x, dict) and x
                                               else _value(x))
                         for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))) or "–"
    s = str(v).strip()
    return s or "–"


def _label(key) -> str:
    return str(key).replace("_", " ")


# machine fields shown each on their own row, in this order; any other field goes to "other"
_HOST_FIELDS = (("host", "host"), ("kernel", "kernel"), ("cpu_model", "CPU model"),
                ("cpus", "CPUs"), ("governor", "cpufreq governor"),
                ("load_1m", "load average (1 min)"), ("energy_source", "energy source"))


def _run_key(item) -> str:
    """One entry of the stored run order ([task, provider, workflow, rep]) as text."""
    if isinstance(item, (list, tuple)) and len(item) == 4:
        task, provider, workflow, rep = item
        return f"{task}/{provider}/{workflow} #{rep}"
    return _value(item)


def _conditions(conn: sqlite3.Connection, group: Group, summary: dict, runs) -> list[list[str]]:
    host = group.host or {}
    rows = [["group id", group.group_id], ["created", _value(group.created_at)],
            ["status", _value(group.status)], ["command", _value(group.command)]]
    for key, label in _HOST_FIELDS:
        if key in host:
            v = host[key]
            unread = v is None and key not in ("energy_source",)   # read from the system
            rows.append([f"machine: {label}",
                         "– (not readable on that machine)" if unread else _value(v)])
    other_host = {k: v for k, v in host.items() if k not in dict(_HOST_FIELDS)}
    if other_host:
        rows.append(["machine: other", _value(other_host)])
    srcs = ", ".join(summary["energy_sources"]) or "–"
    rows.append(["energy source(s)",
                 srcs + (" — ESTIMATE, not measured" if summary["estimate"] else "")])
    models = sorted({f"{p}: {m}"
                     for p, m in zip(runs["provider"], runs["model"], strict=True) if m})
    if models:
        rows.append(["model(s)", "; ".join(models)])
    base_ids = sorted({int(b) for b in runs["baseline_id"].dropna()})
    for bid in base_ids:
        b = reads.baseline_row(conn, bid)
        if b is None:
            continue
        sd = b["pkg_power_w_std"]
        rows.append([f"baseline #{bid}",
                     f"measured {_value(b['measured_at'])} ({_value(b['energy_source'])}), pkg "
                     f"idle {_fmt(b['pkg_power_w_mean'])}"
                     + ("" if sd is None else f" ± {_fmt(sd)}")
                     + f" W, n={_value(b['repetitions'])} × {_fmt(b['duration_s'], 3)} s"])
    if not base_ids:
        rows.append(["baseline", "none recorded — dynamic energy unavailable"])
    rows.append(["seed", _fmt(group.seed)])
    settings = dict(group.settings or {})
    for k in sorted(settings):
        rows.append([f"setting: {k}", _value(settings[k])])
    if group.order:
        head = ", ".join(_run_key(x) for x in group.order[:6])
        rows.append(["run order", f"{len(group.order)} runs, seeded (seed {_fmt(group.seed)}); "
                                  f"first: {head}{' …' if len(group.order) > 6 else ''}"])
    return rows


def build_report(conn: sqlite3.Connection, db_path: str | Path, group: Group, *,
                 confidence: float = 0.95, country: str | None = None, factors=None) -> list[Block]:
    db_path = Path(db_path)
    summary = build_summary(conn, db_path, group, confidence=confidence, country=country,
                            factors=factors)
    runs = runs_frame(conn, group.group_id)
    phases = phases_frame(conn, group.group_id)
    est = summary["estimate"]
    est_tag = ESTIMATE_TAG if est else ""
    pct = int(round(confidence * 100))
    # the answer first, once: every arm's tax with its interval (the strings `alems summary`
    # prints), the caveats that matter most beside it, then accuracy and energy source
    out: list[Block] = [Block("h1", f"A-LEMS report — batch {group.group_id}"),
                        Block("h2", "Headline")]
    out.extend(Block("p", line + est_tag) for line in headline_lines(summary))
    caveats = summary["headline_caveats"]   # the same strings `alems summary` prints
    out.extend(Block("warn", w) for w in caveats[:HEADLINE_CAVEATS])
    if len(caveats) > HEADLINE_CAVEATS:
        out.append(Block("p", f"{len(caveats) - HEADLINE_CAVEATS} more caveat(s) under "
                              "Warnings."))
    out.append(Block("p", f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
                          f" from {db_path.name}. Energy is {_energy_basis(summary)} minus the "
                          f"idle baseline (dynamic energy); intervals are {pct} % confidence "
                          "intervals."))
    out.extend(Block("warn", w) for w in _estimate_caveat(summary))
    out.append(Block("table", "Accuracy per arm (correct answers ÷ runs)",
                     ["workflow", "runs", "correct", "accuracy"], _accuracy_rows(summary),
                     name="accuracy"))
    out.append(Block("p", f"Energy source: {', '.join(summary['energy_sources']) or '–'}"
                          + (" — ESTIMATE, not measured" if est else "") + "."))
    out.append(Block("h2", "Summary per task, provider and workflow"))
    out.append(Block("table", f"Per workflow: dynamic energy, duration and average package "
                              f"power (mean ± sd, {pct} % t-interval of the mean){est_tag}",
                     ["task", "provider", "workflow", "runs (ok/err)", "success", "energy J",
                      f"energy {pct}% CI", "duration s", "power W", "EpG J"],
                     [[w["task"], w["provider"], w["workflow"],
                       f"{w['n_runs']} ({w['n_ok']}/{w['n_errors']})",
                       f"{w['n_correct']}/{w['n_runs']} ({w['success_rate']:.0%})",
                       *_energy_cells(w["dynamic_energy_j"]),
                       _ms(w["duration_s"], 3), _ms(w["avg_power_w"], 1),
                       _fmt(w["epg_j"]) if w["epg_j"] is not None else "– "
                                                                       f"({w['epg_null_reason']})"]
                      for w in summary["workflows"]]))
    arms = "each non-linear arm" if summary.get("arm_tax") else AGENTIC
    out.append(Block("table", f"Orchestration tax (Σ {arms} ÷ Σ linear dynamic energy over "
                              f"complete pairs; {pct} % interval: "
                              f"{summary['definitions']['tax_ci']}){est_tag}",
                     tax_columns(summary, pct), tax_table(summary), name="tax"))
    if host_tax_rows(summary):   # a fleet or merged shards: pairs compared within a host
        out.append(Block("table", f"Tax per host, and pooled with the host as a block{est_tag}",
                         HOST_COLUMNS, host_tax_rows(summary)))
    if any(w["dynamic_energy_j"].get("ci_note") for w in summary["workflows"]):
        out.append(Block("p", f"† The {pct} % t interval reaches below 0 J although energy is "
                              "positive: too few or too spread runs; read it as 'at most' its "
                              "upper bound, and run more repetitions."))
    if summary["phases"]:
        out.append(_phase_share_table(summary["phases"], est_tag))
    out.append(Block("table", f"Footprint of all runs' dynamic energy (grid factors; empty = no "
                              f"factor){est_tag}",
                     ["task", "provider", "workflow", "carbon g CO2", "water ml", "methane mg"],
                     [[w["task"], w["provider"], w["workflow"], _sig(w["carbon_g_total"]),
                       _sig(w["water_ml_total"]), _sig(w["methane_mg_total"])]
                      for w in summary["workflows"]]))

    out.append(Block("h2", "Figures"))
    reps = figures.representative_runs(runs, db_path)
    curves = figures.power_curves(reps, phases, db_path)
    if curves is not None:
        out.append(_figure("power_curves", "Figure 1. Package power of a representative run of "
                           "each arm (the run at the lower median of its arm's dynamic energy, as "
                           f"in the examples), phases shaded{est_tag}.", curves))
    else:
        out.append(Block("warn", "Figure 1 (power curves) left out: no run has a readable samples "
                                 "file next to the database."))
    spread = (f"dots: runs; bar: median — fewer than {figures.STRIP_BELOW_RUNS} runs in an arm"
              if figures.strip_plot(runs) else "box: quartiles; dots: runs")
    for name, caption, fig in (
        ("energy_per_run", f"Figure 2. Dynamic energy per run by workflow ({spread}){est_tag}.",
         figures.energy_distributions(runs, est)),
        ("tax_forest", f"Figure 3. Orchestration tax of every arm with its {pct} % interval, "
                       f"on a log axis; dashed line = no tax{est_tag}.",
         figures.tax_ratios(arm_tax_rows(summary), est, confidence)),
        ("phase_shares", f"Figure 4. Share of {phase_subject(summary['phases'])} package "
                         f"energy by stage and by activity{est_tag}.",
         figures.phase_breakdown(summary["phases"], est)),
    ):
        if fig is not None:
            out.append(_figure(name, caption, fig))
    out.extend(example_blocks(runs, phases, est_tag))
    out.append(Block("h2", "Conditions"))
    out.append(Block("table", "Batch conditions", ["item", "value"],
                     _conditions(conn, group, summary, runs), identifiers=True,
                     name="conditions"))
    out.append(Block("h2", "Warnings"))
    warnings = ordered_warnings(summary["warnings"])
    if warnings:   # most consequential first, as under the headline
        out.extend(Block("warn", w) for w in warnings)
    else:
        out.append(Block("p", "None: the data raise no flags."))
    out.append(Block("h2", "Methods"))
    out.append(Block("p", methods_text(group, summary, runs), name="methods"))
    out.append(Block("h2", "Definitions"))
    for k, v in summary["definitions"].items():
        out.append(Block("p", f"{k}: {v}"))
    return out


# caveats shown beside the headline (each headline line carries the ESTIMATE tag itself);
# the rest wait under Warnings
HEADLINE_CAVEATS = 3


def _estimate_caveat(summary: dict) -> list[str]:
    return (["All energy figures in this report marked ESTIMATE come from a CPU-time × W/core "
             "model, not from a hardware counter."] if summary["estimate"] else [])


def _figure(name: str, caption: str, fig) -> Block:
    return Block("figure", caption, png=figures.render(fig, "png"), figure=fig, name=name)


def _phase_share_table(phase_rows: list[dict], est_tag: str) -> Block:
    """Share per phase kind, one row per arm × task × provider (every non-linear arm, in
    `ordered_arms` order; the arm column only when there are several); kinds no run spent
    (printable) energy in (e.g. waiting where no arm waits) get no column."""
    kinds = [*STAGE_KINDS, *ACTIVITY_KINDS]
    arms = phase_arms(phase_rows)
    table: dict[tuple, dict] = {}
    for p in phase_rows:
        table.setdefault((p["arm"], p["task"], p["provider"]), {})[(p["basis"], p["kind"])] = \
            p["share"]

    def key(k):
        return ("stage" if k in STAGE_KINDS else "activity", k)
    keys = [key(k) for k in kinds] + [("activity", "other")]
    labels = [KIND_LABELS[k] for k in kinds] + ["outside llm/tool/wait"]
    # a column every cell of which reads as nothing (a float residue of the remainder
    # prints 0.0 %) says nothing
    used = [i for i, k in enumerate(keys)
            if any(_pct(s.get(k)) not in ("–", _pct(0.0)) for s in table.values())]
    several = len(arms) > 1
    rows = [([arm] if several else []) + [task, provider] + [_pct(shares.get(keys[i]))
                                                             for i in used]
            for (arm, task, provider), shares in sorted(
                table.items(), key=lambda kv: (arms.index(kv[0][0]), kv[0][1:]))]
    return Block("table", f"Share of {phase_subject(phase_rows)} package energy per phase"
                          f"{est_tag}",
                 (["arm"] if several else []) + ["task", "provider"] + [labels[i] for i in used],
                 rows, name="phase_shares")


def _energy_basis(summary: dict) -> str:
    """What the energy figures really are, from the sources the runs used."""
    sources = summary["energy_sources"]
    if summary["estimate"] and sources == ["estimate"]:
        return "an ESTIMATE (CPU time × W/core), not a hardware measurement,"
    names = ", ".join(s for s in sources if s != "estimate") or "–"
    basis = f"package energy measured by {names}"
    return basis + (" (some runs: an ESTIMATE from CPU time)" if summary["estimate"] else "")


def _accuracy_rows(summary: dict) -> list[list[str]]:
    arms: dict[str, list[int]] = {}
    for w in summary["workflows"]:
        n = arms.setdefault(w["workflow"], [0, 0])
        n[0] += w["n_runs"]
        n[1] += w["n_correct"]
    return [[wf, str(n), str(c), "–" if not n else f"{c / n:.0%}"]
            for wf, (n, c) in sorted(arms.items())]


def _energy_cells(d: dict) -> list[str]:
    """('mean ± sd', '[low, high]') rounded to what the interval supports; † marks an
    interval of a positive quantity that reaches below 0."""
    from alems.analysis.precision import fmt_interval, fmt_value

    mean, low, high = fmt_interval(d["mean"], d["ci_low"], d["ci_high"])
    if d["mean"] is None:
        return ["–", "–"]
    half = None if d["ci_low"] is None else (d["ci_high"] - d["ci_low"]) / 2
    sd = "" if d["sd"] is None else f" ± {fmt_value(d['sd'], half)}"
    ci = "–" if d["ci_low"] is None else f"[{low}, {high}]" + ("†" if d.get("ci_note") else "")
    return [mean + sd, ci]


def _sig(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def _pct(v) -> str:
    return "–" if v is None else f"{v:.1%}"


# the renderers, where callers of the report have always found them
from alems.analysis.report_render import (SHORT_TABLE_ROWS, render_html,  # noqa: E402,F401
                                          render_pdf, write_report)
