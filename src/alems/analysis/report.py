"""`alems report`: a self-contained HTML or PDF report of one batch.

The content is built once (`build_report`: headings, paragraphs, tables, PNG figures) and
rendered by `render_html` (tables as HTML, figures as base64 <img>) or `render_pdf`
(matplotlib PdfPages: text and tables drawn on A4 pages, the same PNGs placed as images).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import sqlite3
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import AlemsError
from . import figures
from .frames import phases_frame, runs_frame
from .groups import Group
from .summary import KIND_LABELS, build_summary


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


def _conditions(conn: sqlite3.Connection, group: Group, summary: dict, runs) -> list[list[str]]:
    host = group.host or {}
    rows = [["group id", group.group_id], ["created", group.created_at],
            ["status", group.status], ["command", group.command or "–"]]
    for key in ("host", "kernel", "cpu_model", "governor"):
        if key in host:
            rows.append([f"machine: {key}", str(host[key])])
    other_host = {k: v for k, v in host.items() if k not in ("host", "kernel", "cpu_model", "governor")}
    if other_host:
        rows.append(["machine: other", json.dumps(other_host, sort_keys=True)])
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
        rows.append([f"baseline #{bid}",
                     f"measured {b['measured_at']} ({b['energy_source']}), pkg idle "
                     f"{_fmt(b['pkg_power_w_mean'])} ± {_fmt(b['pkg_power_w_std'])} W, "
                     f"n={b['repetitions']} × {_fmt(b['duration_s'], 3)} s"])
    if not base_ids:
        rows.append(["baseline", "none recorded — dynamic energy unavailable"])
    rows.append(["seed", _fmt(group.seed)])
    settings = {k: v for k, v in (group.settings or {}).items()}
    for k in sorted(settings):
        rows.append([f"setting: {k}", json.dumps(settings[k]) if not isinstance(settings[k], str)
                     else settings[k]])
    if group.order:
        head = ", ".join(str(x) for x in group.order[:6])
        rows.append(["run order", f"{len(group.order)} runs, seeded (seed {group.seed}); first: "
                                  f"{head}{' …' if len(group.order) > 6 else ''}"])
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
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}"""


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

    def new_page(self):
        import matplotlib.pyplot as plt

        self.flush()
        self.fig = plt.figure(figsize=(PAGE_W_IN, PAGE_H_IN))
        self.y = PAGE_H_IN - MARGIN_IN
        self.pages += 1
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

    def text(self, kind: str, text: str, keep_with_in: float = 1.6):
        """Wrapped text; a heading starts a new page unless `keep_with_in` inches of what
        follows it fit below it."""
        prefix = "⚠ " if kind == "warn" else ""
        lines = textwrap.wrap(prefix + text, _WRAP[kind]) or [""]
        for i, line in enumerate(lines):
            self.need(_LINE[kind] + (keep_with_in if kind == "h2" and i == 0 else 0))
            if kind == "h2" and i == 0:
                self.y -= 0.1
            self.fig.text(MARGIN_IN / PAGE_W_IN, self.y / PAGE_H_IN, line, fontsize=_SIZE[kind],
                          va="top", weight="bold" if kind in ("h1", "h2") else "normal",
                          color="#8a5a00" if kind == "warn" else "black")
            self.y -= _LINE[kind]

    def table(self, caption: str, columns: list[str], rows: list[list[str]]):
        row_h = 0.2
        wrapped = [[textwrap.fill(str(c), 48 if len(columns) <= 2 else 22) for c in r] for r in rows]
        heights = [row_h * max(c.count("\n") + 1 for c in r) for r in wrapped] or [row_h]
        whole = sum(heights) + row_h * 3
        if self.fig is not None and self.y - whole < MARGIN_IN and whole < PAGE_H_IN - 2 * MARGIN_IN:
            self.new_page()   # keep a table that fits on one page together
        chunk_start = 0
        while chunk_start < len(wrapped) or chunk_start == 0:
            self.text("p", caption if chunk_start == 0 else caption + " (continued)")
            avail = self.y - MARGIN_IN - row_h * 1.5
            end = chunk_start
            used = 0.0
            while end < len(wrapped) and used + heights[end] <= avail:
                used += heights[end]
                end += 1
            if end == chunk_start and wrapped:
                self.new_page()
                continue
            self._draw_table(columns, wrapped[chunk_start:end], heights[chunk_start:end], row_h)
            chunk_start = end
            if chunk_start >= len(wrapped):
                break
            self.new_page()
        self.y -= 0.15

    def _draw_table(self, columns, rows, heights, row_h):
        head = [textwrap.fill(c, 14) for c in columns]
        head_h = row_h * max(c.count("\n") + 1 for c in head)
        total = head_h + sum(heights)
        width = PAGE_W_IN - 2 * MARGIN_IN
        ax = self.fig.add_axes([MARGIN_IN / PAGE_W_IN, (self.y - total) / PAGE_H_IN,
                                width / PAGE_W_IN, total / PAGE_H_IN])
        ax.axis("off")
        tbl = ax.table(cellText=rows or [["–"] * len(columns)], colLabels=head, loc="upper left",
                       cellLoc="left", bbox=[0, 0, 1, 1])
        tbl.auto_set_font_size(False)
        tbl.set_fontsize(6.5 if len(columns) > 4 else 7.5)
        # column widths proportional to the longest line in each column
        longest = [max([len(l) for l in head[i].split("\n")] +
                       [len(l) for r in rows for l in str(r[i]).split("\n")] + [3])
                   for i in range(len(columns))]
        total_chars = float(sum(longest))
        for (r, c), cell in tbl.get_celld().items():
            cell.set_width(longest[c] / total_chars)
            cell.set_height((head_h if r == 0 else heights[r - 1]) / total)
            cell.set_linewidth(0.4)
            if r == 0:
                cell.set_facecolor("#eeeeee")
                cell.set_text_props(weight="bold")
        self.y -= total

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
        ax.axis("off")
        self.y -= height + 0.1
        self.text("p", caption)
        self.y -= 0.15


def render_pdf(blocks: list[Block], output: Path) -> int:
    """Write the PDF; returns the number of pages."""
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
                keep = 1.6
                if i + 1 in images:   # keep a heading with the figure after it
                    keep = w.figure_size_in(images[i + 1])[1] + 0.5
                w.text(b.kind, b.text, keep_with_in=keep)
            elif b.kind == "table":
                w.table(b.text, b.columns, b.rows)
            elif b.kind == "figure":
                w.figure(b.text, images[i])
        w.flush()
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
