"""`alems report`: a self-contained HTML or PDF report of one batch.

The content is built once (`build_report`: headings, paragraphs, tables, PNG figures) and
rendered by `render_html` (tables as HTML, figures as base64 <img>) or `render_pdf`
(matplotlib PdfPages: text and tables drawn on A4 pages, the same PNGs placed as images).
"""

from __future__ import annotations

import base64
import html
import io
import os
import sqlite3
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from alems.errors import AlemsError
from alems.analysis import figures
from alems.analysis.frames import phases_frame, runs_frame
from alems.analysis.groups import Group
from alems.analysis.summary import KIND_LABELS, build_summary


@dataclass
class Block:
    kind: str                     # h1 | h2 | p | warn | table | figure
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    png: bytes | None = None


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.{digits}f}"
    return str(v)


def _ci(d: dict, digits=2) -> str:
    if d["ci_low"] is None:
        return "–"
    return f"[{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


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
    rows.append(["energy source(s)", srcs + (" — ESTIMATE, not measured" if summary["estimate"] else "")])
    models = sorted({f"{p}: {m}" for p, m in zip(runs["provider"], runs["model"]) if m})
    if models:
        rows.append(["model(s)", "; ".join(models)])
    base_ids = sorted({int(b) for b in runs["baseline_id"].dropna()})
    for bid in base_ids:
        b = conn.execute("SELECT * FROM baselines WHERE baseline_id = ?", (bid,)).fetchone()
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
    est_tag = " [ESTIMATE — not measured]" if est else ""
    pct = int(round(confidence * 100))
    out: list[Block] = [
        Block("h1", f"A-LEMS report — batch {group.group_id}"),
        Block("p", f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from "
                   f"{db_path.name}. Energy is package energy (RAPL) minus the idle baseline "
                   f"(dynamic energy); intervals are {pct} % confidence intervals."),
    ]
    if est:
        out.append(Block("warn", "All energy figures in this report marked ESTIMATE come from a "
                                 "CPU-time × W/core model, not from a hardware counter."))
    out.append(Block("h2", "Conditions"))
    out.append(Block("table", "Batch conditions", ["item", "value"],
                     _conditions(conn, group, summary, runs)))
    out.append(Block("h2", "Warnings"))
    if summary["warnings"]:
        out.extend(Block("warn", w) for w in summary["warnings"])
    else:
        out.append(Block("p", "None: the data raise no flags."))

    out.append(Block("h2", "Summary per task, provider and workflow"))
    out.append(Block("table", f"Per workflow: dynamic energy, duration and average package "
                              f"power (mean ± sd, {pct} % t-interval of the mean){est_tag}",
                     ["task", "provider", "workflow", "runs (ok/err)", "success", "energy J",
                      f"energy {pct}% CI", "duration s", "power W", "EpG J"],
                     [[w["task"], w["provider"], w["workflow"],
                       f"{w['n_runs']} ({w['n_ok']}/{w['n_errors']})",
                       f"{w['n_correct']}/{w['n_runs']} ({w['success_rate']:.0%})",
                       _ms(w["dynamic_energy_j"]), _ci(w["dynamic_energy_j"]),
                       _ms(w["duration_s"], 3), _ms(w["avg_power_w"], 1),
                       _fmt(w["epg_j"]) if w["epg_j"] is not None else f"– ({w['epg_null_reason']})"]
                      for w in summary["workflows"]]))
    out.append(Block("table", f"Orchestration tax (Σ agentic ÷ Σ linear dynamic energy over "
                              f"complete pairs; {pct} % percentile bootstrap CI over pairs, "
                              f"seed {summary['tax'][0]['bootstrap_seed'] if summary['tax'] else '–'})"
                              f"{est_tag}",
                     ["task", "provider", "pairs", "tax ratio", f"{pct}% CI", "tax %",
                      "mean pair ratio", "EpG linear J", "EpG agentic J"],
                     [[t["task"], t["provider"], str(t["n_pairs"]),
                       _fmt(t["tax_ratio"]) + ("×" if t["tax_ratio"] is not None else ""),
                       "–" if t["ci_low"] is None else f"[{t['ci_low']:.2f}, {t['ci_high']:.2f}]",
                       _fmt(t["tax_percent"], 1), _fmt(t["mean_of_pair_ratios"]),
                       _fmt(t["epg_linear_j"]), _fmt(t["epg_agentic_j"])]
                      for t in summary["tax"]]))
    if summary["phases"]:
        kinds = ["planning", "execution", "synthesis", "llm", "tool", "waiting"]
        table = {}
        for p in summary["phases"]:
            table.setdefault((p["task"], p["provider"]), {})[(p["basis"], p["kind"])] = p["share"]
        rows = []
        for (task, provider), shares in sorted(table.items()):
            rows.append([task, provider] + [
                _pct(shares.get(("stage" if k in ("planning", "execution", "synthesis") else "activity", k)))
                for k in kinds] + [_pct(shares.get(("activity", "other")))])
        out.append(Block("table", f"Share of agentic package energy per phase{est_tag}",
                         ["task", "provider"] + [KIND_LABELS[k] for k in kinds] + ["outside llm/tool/wait"],
                         rows))
    out.append(Block("table", f"Footprint of all runs' dynamic energy (grid factors; empty = no "
                              f"factor){est_tag}",
                     ["task", "provider", "workflow", "carbon g CO2", "water ml", "methane mg"],
                     [[w["task"], w["provider"], w["workflow"], _sig(w["carbon_g_total"]),
                       _sig(w["water_ml_total"]), _sig(w["methane_mg_total"])]
                      for w in summary["workflows"]]))

    out.append(Block("h2", "Figures"))
    reps = figures.representative_runs(runs, db_path)
    png = figures.power_curves(reps, phases, db_path)
    if png:
        out.append(Block("figure", "Figure 1. Package power of a representative linear and agentic "
                                   "run (run closest to its workflow's median energy), phases "
                                   f"shaded{est_tag}.", png=png))
    else:
        out.append(Block("warn", "Figure 1 (power curves) left out: no run has a readable samples "
                                 "file next to the database."))
    for caption, png in (
        (f"Figure 2. Dynamic energy per run by workflow (box: quartiles; dots: runs){est_tag}.",
         figures.energy_distributions(runs, est)),
        (f"Figure 3. Orchestration tax with {pct} % bootstrap CI; dashed line = no tax{est_tag}.",
         figures.tax_ratios(summary["tax"], est, confidence)),
        (f"Figure 4. Share of agentic package energy by stage and by activity{est_tag}.",
         figures.phase_breakdown(summary["phases"], est)),
    ):
        if png:
            out.append(Block("figure", caption, png=png))
    out.append(Block("h2", "Definitions"))
    for k, v in summary["definitions"].items():
        out.append(Block("p", f"{k}: {v}"))
    return out


def _sig(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def _pct(v) -> str:
    return "–" if v is None else f"{v:.1%}"


# ------------------------------------------------------------------------------ HTML
_CSS = """body{font-family:system-ui,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eee}caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.warn{background:#fff4d6;border-left:4px solid #e6a400;padding:4px 8px;margin:4px 0}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}
@media print{thead{display:table-header-group}tr,figure{break-inside:avoid}
h1,h2{break-after:avoid}}"""


def render_html(blocks: list[Block]) -> str:
    title = next((b.text for b in blocks if b.kind == "h1"), "A-LEMS report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    e = html.escape
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "warn":
            parts.append(f'<div class="warn">⚠ {e(b.text)}</div>')
        elif b.kind == "table":
            head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
                           for r in b.rows)
            parts.append(f"<table><caption>{e(b.text)}</caption><thead><tr>{head}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            data = base64.b64encode(b.png).decode("ascii")
            parts.append(f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(b.text)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------- PDF
PAGE_W_IN, PAGE_H_IN = 8.27, 11.69      # A4 portrait
MARGIN_IN = 0.6
_LINE = {"h1": 0.42, "h2": 0.34, "p": 0.19, "warn": 0.19}
_SIZE = {"h1": 15, "h2": 12, "p": 8.5, "warn": 8.5}
_WRAP = {"h1": 70, "h2": 90, "p": 118, "warn": 112}


class _Pdf:
    def __init__(self, pdf):
        self.pdf = pdf
        self.fig = None
        self.y = 0.0
        self.pages = 0
        self.page_ax = None
        self.placed: list[tuple] = []   # (kind, page, text[, first row, end row]) as drawn
        self._renderer = None
        self._widths: dict = {}

    def new_page(self):
        import matplotlib.pyplot as plt

        self.flush()
        self.fig = plt.figure(figsize=(PAGE_W_IN, PAGE_H_IN))
        self.y = PAGE_H_IN - MARGIN_IN
        self.pages += 1
        # one invisible axes over the whole page, in inches from the bottom left corner
        self.page_ax = self.fig.add_axes([0, 0, 1, 1])
        self.page_ax.set_xlim(0, PAGE_W_IN)
        self.page_ax.set_ylim(0, PAGE_H_IN)
        self.page_ax.axis("off")
        self.fig.text(0.5, 0.3 / PAGE_H_IN, f"A-LEMS report — page {self.pages}", ha="center",
                      fontsize=7, color="grey")

    def flush(self):
        import matplotlib.pyplot as plt

        if self.fig is not None:
            self.pdf.savefig(self.fig)
            plt.close(self.fig)
            self.fig = None

    def need(self, height_in: float):
        if self.fig is None or self.y - height_in < MARGIN_IN:
            self.new_page()

    def text(self, kind: str, text: str, keep_with_in: float = 0.6):
        """Wrapped text; a heading starts a new page unless `keep_with_in` inches of what
        follows it fit below it."""
        prefix = "⚠ " if kind == "warn" else ""
        lines = textwrap.wrap(prefix + text, _WRAP[kind]) or [""]
        for i, line in enumerate(lines):
            self.need(_LINE[kind] + (keep_with_in + 0.1 if kind == "h2" and i == 0 else 0))
            if kind == "h2" and i == 0:
                self.y -= 0.1
            if i == 0:
                self.placed.append((kind, self.pages, text))
            self.fig.text(MARGIN_IN / PAGE_W_IN, self.y / PAGE_H_IN, line, fontsize=_SIZE[kind],
                          va="top", weight="bold" if kind in ("h1", "h2") else "normal",
                          color="#8a5a00" if kind == "warn" else "black", parse_math=False)
            self.y -= _LINE[kind]

    # -------------------------------------------------------------------- tables
    # A table is laid out once (column widths from the measured text, cells wrapped to them),
    # then drawn in chunks: as many rows as fit on the page, the rest on the next page(s) under
    # the caption "(continued)" and a repeated header row. A table is split only when at least
    # _MIN_ROWS rows go on this page and _MIN_ROWS_AFTER rows on the next one; otherwise it
    # starts on a new page.
    _MIN_ROWS = 3
    _MIN_ROWS_AFTER = 2
    _SHORT_IN = 2.0
    _PAD_PT = 4.0          # left/right padding in a cell
    _VPAD_PT = 2.2         # top/bottom padding in a cell
    _GAP_IN = 0.04         # between the caption and the table

    def _measure(self, text: str, size: float, bold: bool = False) -> float:
        """Width of one line of text in points."""
        key = (text, size, bold)
        if key not in self._widths:
            if self._renderer is None:
                from matplotlib.backends.backend_agg import RendererAgg

                self._renderer = RendererAgg(10, 10, 72)
            from matplotlib.font_manager import FontProperties

            prop = FontProperties(size=size, weight="bold" if bold else "normal")
            self._widths[key] = self._renderer.get_text_width_height_descent(
                text, prop, ismath=False)[0]
        return self._widths[key]

    def _wrap(self, text: str, width_pt: float, size: float, bold: bool = False) -> list[str]:
        """Greedy word wrap to a width in points; a word wider than the width is broken."""
        out: list[str] = []
        for para in str(text).split("\n"):
            line = ""
            for word in para.split(" "):
                cand = f"{line} {word}" if line else word
                if self._measure(cand, size, bold) <= width_pt:
                    line = cand
                    continue
                if line:
                    out.append(line)
                line = word
                while len(line) > 1 and self._measure(line, size, bold) > width_pt:
                    cut = len(line) - 1
                    while cut > 1 and self._measure(line[:cut], size, bold) > width_pt:
                        cut -= 1
                    out.append(line[:cut])
                    line = line[cut:]
            out.append(line)
        return out or [""]

    def _table_layout(self, columns: list[str], rows: list[list[str]]) -> dict:
        rows = [[str(c) for c in r] for r in rows] or [["–"] * len(columns)]
        size = 7.5 if len(columns) <= 4 else 6.5
        avail = (PAGE_W_IN - 2 * MARGIN_IN) * 72
        pad = 2 * self._PAD_PT
        ncol = len(columns)

        def longest(i, words: bool) -> float:
            def parts(t):
                return t.split() if words else t.split("\n")
            w = max([self._measure(x, size, True) for x in parts(columns[i])] or [0])
            return max([w] + [self._measure(x, size) for r in rows for x in parts(r[i])])

        natural = [longest(i, False) + pad for i in range(ncol)]   # no wrapping at all
        minimum = [min(longest(i, True), 80.0) + pad for i in range(ncol)]  # no word broken
        if sum(natural) <= avail:
            # everything on one line: stretch the columns to the full width
            widths = [x * avail / sum(natural) for x in natural]
        elif sum(minimum) >= avail:
            widths = [x * avail / sum(minimum) for x in minimum]
        else:
            # every column gets its longest word; the space left goes first to the columns
            # that then need least to fit on one line, the rest shared in proportion
            widths = list(minimum)
            extra = avail - sum(minimum)
            want = {i: natural[i] - minimum[i] for i in range(ncol)}
            for i in sorted(want, key=want.get):
                share = extra / len(want)
                if want[i] > share:
                    break
                widths[i] += want.pop(i)
                extra -= widths[i] - minimum[i]
            total_want = sum(want.values())
            for i in want:
                widths[i] += extra * want[i] / total_want
        line_h = size * 1.25
        room = [w - pad + 0.01 for w in widths]     # + 0.01: rounding of the fitted widths
        head = [self._wrap(c, room[i], size, True) for i, c in enumerate(columns)]
        cells = [[self._wrap(c, room[i], size) for i, c in enumerate(r)] for r in rows]

        def height(r):
            return (max(len(c) for c in r) * line_h + 2 * self._VPAD_PT) / 72

        return {"size": size, "line_h": line_h / 72, "widths": [w / 72 for w in widths],
                "head": head, "head_h": height(head), "cells": cells,
                "heights": [height(r) for r in cells]}

    def _caption_h(self, caption: str) -> float:
        return len(textwrap.wrap(caption, _WRAP["p"]) or [""]) * _LINE["p"] + self._GAP_IN

    def _whole_h(self, caption: str, lay: dict) -> float:
        return self._caption_h(caption) + lay["head_h"] + sum(lay["heights"])

    def _splittable(self, caption: str, lay: dict) -> bool:
        """Short tables (few rows, or under _SHORT_IN tall) are kept in one piece."""
        return (len(lay["heights"]) >= self._MIN_ROWS + self._MIN_ROWS_AFTER
                and self._whole_h(caption, lay) > self._SHORT_IN)

    def table_keep_in(self, caption: str, columns: list[str], rows: list[list[str]]) -> float:
        """Height that a heading before this table needs below it: the caption, the header
        row and the first rows (the whole table if it is too short to split)."""
        lay = self._table_layout(columns, rows)
        if not self._splittable(caption, lay):
            return min(self._whole_h(caption, lay), PAGE_H_IN - 2 * MARGIN_IN - 0.6)
        return self._caption_h(caption) + lay["head_h"] + sum(lay["heights"][:self._MIN_ROWS])

    def _at_top(self) -> bool:
        return self.fig is not None and self.y >= PAGE_H_IN - MARGIN_IN - 1e-6

    def table(self, caption: str, columns: list[str], rows: list[list[str]]):
        lay = self._table_layout(columns, rows)
        heights = lay["heights"]
        n = len(heights)
        if self.fig is None:
            self.new_page()
        if (not self._splittable(caption, lay) and not self._at_top()
                and self._whole_h(caption, lay) > self.y - MARGIN_IN):
            self.new_page()                                # a short table moves whole
        start = 0
        while start < n:
            cap = caption if start == 0 else caption + " (continued)"
            space = self.y - MARGIN_IN - self._caption_h(cap) - lay["head_h"]
            fit, used = 0, 0.0
            while start + fit < n and used + heights[start + fit] <= space:
                used += heights[start + fit]
                fit += 1
            left = n - start
            if fit < left:
                if left - fit < self._MIN_ROWS_AFTER:      # no lone last rows on a page
                    fit = left - self._MIN_ROWS_AFTER
                if fit < self._MIN_ROWS and not self._at_top():
                    self.new_page()
                    continue
                fit = max(fit, 1)                          # a row taller than a page: clipped
            self.text("p", cap)
            self.y -= self._GAP_IN
            self._draw_rows(lay, start, start + fit)
            self.placed.append(("table", self.pages, caption, start, start + fit))
            start += fit
            if start < n:
                self.new_page()
        self.y -= 0.15

    def _draw_rows(self, lay: dict, start: int, end: int):
        from matplotlib.patches import Rectangle

        ax = self.page_ax
        size, line_h = lay["size"], lay["line_h"]
        pad, vpad = self._PAD_PT / 72, self._VPAD_PT / 72
        todo = [(lay["head"], lay["head_h"], "#e8e8e8", True)]
        todo += [(lay["cells"][i], lay["heights"][i], "#f7f7f7" if (i - start) % 2 else "white",
                  False) for i in range(start, end)]
        for cells, h, fill, bold in todo:
            x = MARGIN_IN
            for lines, w in zip(cells, lay["widths"]):
                ax.add_patch(Rectangle((x, self.y - h), w, h, facecolor=fill,
                                       edgecolor="#a0a0a0", linewidth=0.4))
                for k, line in enumerate(lines):
                    ax.text(x + pad, self.y - vpad - k * line_h, line, fontsize=size, va="top",
                            ha="left", weight="bold" if bold else "normal", parse_math=False)
                x += w
            self.y -= h

    @staticmethod
    def figure_size_in(img) -> tuple[float, float]:
        h_px, w_px = img.shape[:2]
        width = PAGE_W_IN - 2 * MARGIN_IN
        height = width * h_px / w_px
        max_h = PAGE_H_IN - 2 * MARGIN_IN - 0.6
        if height > max_h:
            width, height = width * max_h / height, max_h
        return width, height

    def figure(self, caption: str, img):
        width, height = self.figure_size_in(img)
        self.need(height + 0.5)
        ax = self.fig.add_axes([MARGIN_IN / PAGE_W_IN, (self.y - height) / PAGE_H_IN,
                                width / PAGE_W_IN, height / PAGE_H_IN])
        ax.imshow(img, interpolation="antialiased")
        self.placed.append(("figure", self.pages, caption))
        ax.axis("off")
        self.y -= height + 0.1
        self.text("p", caption)
        self.y -= 0.15


def _keep_with_next(w: _Pdf, blocks: list[Block], images: dict, i: int) -> float:
    """Inches of what follows heading `i` that must fit on the page with it: the start of a
    table (caption, header, first rows), a whole figure, or a few lines of text."""
    if i + 1 >= len(blocks):
        return 0.0
    nxt = blocks[i + 1]
    if nxt.kind == "figure":
        return w.figure_size_in(images[i + 1])[1] + 0.5
    if nxt.kind == "table":
        return w.table_keep_in(nxt.text, nxt.columns, nxt.rows)
    lines = len(textwrap.wrap(nxt.text, _WRAP.get(nxt.kind, 118))) if nxt.kind in _LINE else 3
    return min(max(lines, 1), 3) * _LINE["p"]


def render_pdf(blocks: list[Block], output: Path, placed: list | None = None) -> int:
    """Write the PDF; returns the number of pages. `placed`, when given, receives what went on
    which page: (kind, page, text) for text and figures, ("table", page, caption, first row,
    end row) for each piece of a table."""
    figures._plt()
    import matplotlib.image as mpimg
    from matplotlib.backends.backend_pdf import PdfPages

    title = next((b.text for b in blocks if b.kind == "h1"), "A-LEMS report")
    with PdfPages(output, metadata={"Title": title, "Creator": "A-LEMS"}) as pdf:
        w = _Pdf(pdf)
        images = {i: mpimg.imread(io.BytesIO(b.png), format="png")
                  for i, b in enumerate(blocks) if b.kind == "figure"}
        for i, b in enumerate(blocks):
            if b.kind in _LINE:
                w.text(b.kind, b.text, keep_with_in=_keep_with_next(w, blocks, images, i))
            elif b.kind == "table":
                w.table(b.text, b.columns, b.rows)
            elif b.kind == "figure":
                w.figure(b.text, images[i])
        w.flush()
    if placed is not None:
        placed.extend(w.placed)
    return w.pages


def write_report(blocks: list[Block], output: str | Path) -> Path:
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise AlemsError(f"--output {output}: give a name ending in .html or .pdf")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        if suffix == ".pdf":
            render_pdf(blocks, tmp)
        else:
            tmp.write_text(render_html(blocks), encoding="utf-8")
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return output
