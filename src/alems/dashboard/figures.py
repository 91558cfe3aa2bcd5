"""Plotly figure specs (plain dicts, rendered by the bundled plotly.js in the page)."""

from __future__ import annotations

import json
import math

from alems.analysis.palette import ARM_COLORS, OTHER_COLOR, PHASE_COLORS
from alems.analysis.views import phase_arms, phase_label, phase_subject
from alems.catalog.arms import AGENTIC, ordered_arms
from alems.measure.names import DOMAINS

DOMAIN_COLORS = dict(zip(DOMAINS, ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"),
                         strict=True))
TOP_BAND = 0.93      # top-level phases are named above this height (paper coordinates)
CHILD_BAND = 0.06    # nested phases (model calls, tools, waiting) drawn as a strip below
FEW_POINTS = 50      # a curve this short is drawn with markers too
# Above this many runs of an arm the energy figure draws its boxes from quartiles, without a
# point per run (10⁵ runs: megabytes of page for points no one can tell apart, issue 23).
BOX_POINTS_MAX = 5000
_BASE_LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "template": None,
                "paper_bgcolor": "#ffffff", "plot_bgcolor": "#fafafa",
                "legend": {"orientation": "h", "y": -0.2}}


def to_json(fig: dict) -> str:
    """Figure JSON that is safe inside a <script> element (no '<', '>' or '&' left raw)."""
    import plotly.io

    text = plotly.io.to_json(fig, validate=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layout(title: str, **kw) -> dict:
    lay = dict(_BASE_LAYOUT, title={"text": title, "x": 0.01})
    lay.update(kw)
    return lay


def power_figure(curves: dict, phases: list[dict] | None = None, t0_ns: int | None = None,
                 title: str = "Power per energy domain", estimate: bool = False) -> dict:
    """Each domain's smoothed power (shown) and its raw min/max envelope (hidden: the
    page's "raw envelope" button or the legend shows it), a dotted line at the source's
    ceiling (nothing is drawn above it: curves.clip_to), the phases shaded."""
    data = []
    what = "ESTIMATE " if estimate else ""
    for domain, c in curves.items():
        color = DOMAIN_COLORS.get(domain)
        win = f"{c['window_ms']:g} ms"
        few = len(c["smooth_w"]) <= FEW_POINTS      # a line needs points to be seen
        data.append({"type": "scatter", "mode": "lines+markers" if few else "lines",
                     "name": f"{domain} {what}W ({win} mean)",
                     "x": c["smooth_t_s"], "y": c["smooth_w"], "meta": [domain, "smooth"],
                     "line": {"width": 1.6, "color": color},
                     "hovertemplate": f"{domain}: %{{y:.2f}} W ({win} mean) at %{{x:.3f}} s"
                                      "<extra></extra>"})
        data.append({"type": "scatter", "mode": "lines", "name": f"{domain} raw envelope",
                     "x": c["t_s"], "y": c["w"], "meta": [domain, "raw"], "visible": False,
                     "line": {"width": 0.7, "color": color}, "opacity": 0.5,
                     "hovertemplate": f"{domain} raw: %{{y:.2f}} W at %{{x:.3f}} s"
                                      "<extra></extra>"})
    shapes, notes = [], []
    for p in phases or []:
        if t0_ns is None:
            break
        x0, x1 = (p["start_ns"] - t0_ns) / 1e9, (p["end_ns"] - t0_ns) / 1e9
        color = PHASE_COLORS.get(p["kind"], OTHER_COLOR)
        if p.get("parent_seq") is None:
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1,
                           "y0": 0, "y1": 1, "fillcolor": color, "opacity": 0.12,
                           "line": {"width": 0}, "layer": "below"})
            notes.append({"x": (x0 + x1) / 2, "y": TOP_BAND, "xref": "x", "yref": "paper",
                          "text": p["name"], "showarrow": False,
                          "font": {"size": 11, "color": color}})
        else:
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1,
                           "y0": 0, "y1": CHILD_BAND, "fillcolor": color, "opacity": 0.7,
                           "line": {"width": 0.5, "color": "#ffffff"}})
    for kind in sorted({p["kind"] for p in phases or [] if p.get("parent_seq") is not None}):
        # legend entries naming the strip's colours
        marker = {"symbol": "square", "size": 10, "color": PHASE_COLORS.get(kind, OTHER_COLOR)}
        data.append({"type": "scatter", "mode": "markers", "x": [None], "y": [None],
                     "name": f"phase: {kind}", "marker": marker})
    for domain, c in curves.items():
        if c.get("ceiling_w") is None:
            continue
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                       "y0": c["ceiling_w"], "y1": c["ceiling_w"],
                       "line": {"dash": "dot", "width": 1, "color": "#888"}})
        notes.append({"x": 1, "xref": "paper", "xanchor": "right", "y": c["ceiling_w"],
                      "yref": "y", "yanchor": "bottom", "showarrow": False,
                      "text": f"{domain}: the most the {what.lower()}source reports, "
                              f"{c['ceiling_w']:g} W", "font": {"size": 10, "color": "#666"}})
    return {"data": data, "layout": _layout(
        title, shapes=shapes, annotations=notes, hovermode="x",
        xaxis={"title": {"text": "time since run start (s)"}, "rangeslider": {"visible": False}},
        yaxis={"title": {"text": "power (W)"}, "rangemode": "tozero"})}


def energy_distribution_figure(runs: list[dict]) -> dict:
    """Dynamic energy (J) of every completed run, one box per task × provider and arm."""
    data = []
    for arm in ordered_arms(r["workflow_type"] for r in runs):
        xs, ys, text = [], [], []
        for r in runs:
            if r["workflow_type"] != arm or r["status"] != "ok" or r["dynamic_energy_uj"] is None:
                continue
            xs.append(f"{r['task_name']} / {r['provider']}")
            ys.append(r["dynamic_energy_uj"] / 1e6)
            text.append(f"run {r['run_id']} (rep {r['run_number']})")
        if len(ys) > BOX_POINTS_MAX:
            data.append(_box_of_quartiles(arm, xs, ys))
        elif ys:
            data.append({"type": "box", "name": arm, "x": xs, "y": ys, "text": text,
                         "boxpoints": "all", "jitter": 0.4, "pointpos": 0,
                         "marker": {"color": ARM_COLORS.get(arm, OTHER_COLOR), "size": 4},
                         "hovertemplate": "%{text}: %{y:.3f} J<extra>" + arm + "</extra>"})
    return {"data": data, "layout": _layout(
        "Dynamic energy per run, by arm", boxmode="group",
        yaxis={"title": {"text": "dynamic energy (J)"}, "rangemode": "tozero"})}


def _box_of_quartiles(arm: str, xs: list[str], ys: list[float]) -> dict:
    """An arm's boxes drawn from their quartiles (plotly's own: linear interpolation) and
    Tukey whiskers (the furthest run within 1.5 IQR), no point per run: the page then
    carries a few numbers per box instead of every run's."""
    import numpy as np

    by_x: dict[str, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        by_x.setdefault(x, []).append(y)
    cols: dict[str, list] = {k: [] for k in ("x", "q1", "median", "q3", "lowerfence",
                                             "upperfence", "mean")}
    for x, values in by_x.items():
        v = np.asarray(values, dtype=float)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        reach = 1.5 * (q3 - q1)
        for key, val in (("x", x), ("q1", q1), ("median", med), ("q3", q3),
                         ("lowerfence", v[v >= q1 - reach].min()),
                         ("upperfence", v[v <= q3 + reach].max()), ("mean", v.mean())):
            cols[key].append(val if key == "x" else float(val))
    return {"type": "box", "name": f"{arm} ({len(ys)} runs)", **cols, "boxpoints": False,
            "marker": {"color": ARM_COLORS.get(arm, OTHER_COLOR)}}


def phase_figure(phase_rows: list[dict]) -> dict:
    """Share of each non-linear arm's package energy per phase kind (summary's phase rows,
    in its `ordered_arms` order), stacked; a bar names its arm when there are several."""
    several = len(phase_arms(phase_rows)) > 1
    labels: list[str] = []
    for p in phase_rows:
        if p["label"] not in labels:
            labels.append(p["label"])
    data = []
    for label in labels:
        rows = [p for p in phase_rows if p["label"] == label]
        kind = rows[0]["kind"]
        data.append({"type": "bar", "orientation": "h", "name": label,
                     "y": [f"{phase_label(p, several)} · by {p['basis']}" for p in rows],
                     "x": [p["share"] * 100 for p in rows],
                     "customdata": [p["energy_j"] for p in rows],
                     "marker": {"color": PHASE_COLORS.get(kind, OTHER_COLOR)},
                     "hovertemplate": label + ": %{x:.1f} % (%{customdata:.3f} J)<extra></extra>"})
    subject = phase_subject(phase_rows)
    return {"data": data, "layout": _layout(
        f"Where {subject} package energy goes", barmode="stack",
        xaxis={"title": {"text": f"share of {subject} package energy (%)"}, "range": [0, 100]},
        yaxis={"automargin": True})}


COMPARE_COLORS = ("#1f77b4", "#ff7f0e")   # batch A, batch B: distinct from each other


def compare_label(row: dict) -> str:
    """A compare bar's x label: task / provider, and the arm where it is not agentic."""
    arm = "" if row.get("arm", AGENTIC) == AGENTIC else f" ({row['arm']})"
    return f"{row['task']} / {row['provider']}{arm}"


def compare_figure(sides: list[tuple[str, list[dict]]]) -> dict:
    """Tax ratio with its interval per task × provider (and arm), one coloured, named
    series per batch (`sides`: [(legend name, tax rows)]), grouped side by side."""
    from alems.analysis.tax import tax_cells

    data = []
    for (name, rows), color in zip(sides, COMPARE_COLORS, strict=False):
        xs, ys, lo, hi, text = [], [], [], [], []
        for r in rows:
            ratio = r.get("tax_ratio")
            if ratio is None or not math.isfinite(ratio):
                continue
            c = tax_cells(r)
            text.append(f"{c['ratio']} {c['ci']}")
            xs.append(compare_label(r))
            ys.append(ratio)
            lo.append(ratio - r["ci_low"] if r.get("ci_low") is not None else 0)
            hi.append(r["ci_high"] - ratio if r.get("ci_high") is not None else 0)
        data.append({"type": "bar", "name": name, "x": xs, "y": ys,
                     "marker": {"color": color}, "offsetgroup": name,
                     "error_y": {"type": "data", "symmetric": False, "array": hi,
                                 "arrayminus": lo},
                     "text": text, "textposition": "none",
                     "hovertemplate": "%{x}: %{text}<extra>" + name + "</extra>"})
    return {"data": data, "layout": _layout(
        "Orchestration tax (arm ÷ linear energy) with interval, per task × provider",
        barmode="group", showlegend=True,
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        margin={"l": 60, "r": 20, "t": 80, "b": 50},   # the legend above the plot
        shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                 "line": {"dash": "dot", "color": "#555"}}],
        xaxis={"type": "category", "automargin": True, "tickangle": -30},
        yaxis={"title": {"text": "tax ratio (×)"}, "rangemode": "tozero"})}


def curves_json(curves: dict) -> str:
    """Just the curves (for zoom requests), as plain JSON."""
    return json.dumps({d: {"t_s": c["t_s"].tolist(), "w": c["w"].tolist(),
                           "smooth_t_s": c["smooth_t_s"].tolist(),
                           "smooth_w": c["smooth_w"].tolist(), "window_ms": c["window_ms"],
                           "clipped": c["clipped"], "n_samples": c["n_samples"]}
                       for d, c in curves.items()})
