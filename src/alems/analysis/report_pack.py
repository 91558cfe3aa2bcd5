"""`alems report --output DIR/`: the paper pack — the report (HTML, and PDF where WeasyPrint
is installed) and, beside it, what a paper lifts out of it:

  tables/NN_name.tex   each table as a LaTeX table (booktabs rules; needs
                       \\usepackage{booktabs}), every special character escaped
  tables/NN_name.csv   the same table as CSV (folded cells carry their full text)
  figures/NN_name.pdf  each figure as a vector PDF, and .svg as SVG (text kept as text)
  methods.md           the report's Methods paragraph, ready to paste

Everything comes from the report's blocks (`report.build_report`), so the pack says what
the report says."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from alems.analysis import figures
from alems.analysis.blocks import Block, Folded
from alems.atomic_io import atomic_target

# Text-mode LaTeX for characters that are special to TeX or absent from its default fonts;
# each is replaced on its own (one pass), so an escape is never escaped again.
_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': "''",
    "×": r"$\times$", "±": r"$\pm$", "†": r"$^{\dagger}$", "−": r"$-$", "–": "--",
    "—": "---", "µ": r"$\mu$", "μ": r"$\mu$", "Σ": r"$\Sigma$", "÷": r"$\div$",
    "≤": r"$\leq$", "≥": r"$\geq$", "∞": r"$\infty$", "·": r"$\cdot$", "…": r"\ldots{}",
    "→": r"$\rightarrow$", "≈": r"$\approx$", "⚠": "(!)", "°": r"$^{\circ}$",
    "\n": " ",
}
# A column whose cells are all this long or shorter is set in one line; a longer one wraps.
LATEX_WRAP_CHARS = 40
_NUMBER = re.compile(r"^[+−-]?[\d.,]+(e[+-]?\d+)?[×%†]?$|^–$")


def latex_escape(text) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _cell_text(c, full: bool) -> str:
    if isinstance(c, Folded):
        return c.full if full else c.short
    return str(c)


def _align(rows: list[list[str]], i: int) -> str:
    cells = [r[i] for r in rows if i < len(r)]
    if cells and all(_NUMBER.match(c.strip()) for c in cells):
        return "r"
    if any(len(c) > LATEX_WRAP_CHARS for c in cells):
        return r"p{0.45\linewidth}"
    return "l"


def table_latex(block: Block, label: str) -> str:
    """A booktabs table: caption, label, one header row, the rows, every cell escaped."""
    rows = [[_cell_text(c, full=False) for c in r] for r in block.rows]
    spec = "".join(_align(rows, i) for i in range(len(block.columns)))
    lines = [r"% needs \usepackage{booktabs} in the preamble",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(block.text)}}}", rf"\label{{tab:{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in block.columns) + r" \\", r"\midrule"]
    for r in rows:
        padded = r + [""] * (len(block.columns) - len(r))
        lines.append(" & ".join(latex_escape(c) for c in padded) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def table_csv(block: Block) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(block.columns)
    for r in block.rows:
        writer.writerow([_cell_text(c, full=True) for c in r])
    return buf.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "table"


def _write(path: Path, data: bytes | str) -> None:
    with atomic_target(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def write_pack(blocks: list[Block], folder: str | Path, *, pdf: bool,
               summary_json: str | None = None) -> dict:
    """Write the pack into `folder` (created; the caller checked it is new or empty), with
    `summary_json` (the raw figures the tables print rounded, as `alems summary --format
    json` gives them) as summary.json. Returns {"report": [paths], "tables": [paths],
    "figures": [paths], "methods": path, "summary": path or None}."""
    from alems.analysis.report_render import render_html, render_pdf

    folder = Path(folder)
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    out: dict = {"report": [], "tables": [], "figures": [], "methods": None}
    _write(folder / "report.html", render_html(blocks))
    out["report"].append(folder / "report.html")
    if pdf:
        with atomic_target(folder / "report.pdf") as tmp:
            render_pdf(blocks, tmp)
        out["report"].append(folder / "report.pdf")
    n_table = n_figure = 0
    for b in blocks:
        if b.kind == "table":
            n_table += 1
            stem = f"{n_table:02d}_{b.name or _slug(b.text)}"
            for ext, text in ((".tex", table_latex(b, stem)), (".csv", table_csv(b))):
                _write(folder / "tables" / (stem + ext), text)
                out["tables"].append(folder / "tables" / (stem + ext))
        elif b.kind == "figure" and b.figure is not None:
            n_figure += 1
            stem = f"{n_figure:02d}_{b.name or _slug(b.text)}"
            for fmt in figures.VECTOR_FORMATS:
                path = folder / "figures" / f"{stem}.{fmt}"
                _write(path, figures.render(b.figure, fmt))
                out["figures"].append(path)
    methods = [b.text for b in blocks if b.kind == "p" and b.name == "methods"]
    title = next((b.text for b in blocks if b.kind == "h1"), "A-LEMS report")
    _write(folder / "methods.md", f"<!-- {title}: methods paragraph, generated by alems "
                                  "report -->\n\n" + "\n\n".join(methods) + "\n")
    out["methods"] = folder / "methods.md"
    out["summary"] = None
    if summary_json is not None:
        _write(folder / "summary.json", summary_json + "\n")
        out["summary"] = folder / "summary.json"
    return out
