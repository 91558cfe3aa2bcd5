"""The report's figures: each built once as a matplotlib Figure (no pyplot state, so many
can stay open), rendered to PNG for the HTML and the PDF (the same image in both) and to
vector SVG and PDF for the paper pack (`render`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from alems.analysis.samples import load_energy, power_curve_w
from alems.analysis.frames import median_run
from alems.analysis.palette import ARM_COLORS, OTHER_COLOR, PHASE_COLORS
from alems.analysis.tax import tax_cells
from alems.analysis.views import phase_arms, phase_label, phase_subject
from alems.catalog.arms import AGENTIC, ordered_arms

DPI = 150
VECTOR_FORMATS = ("pdf", "svg")
# Below this many runs in an arm a box plot's quartiles are mostly interpolation: show
# every run as a dot and the median as a bar instead.
STRIP_BELOW_RUNS = 10


def new_figure(figsize):
    """A Figure outside pyplot (garbage-collected like any object; no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def render(fig, fmt: str = "png") -> bytes:
    """The figure as PNG (DPI), or as vector PDF / SVG (text kept as text in SVG)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _est(estimate: bool) -> str:
    from alems.analysis.views import ESTIMATE_TAG

    return ESTIMATE_TAG if estimate else ""


def representative_runs(runs: pd.DataFrame, db_path: Path) -> list[pd.Series]:
    """Per arm of the first task × provider: `frames.median_run` of its completed runs
    that kept samples (the same rule as the examples' run)."""
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()
              & runs["samples_path"].notna()]
    if ok.empty:
        return []
    first = ok.sort_values(["task_name", "provider"]).iloc[0]
    cell = ok[(ok["task_name"] == first["task_name"]) & (ok["provider"] == first["provider"])]
    chosen = []
    for wf in ordered_arms(cell["workflow_type"]):
        run = median_run(cell[cell["workflow_type"] == wf])
        if run is not None:
            chosen.append(run)
    return chosen


def power_curves(reps: list[pd.Series], phases: pd.DataFrame, db_path: Path,
                 smooth_ms: float | None = None):
    """Smoothing window: `smooth_ms`, default max(20 ms, longest run / 100), the same for
    every panel so they compare."""
    series = []
    for run in reps:
        data = load_energy(db_path, run["samples_path"])
        if data is not None and data[0].size >= 2:
            series.append((run, data))
    if not series:
        return None
    if smooth_ms is None:
        longest_ms = max((d[0][-1] - d[0][0]) / 1e6 for _, d in series)
        smooth_ms = max(20.0, longest_ms / 100)
    fig = new_figure((8, 2.6 * len(series)))
    axes = fig.subplots(len(series), 1, sharey=True, squeeze=False)
    seen_labels = set()
    peaks: list[float] = []
    for ax, (run, (t_ns, e_uj)) in zip(axes[:, 0], series, strict=True):
        t_s, p_w = power_curve_w(t_ns, e_uj, smooth_ms)
        t0 = int(t_ns[0])
        ph = phases[phases["run_id"] == run["run_id"]]
        for _, p in ph.iterrows():
            nested = pd.notna(p["parent_seq"])
            if nested and p["kind"] not in ("tool", "waiting"):
                continue
            color = PHASE_COLORS.get(p["kind"], OTHER_COLOR)
            label = p["kind"] if p["kind"] not in seen_labels else None
            seen_labels.add(p["kind"])
            if nested:   # tools / waiting: a band along the bottom
                ax.axvspan((p["start_ns"] - t0) / 1e9, (p["end_ns"] - t0) / 1e9, ymin=0,
                           ymax=0.08, color=color, alpha=0.9, lw=0, label=label)
            else:
                ax.axvspan((p["start_ns"] - t0) / 1e9, (p["end_ns"] - t0) / 1e9, color=color,
                           alpha=0.45, lw=0, label=label)
        ax.plot(t_s, p_w, color="black", lw=0.9)
        est = run.get("energy_source") == "estimate"
        ax.set_title(f"{run['workflow_type']} run #{int(run['run_number'])} of {run['task_name']}/"
                     f"{run['provider']} — {run['dynamic_energy_uj'] / 1e6:.2f} J dynamic, "
                     f"{run['duration_ns'] / 1e9:.2f} s{_est(est)}", fontsize=9)
        ax.set_ylabel("package power (W)")
        ax.set_xlim(0, (t_ns[-1] - t0) / 1e9)
        ax.grid(alpha=0.3)
        if p_w.size:
            peaks.append(float(np.nanmax(p_w)))
    peak = max(peaks, default=0.0)
    for ax in axes[:, 0]:
        ax.set_ylim(0, peak * 1.12 if peak > 0 else 1.0)
    axes[-1, 0].set_xlabel(f"time since run start (s); power = d(pkg_energy_uj)/dt over "
                           f"{smooth_ms:.0f} ms windows")
    handles, labels = [], []
    for ax in axes[:, 0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 7), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def strip_plot(runs: pd.DataFrame) -> bool:
    """True when some arm of some task × provider has fewer than STRIP_BELOW_RUNS runs."""
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()]
    sizes = ok.groupby(["task_name", "provider", "workflow_type"]).size()
    return bool(len(sizes)) and int(sizes.min()) < STRIP_BELOW_RUNS


def energy_distributions(runs: pd.DataFrame, estimate: bool):
    """Per task × provider, each arm's runs: a box plot, or dots and a median bar when an
    arm has fewer than STRIP_BELOW_RUNS runs (`strip_plot`)."""
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()]
    if ok.empty:
        return None
    strip = strip_plot(runs)
    cells = list(ok.groupby(["task_name", "provider"], sort=True))
    ncol = min(len(cells), 3)
    nrow = int(np.ceil(len(cells) / ncol))
    fig = new_figure((8, 3.0 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    rng = np.random.default_rng(0)   # jitter only
    for ax, ((task, provider), cell) in zip(axes.flat, cells, strict=False):
        data, labels = [], []
        for wf in ordered_arms(cell["workflow_type"]):
            vals = cell.loc[cell["workflow_type"] == wf, "dynamic_energy_uj"].astype(float) / 1e6
            data.append(vals.to_numpy())
            labels.append(wf)
        ticks = [f"{wf}\n(n={len(v)})" for wf, v in zip(labels, data, strict=True)]
        if strip:
            for i, vals in enumerate(data, start=1):
                ax.hlines(float(np.median(vals)), i - 0.25, i + 0.25, color="black", lw=1.5,
                          zorder=4)
            ax.set_xticks(range(1, len(data) + 1), ticks)
            ax.set_xlim(0.4, len(data) + 0.6)
        else:
            ax.boxplot(data, tick_labels=ticks, widths=0.5, showfliers=False)
        for i, (vals, wf) in enumerate(zip(data, labels, strict=True), start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=14,
                       color=ARM_COLORS.get(wf, OTHER_COLOR), alpha=0.8, zorder=3)
        ax.set_title(f"{task} / {provider}", fontsize=9)
        ax.set_ylabel("dynamic energy (J)")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.suptitle("Dynamic energy per run, by workflow" + _est(estimate), fontsize=10)
    fig.tight_layout()
    return fig


def tax_ratios(tax_rows: list[dict], estimate: bool, confidence: float):
    """A forest plot of every arm's tax rows on a log axis: a ratio's interval (t on the
    log ratio) is symmetric there, and 0.5× and 2× sit equally far from 1."""
    rows = [t for t in tax_rows if t["tax_ratio"] is not None and t["tax_ratio"] > 0]
    if not rows:
        return None
    fig = new_figure((8, 0.6 * len(rows) + 1.4))
    ax = fig.subplots()
    ax.set_xscale("log")
    for i, t in enumerate(rows):
        color = ARM_COLORS.get(t.get("arm", AGENTIC), OTHER_COLOR)
        c = tax_cells(t)
        if t["ci_low"] is not None:
            ax.errorbar(t["tax_ratio"], i, xerr=[[t["tax_ratio"] - t["ci_low"]],
                                                  [t["ci_high"] - t["tax_ratio"]]],
                        fmt="o", color=color, capsize=4)
            note, at = f"{c['ratio']} {c['ci']}", t["ci_high"]
        else:
            ax.plot(t["tax_ratio"], i, "o", color=color)
            note, at = f"{c['ratio']} (no CI)", t["tax_ratio"]
        ax.annotate(note, (at, i), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # ticks at 1, 2, 5 × 10^k written as plain ratios (0.5×, 1×, 2×), not powers of ten
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    arms = {t.get("arm", AGENTIC) for t in rows}
    ax.set_yticks(range(len(rows)), [("" if arms == {AGENTIC} else f"{t.get('arm', AGENTIC)}: ")
                                     + f"{t['task']} / {t['provider']} (n={t['n_pairs']} pairs)"
                                     for t in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.3, -0.7)   # first row on top, as in the tax table
    lo = min(min((t["ci_low"] or t["tax_ratio"]) for t in rows), 1.0)
    hi = max(max((t["ci_high"] or t["tax_ratio"]) for t in rows), 1.0)
    ax.set_xlim(lo / 1.25, hi * 2.2)   # room for the labels right of the intervals
    top = AGENTIC if arms == {AGENTIC} else "arm"
    ax.set_xlabel(f"orchestration tax = Σ {top} / Σ linear dynamic energy, log scale "
                  f"({int(confidence * 100)} % CI: t on the log ratio, jackknife SE)")
    ax.set_title("Orchestration tax per arm, task and provider" + _est(estimate), fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def phase_breakdown(phase_rows: list[dict], estimate: bool):
    """Where each non-linear arm's package energy goes: one stacked bar per arm × task ×
    provider and basis (stage, activity), arms in `ordered_arms` order."""
    if not phase_rows:
        return None
    df = pd.DataFrame(phase_rows)
    arms = phase_arms(phase_rows)
    several = len(arms) > 1
    cells = sorted(df.groupby(["arm", "task", "provider"], sort=True),
                   key=lambda kv: (arms.index(kv[0][0]), kv[0][1:]))
    labels, lefts = [], []
    fig = new_figure((8, 0.9 * 2 * len(cells) + 1.4))
    ax = fig.subplots()
    colors = {**PHASE_COLORS, "other": "#ffffff"}
    used = set()
    row = 0
    for (arm, task, provider), cell in cells:
        for basis in ("stage", "activity"):
            part = cell[cell["basis"] == basis]
            left = 0.0
            for _, p in part.iterrows():
                lab = p["label"] if p["kind"] not in used else None
                used.add(p["kind"])
                ax.barh(row, p["share"], left=left, color=colors.get(p["kind"], OTHER_COLOR),
                        edgecolor="black", lw=0.5, label=lab)
                if p["share"] >= 0.06:
                    ax.text(left + p["share"] / 2, row, f"{p['share']:.0%}", ha="center",
                            va="center", fontsize=7)
                left += p["share"]
            cell_label = phase_label({"arm": arm, "task": task, "provider": provider}, several)
            labels.append(f"{cell_label}: by {basis}")
            lefts.append(row)
            row += 1
    ax.set_yticks(lefts, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    subject = phase_subject(phase_rows)
    ax.set_xlabel(f"share of {subject} package energy (idle included)")
    ax.set_title(f"Where {subject} energy goes, by phase" + _est(estimate), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22 if len(cells) < 2 else -0.12),
              ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
