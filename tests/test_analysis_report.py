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


def _pdf_pages_and_images(path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    images = len(re.findall(rb"/Subtype\s*/Image", data))
    return pages, images


def test_content_has_conditions_tables_and_four_figures(blocks_and_db):
    blocks, _ = blocks_and_db
    kinds = [b.kind for b in blocks]
    assert kinds.count("figure") == 4
    tables = [b for b in blocks if b.kind == "table"]
    conditions = dict(tables[0].rows)
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
    assert "<table>" in html and "Orchestration tax" in html and "ESTIMATE" not in html


def test_pdf_has_pages_and_figures(blocks_and_db, tmp_path):
    blocks, _ = blocks_and_db
    out = write_report(blocks, tmp_path / "report.pdf")
    pages, images = _pdf_pages_and_images(out)
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
