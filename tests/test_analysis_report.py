"""`alems report`: the same content as HTML and as PDF, figures included."""

import re
import sqlite3

import pytest

from alems.analysis.groups import open_db, resolve_group
from alems.analysis.report import build_report, write_report
from alems.errors import AlemsError
from analysis_fixture import build_fixture_db


@pytest.fixture(scope="module")
def blocks_and_db(tmp_path_factory):
    db = build_fixture_db(tmp_path_factory.mktemp("rep") / "experiments.db")
    conn = open_db(db)
    return build_report(conn, db, resolve_group(conn, "latest")), db


@pytest.fixture(scope="module")
def report_pdf(blocks_and_db, tmp_path_factory):
    """The fixture batch's report as PDF, typeset once (WeasyPrint takes seconds a PDF) and
    read by every test that checks it."""
    blocks, _ = blocks_and_db
    return write_report(blocks, tmp_path_factory.mktemp("pdf") / "report.pdf")


def _pdf_pages_and_images(path):
    from pypdf import PdfReader

    assert path.read_bytes().startswith(b"%PDF")
    reader = PdfReader(path)
    # every page may list every image among its resources: count each image object once
    images = {img.indirect_reference.idnum for page in reader.pages for img in page.images}
    return len(reader.pages), len(images)


def test_content_has_conditions_tables_and_four_figures(blocks_and_db):
    blocks, _ = blocks_and_db
    kinds = [b.kind for b in blocks]
    assert kinds.count("figure") == 4
    tables = [b for b in blocks if b.kind == "table"]
    conditions = dict(next(t for t in tables if t.text == "Batch conditions").rows)
    for key in ("group id", "machine: host", "energy source(s)", "seed", "run order", "baseline #1"):
        assert key in conditions
    assert any("Orchestration tax" in t.text for t in tables)
    assert all(b.png.startswith(b"\x89PNG") for b in blocks if b.kind == "figure")


def test_html_embeds_figures(blocks_and_db, tmp_path):
    blocks, _ = blocks_and_db
    out = write_report(blocks, tmp_path / "report.html")
    html = out.read_text()
    assert html.count('<img alt="Figure') == 4
    assert html.count("data:image/png;base64,") == 4
    assert "<table" in html and "Orchestration tax" in html and "ESTIMATE" not in html


@pytest.mark.pdf
def test_pdf_has_pages_and_figures(report_pdf):
    pages, images = _pdf_pages_and_images(report_pdf)
    assert pages >= 3
    assert images == 4          # the same four PNGs as the HTML


def test_estimate_is_labelled(tmp_path):
    db = build_fixture_db(tmp_path / "est.db", energy_source="estimate")
    conn = open_db(db)
    blocks = build_report(conn, db, resolve_group(conn, "latest"))
    figs = [b for b in blocks if b.kind == "figure"]
    assert figs and all("ESTIMATE" in b.text for b in figs)
    energy_tables = [b for b in blocks if b.kind == "table" and "energy" in b.text.lower()]
    assert energy_tables and all("ESTIMATE" in b.text for b in energy_tables)


def test_missing_samples_still_reports(tmp_path):
    db = build_fixture_db(tmp_path / "ns.db")
    raw = sqlite3.connect(db)
    raw.execute("UPDATE runs SET samples_path = NULL")
    raw.commit()
    conn = open_db(db)
    blocks = build_report(conn, db, resolve_group(conn, "latest"))
    assert sum(b.kind == "figure" for b in blocks) == 3
    assert any(b.kind == "warn" and "power curves" in b.text for b in blocks)


def test_bad_output_name(blocks_and_db, tmp_path):
    blocks, _ = blocks_and_db
    with pytest.raises(AlemsError, match=r"\.html or \.pdf"):
        write_report(blocks, tmp_path / "report.docx")


# ------------------------------------------------------------------ conditions as text
def test_value_text():
    from alems.analysis.report import _value

    assert _value(None) == "–" and _value("") == "–" and _value(float("nan")) == "–"
    assert _value(True) == "yes" and _value(False) == "no"
    assert _value(2.0) == "2" and _value(0.25) == "0.25" and _value(3) == "3"
    assert _value(["local", "cloud"]) == "local, cloud" and _value([]) == "–"
    assert _value({"cpus": 2, "energy_source": None, "load_1m": 2.21}) == \
        "cpus: 2; energy source: –; load 1m: 2.21"
    assert _value({"a": {"b": 1}}) == "a: (b: 1)"


def test_conditions_show_no_raw_python_or_json(tmp_path):
    import json

    db = build_fixture_db(tmp_path / "c.db")
    raw = sqlite3.connect(db)
    host = {"host": "vm", "kernel": "6.1", "governor": None, "cpus": 2, "load_1m": 2.21,
            "energy_source": None, "extra": {"numa": None, "smt": True}}
    settings = {"model": None, "clip_negative": False, "providers": ["local"], "hz": 1000.0}
    order = [["t1", "local", "agentic", 1], ["t1", "local", "linear", 1]]
    raw.execute("UPDATE batch_sessions SET host_json = ?, settings_json = ?, order_json = ?",
                (json.dumps(host), json.dumps(settings), json.dumps(order)))
    raw.commit()
    conn = open_db(db)
    blocks = build_report(conn, db, resolve_group(conn, "latest"))
    cond = dict(next(b for b in blocks if b.kind == "table" and b.text == "Batch conditions").rows)
    assert cond["machine: cpufreq governor"].startswith("–")
    assert "not readable" in cond["machine: cpufreq governor"]
    assert cond["machine: CPUs"] == "2" and cond["machine: load average (1 min)"] == "2.21"
    assert cond["machine: energy source"] == "–"
    assert cond["machine: other"] == "extra: (numa: –; smt: yes)"
    assert cond["setting: model"] == "–" and cond["setting: clip_negative"] == "no"
    assert cond["setting: providers"] == "local" and cond["setting: hz"] == "1000"
    assert "t1/local/agentic #1, t1/local/linear #1" in cond["run order"]
    for value in cond.values():
        assert not re.search(r"\bNone\b|\bnull\b|[{}\[\]]|'", value), value


# ------------------------------------------------------------------------ PDF layout
def _render(blocks, path):
    """Write the PDF and read back what went on which page (see _placed)."""
    from alems.analysis.report import render_pdf

    pages = render_pdf(blocks, path)
    placed = _placed(blocks, path)
    assert placed[0] == pages
    return placed


def _placed(blocks, path):
    """(pages, what went on which page of the PDF at `path`): (kind, page, text) for text
    and table captions ("… (continued)" where a page carries a table on under its running
    caption), ("table", page, caption, first row, end row) for each piece of a table."""
    from pypdf import PdfReader

    # compared without any whitespace: a narrow table cell breaks a word ("factual_q a")
    # where the PDF's text layer has no space to keep
    texts = ["".join(p.extract_text().split()) for p in PdfReader(path).pages]
    pages = len(texts)
    at = [0, 0]                        # cursor: page index, offset in that page's text

    def find(text):
        """Page (1-based) of the next occurrence of `text` at or after the cursor."""
        text = "".join(str(text).split())
        for i in range(at[0], len(texts)):
            j = texts[i].find(text, at[1] if i == at[0] else 0)
            if j >= 0:
                at[:] = [i, j + len(text)]
                return i + 1
        raise AssertionError(f"{text[:50]!r} not found in the PDF after page {at[0] + 1}")

    placed = []
    for b in blocks:
        if b.kind != "table":
            # a text may run on over pages: it is placed where its first words are
            placed.append((b.kind, find(" ".join(b.text.split()[:12])), b.text))
            continue
        placed.append(("p", find(b.text), b.text))
        head = "".join("".join(b.columns).split())
        row_pages = [find(" ".join(r)) for r in b.rows]
        start = 0
        for k in range(1, len(row_pages) + 1):
            if k == len(row_pages) or row_pages[k] != row_pages[start]:
                page = row_pages[start]
                assert head in texts[page - 1], f"no header row on page {page}"
                if start:
                    assert "".join(f"{b.text} (continued)".split()) in texts[page - 1], page
                    placed.append(("p", page, f"{b.text} (continued)"))
                placed.append(("table", page, b.text, start, k))
                start = k
    return pages, placed


def _long_blocks(n_rows=90, intro_words=60):
    from alems.analysis.blocks import Block

    return [Block("h1", "A-LEMS report — layout"), Block("p", "intro " * intro_words),
            Block("warn", "estimate notice " * 10), Block("h2", "Conditions"),
            Block("table", "Batch conditions", ["item", "value"],
                  [[f"setting: key_{i}", ("long value " * (i % 9)) or "–"]
                   for i in range(n_rows)]),
            Block("h2", "After")]


@pytest.mark.pdf
def test_long_table_splits_across_pages_instead_of_jumping(tmp_path):
    pages, placed = _render(_long_blocks(), tmp_path / "long.pdf")
    heading = next(p for p in placed if p[0] == "h2" and p[2] == "Conditions")
    pieces = [p for p in placed if p[0] == "table"]
    assert heading[1] == 1 and pieces[0][1] == 1          # starts on page 1, under its heading
    assert len(pieces) >= 2 and pages >= 2
    assert [p[1] for p in pieces] == list(range(1, len(pieces) + 1))   # one piece a page
    assert pieces[0][3] == 0 and pieces[-1][4] == 90       # every row once, in order
    assert all(a[4] == b[3] for a, b in zip(pieces, pieces[1:]))
    assert all(p[4] - p[3] >= 2 for p in pieces)           # no lone rows
    captions = [p[2] for p in placed if p[0] == "p" and p[2].startswith("Batch conditions")]
    assert captions[0] == "Batch conditions"
    assert all(c == "Batch conditions (continued)" for c in captions[1:])
    assert len(captions) == len(pieces)                    # caption + header on each page


@pytest.mark.pdf
def test_heading_is_kept_with_the_start_of_its_table(tmp_path):
    # push the heading towards the bottom of page 1: it must move with the table's first rows
    moved = 0
    for words in range(1340, 1480, 20):
        _, placed = _render(_long_blocks(intro_words=words), tmp_path / f"h{words}.pdf")
        heading = next(p for p in placed if p[0] == "h2" and p[2] == "Conditions")
        first = next(p for p in placed if p[0] == "table")
        assert heading[1] == first[1], words
        assert first[4] - first[3] >= 3, words
        moved += heading[1] == 2
    assert moved            # the range reaches the bottom of page 1


@pytest.mark.pdf
def test_short_table_moves_whole(tmp_path):
    from alems.analysis.blocks import Block

    moved = 0
    for words in range(3360, 3481, 20):   # the table meets the end of page 2 at different rows
        blocks = [Block("h1", "t"), Block("p", "filler " * words),
                  Block("table", "small", ["a", "b"], [["1", "2"]] * 6)]
        _, placed = _render(blocks, tmp_path / f"short{words}.pdf")
        pieces = [p for p in placed if p[0] == "table"]
        assert len(pieces) == 1 and pieces[0][3:] == (0, 6), words
        moved += pieces[0][1] == 3
    assert moved


@pytest.mark.pdf
def test_report_pdf_page_one_holds_the_headline(blocks_and_db, report_pdf):
    # issue 11: the answer first (tax, accuracy per arm, energy source), conditions later
    blocks, _ = blocks_and_db
    _, placed = _placed(blocks, report_pdf)
    first = next(p for p in placed if p[0] == "table")
    assert first[2].startswith("Accuracy per arm") and first[1] == 1
