"""Issue 22, Report: the headline once and first with its caveats, every arm's tax on a log
forest plot, strip plots below 10 runs, no empty phase rows, one answer row, identifiers
kept whole — and the paper pack (`alems report --output DIR/`): LaTeX (booktabs) and CSV
tables, vector figures, methods.md from the batch, checked without LaTeX."""

from __future__ import annotations

import html as html_mod
import json
import re
import sqlite3
import xml.etree.ElementTree as ET

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from alems.analysis import figures  # noqa: E402
from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.report import build_report, render_html  # noqa: E402
from alems.analysis.report_examples import phase_rows  # noqa: E402
from alems.analysis.report_pack import latex_escape  # noqa: E402
from alems.analysis.summary import build_summary  # noqa: E402
from alems.analysis.summary_warnings import ordered_warnings  # noqa: E402
from alems.analysis.views import arm_tax_rows, headline_lines  # noqa: E402

from analysis_fixture import build_fixture_db  # noqa: E402
from inproc import alems_inproc  # noqa: E402

ARMS = ("linear", "agentic", "react")
MODEL_PATH = "/models/SmolLM2-135M-Instruct-Q8_0.gguf"   # hyphens: no place to break it
NASTY = (r'alems batch --tasks /home/researcher/projects/energy-study/tasks/gsm8k_basic.jsonl '
         rf'--model {MODEL_PATH} --note "50% & #1 {{x}} ~^\ $5 a_b <c>"')
RESPONSE = "Let me think step by step.\nFirst 6 × 7 = 42.\nAnswer: 42 <end>"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = build_fixture_db(tmp_path_factory.mktemp("paper") / "experiments.db",
                            workflows=ARMS)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET quiet = 0, not_quiet_reason = 'load 3.0' "
                     "WHERE run_number = 1")
        conn.execute("UPDATE runs SET response = ?, trace_json = ?", (RESPONSE, (
            '[{"event": "answer", "text": ' + __import__("json").dumps(RESPONSE) + "}]")))
        conn.execute("UPDATE batch_sessions SET command = ?", (NASTY,))
    return path


@pytest.fixture(scope="module")
def built(db):
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    summary = build_summary(conn, db, group)
    blocks = build_report(conn, db, group)
    conn.close()
    return summary, blocks


def test_headline_comes_once_and_first_with_its_caveats(built):
    summary, blocks = built
    lines = headline_lines(summary)
    assert any("of react" in line for line in lines)         # every arm's tax
    assert [b.kind for b in blocks[:2]] == ["h1", "h2"] and blocks[1].text == "Headline"
    paragraphs = [b.text for b in blocks if b.kind == "p"]
    for line in lines:
        assert paragraphs.count(line) == 1
    assert [b.text for b in blocks[2:2 + len(lines)]] == lines
    caveats = [b.text for b in blocks[2 + len(lines):] if b.kind == "warn"][:3]
    assert caveats == summary["headline_caveats"][:3]
    assert "not measured on a quiet machine" in caveats[0]
    # every warning under Warnings, most consequential kind first
    at = next(i for i, b in enumerate(blocks) if b.kind == "h2" and b.text == "Warnings")
    warns = [b.text for b in blocks[at + 1:] if b.kind == "warn"]
    assert warns == ordered_warnings(summary["warnings"])
    assert len(warns) == len(summary["warnings"])


def test_forest_plot_is_on_a_log_axis_with_every_arm(built):
    summary, _ = built
    rows = [t for t in arm_tax_rows(summary) if t["tax_ratio"] is not None]
    fig = figures.tax_ratios(arm_tax_rows(summary), False, 0.95)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(rows)
    assert any(x.startswith("react: ") for x in labels)
    assert any(x.startswith("agentic: ") for x in labels)


def _runs(n_per_arm: int) -> pd.DataFrame:
    return pd.DataFrame([{"status": "ok", "task_name": "t", "provider": "p",
                          "workflow_type": wf, "dynamic_energy_uj": 1e6 * (1 + i % 3)}
                         for wf in ("linear", "agentic") for i in range(n_per_arm)])


def test_strip_plot_below_ten_runs_box_plot_from_ten(built):
    strip = figures.energy_distributions(_runs(9), False).axes[0]
    box = figures.energy_distributions(_runs(10), False).axes[0]
    assert not strip.lines and len(box.lines) >= 2 * 5    # a box plot draws whiskers, caps…
    assert [t.get_text() for t in strip.get_xticklabels()] == ["linear\n(n=9)",
                                                               "agentic\n(n=9)"]
    _, blocks = built
    caption = next(b.text for b in blocks if b.text.startswith("Figure 2."))
    assert "dots: runs; bar: median" in caption and "box" not in caption


def test_phase_tables_leave_out_empty_phases(built):
    phases = pd.DataFrame({"seq": [0, 1, 2], "name": ["planning", "llm", "waiting"],
                           "kind": ["planning", "llm", "waiting"], "parent_seq": [None, 0, 0],
                           "duration_ns": [2e8, 2e8, 0.0], "energy_uj": [5e6, 5e6, 0.0]})
    rows = phase_rows(phases, 1e7)
    assert [r[1] for r in rows] == ["planning", "llm"]
    assert not any(r[2] == "0.0" for r in rows)
    _, blocks = built
    shares = next(b for b in blocks if b.name == "phase_shares")
    first = shares.columns.index("provider") + 1   # after arm (several arms), task, provider
    assert all(any(r[i] not in ("–", "0.0%") for r in shares.rows)
               for i in range(first, len(shares.columns)))


def test_examples_have_one_answer_row_with_the_full_text_folded(built):
    _, blocks = built
    examples = [b for b in blocks if b.kind == "table" and b.text.startswith("Example: ")]
    assert len(examples) == 2 * len(ARMS)
    for b in examples:
        items = [r[0] for r in b.rows]
        assert items.count("answer") == 1 and "response" not in items
    page = render_html(blocks)
    assert page.count("<details><summary>42</summary>") == len(examples)
    assert f"<pre>{html_mod.escape(RESPONSE)}</pre>" in page          # whole, escaped


def test_conditions_keep_identifiers_whole(built):
    _, blocks = built
    page = render_html(blocks)
    table = page[page.index("<caption>Batch conditions"):]
    table = table[:table.index("</table>")]
    assert '<table class="short ids">' in page or '<table class="ids">' in page
    assert '<span class="id">g-20260110-100000</span>' in table
    assert "span.id{white-space:nowrap}" in page


# ---------------------------------------------------------------- the paper pack
def check_latex_table(text: str) -> list[list[str]]:
    """A LaTeX-free check of one booktabs table: environments balanced and nested, the rules
    in order, every row as wide as the column spec, no unescaped special character."""
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", text)
    stack = []
    for op, name in envs:
        if op == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"unbalanced \\end{{{name}}}"
    assert not stack and ("begin", "tabular") in envs
    body = text[text.index(r"\begin{tabular}"):text.index(r"\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{((?:[lrc]|p\{[^}]*\})+)\}", body)
    assert spec, body[:80]
    ncol = len(re.findall(r"[lrc](?![^{]*\})|p\{", spec.group(1)))
    rules = [m for m in re.findall(r"\\(toprule|midrule|bottomrule)", body)]
    assert rules == ["toprule", "midrule", "bottomrule"]
    rows = []
    for line in body.splitlines():
        if not line.endswith(r"\\"):
            continue
        cells = re.split(r"(?<!\\) & ", line[:-2].rstrip())
        assert len(cells) == ncol, line
        for c in cells:
            bare = re.sub(r"\$[^$]*\$", "", re.sub(r"\\[&%$#_{}]", "", c))
            bare = re.sub(r"\\text\w+\{\}|\\ldots\{\}", "", bare)
            assert not re.search(r"[&%$#_^~\\]", bare), f"unescaped in {c!r}"
            assert bare.count("{") == bare.count("}"), c
        rows.append(cells)
    return rows


def test_latex_escape_leaves_no_special_character():
    text = latex_escape(NASTY + " 2.0× ± µ Σ ÷ – — † ≥")
    for ch in "&%$#_{}~^\\":
        assert not re.search(rf"(?<!\\){re.escape(ch)}",
                             re.sub(r"\\[&%$#_{}]|\\text\w+\{\}|\$[^$]*\$", "", text)), ch


def test_paper_pack_writes_tables_figures_and_methods(db, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    out = tmp_path / "pack"
    proc = alems_inproc("report", "--db", str(db), "--exp-id", "latest", "--output",
                        f"{out}/", "--no-pdf")
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").is_file() and not (out / "report.pdf").exists()
    tex = sorted((out / "tables").glob("*.tex"))
    assert len(tex) >= 5 and len(tex) == len(list((out / "tables").glob("*.csv")))
    for path in tex:
        check_latex_table(path.read_text())
    cond = check_latex_table(next(p for p in tex if p.name.endswith("_conditions.tex"))
                             .read_text())
    assert latex_escape(NASTY) in [c for r in cond for c in r]
    tax = (out / "tables" / "03_tax.csv").read_text().splitlines()
    assert tax[0].startswith("arm,task,provider,pairs,tax ratio") and len(tax) == 1 + 8
    figs = sorted((out / "figures").iterdir())
    stems = {p.stem for p in figs}
    assert len(stems) == 4 and {p.suffix for p in figs} == {".pdf", ".svg"}
    assert len(figs) == 2 * len(stems)
    for p in figs:
        if p.suffix == ".svg":
            root = ET.parse(p).getroot()
            assert root.tag.endswith("svg")
            assert not list(root.iter("{http://www.w3.org/2000/svg}image"))
        else:
            reader = pypdf.PdfReader(p)
            assert len(reader.pages) == 1
            xobjects = reader.pages[0]["/Resources"].get("/XObject") or {}
            assert all(xobjects[k].get_object()["/Subtype"] != "/Image" for k in xobjects)
            assert reader.pages[0].extract_text().strip()       # text, not a picture
    methods = (out / "methods.md").read_text()
    conn = open_db(db)
    runs = pd.read_sql("SELECT r.* FROM runs r", conn)
    conn.close()
    hz = f"({runs['achieved_hz'].min():g}–{runs['achieved_hz'].max():g} Hz achieved)"
    for fact in ("powercap", "1000 Hz requested", hz,
                 "5.00 ± 0.120 W idle package power over 3 × 10.0 s", "seed 7",
                 f"Of {len(runs)} runs, {int((runs['status'] != 'ok').sum())} failed",
                 "agentic factual_qa/local n = 3", "react gsm8k_basic/local n = 4",
                 "Fixture CPU @ 2.0GHz", "leave-one-pair-out jackknife",
                 "the data of every headline interval lie within that region"):
        assert fact in methods, fact
    # the unrounded figures the tables print rounded: summary.json is `summary --format json`
    raw = json.loads((out / "summary.json").read_text())
    summary = alems_inproc("summary", "--db", str(db), "--group-id", "latest", "--format", "json")
    assert raw == json.loads(summary.stdout)


def test_pack_refuses_a_folder_that_is_not_empty(db, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    proc = alems_inproc("report", "--db", str(db), "--output", f"{tmp_path / 'full'}/")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not an empty directory" in proc.stderr
    proc = alems_inproc("report", "--db", str(db), "--output", str(tmp_path / "r.html"),
                        "--pdf")
    assert proc.returncode == 2 and "paper pack" in proc.stderr


@pytest.mark.pdf
def test_paper_pack_typesets_the_pdf_and_keeps_identifiers_whole(db, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    pytest.importorskip("weasyprint")
    out = tmp_path / "pack"
    proc = alems_inproc("report", "--db", str(db), "--exp-id", "1", "--output", f"{out}/")
    assert proc.returncode == 0, proc.stderr
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out / "report.pdf").pages)
    lines = text.splitlines()
    for word in ("g-20260110-100000", "fixture-host", "performance", MODEL_PATH):
        assert any(word in line for line in lines), word
