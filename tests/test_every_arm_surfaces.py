"""Issue 18 items 1–3 on every surface: a 3-arm batch (linear, agentic, react) reads the
same headline strings — every arm's, with the ESTIMATE tag and the headline's caveats — on
the batch's closing lines, `alems summary`, the report and the dashboard, and every
non-linear arm has its per task × provider rows wherever agentic has them."""

from __future__ import annotations

import html
import json
import re

import pytest

pytest.importorskip("pandas")
pytest.importorskip("scipy")

from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.report import build_report  # noqa: E402
from alems.analysis.summary import build_summary  # noqa: E402
from alems.analysis.summary_warnings import ordered_warnings  # noqa: E402
from alems.analysis.tax import tax_cells  # noqa: E402
from alems.analysis.views import (ESTIMATE_TAG, arm_tax_rows, headline_lines,  # noqa: E402
                                  tax_table)
from alems.cli import app  # noqa: E402
from alems.cli._common import run_app  # noqa: E402
from alems.cli.progress import format_summary  # noqa: E402
from alems.analysis.closing import batch_closing  # noqa: E402
from alems.experiment.batch import BatchRunner  # noqa: E402
from alems.experiment.plan import BatchConfig  # noqa: E402
from alems.experiment.providers.scripted import ScriptedProvider  # noqa: E402
from alems.measure import quiet  # noqa: E402

from _fake_sampling import BusyReplaySampler  # noqa: E402
from analysis_fixture import build_fixture_db  # noqa: E402
from test_batch import three_step_reply  # noqa: E402

ARMS = ("linear", "agentic", "react")


@pytest.fixture(scope="module")
def db3(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("arms") / "experiments.db", workflows=ARMS)


@pytest.fixture(scope="module")
def summary3(db3):
    conn = open_db(db3)
    return build_summary(conn, db3, resolve_group(conn, "latest"))


def _summary_text(capsys, monkeypatch, db, *extra) -> str:
    monkeypatch.setenv("COLUMNS", "400")    # one line per table row and per headline
    code = run_app(app, ["summary", "--db", str(db), *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _heads(s: dict) -> list[str]:
    """Every arm's headline line, straight from the summary's JSON."""
    return [s["headline_text"]] + [a["headline_text"] for _, a in sorted(s["arm_tax"].items())]


def _rows(s: dict) -> list[tuple[str, dict]]:
    """(arm, tax row) of every arm, straight from the summary's JSON."""
    return [("agentic", t) for t in s["tax"]] + [
        (arm, t) for arm, a in sorted(s["arm_tax"].items()) for t in a["rows"]]


def _cells_of(rows: list[dict]) -> set[tuple]:
    return {(t["task"], t["provider"]) for t in rows}


def test_every_arm_has_a_headline_and_the_rows_agentic_has(summary3):
    rows = arm_tax_rows(summary3)
    by_arm = {arm: [t for t in rows if t["arm"] == arm] for arm in ("agentic", "react")}
    assert by_arm["react"] and _cells_of(by_arm["react"]) == _cells_of(by_arm["agentic"])
    lines = headline_lines(summary3)
    assert lines == _heads(summary3)
    assert lines[0].startswith("orchestration tax: ")
    assert lines[1].startswith("orchestration tax of react: ")
    assert lines[1] == summary3["arm_tax"]["react"]["headline_text"]
    # a react row carries what an agentic row carries (EpG of its own arm)
    react_cell = next(t for t in by_arm["react"] if t["task"] != "all")
    assert react_cell["epg_arm_j"] is not None and react_cell["epg_linear_j"] is not None


def test_summary_prints_every_arm_headline_and_rows(db3, summary3, capsys, monkeypatch):
    out = _summary_text(capsys, monkeypatch, db3)
    lines = out.splitlines()
    heads = _heads(summary3)
    assert len(heads) == 2 and lines[:2] == heads
    for arm, t in _rows(summary3):
        c = tax_cells(t)
        pat = re.compile(rf"\b{arm}\b.*\b{t['task']}\b.*\b{t['provider']}\b.*"
                         rf"{re.escape(c['ratio'])}.*{re.escape(c['ci'])}")
        assert any(pat.search(line) for line in lines), (arm, t["task"], t["provider"])


def test_report_has_every_arm_headline_and_rows(db3, summary3):
    conn = open_db(db3)
    blocks = build_report(conn, db3, resolve_group(conn, "latest"))
    texts = [b.text for b in blocks if b.kind == "p"]
    for line in _heads(summary3):
        assert line in texts
    table = next(b for b in blocks if b.kind == "table" and b.text.startswith("Orchestration tax"))
    assert table.columns[0] == "arm" and table.rows == tax_table(summary3)
    expected = [[arm, t["task"], t["provider"], str(t["n_pairs"]), tax_cells(t)["ratio"],
                 tax_cells(t)["ci"]] for arm, t in _rows(summary3)]
    assert [r[:6] for r in table.rows] == expected


def test_dashboard_has_every_arm_headline_and_rows(db3, summary3):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(db3), base_url="http://127.0.0.1") as c:
        page = c.get(f"/group/{summary3['group_id']}").text
    for line in _heads(summary3):
        assert f"<li>{html.escape(line, quote=False)}</li>" in page.replace("&#39;", "'")
    rows = _rows(summary3)
    for arm in ("agentic", "react"):
        assert page.count(f'data-arm="{arm}"') == sum(a == arm for a, _ in rows)
    for arm, t in rows:
        c = tax_cells(t)
        assert (f'<tr data-arm="{arm}" data-task="{t["task"]}" data-provider="{t["provider"]}"'
                in page)
        assert f"<td>{c['ratio']}</td><td>{html.escape(c['ci'])}</td>" in page


def _estimate_batch(tmp_path, monkeypatch):
    """A 3-arm scripted batch on a machine that is never quiet, energy estimated."""
    monkeypatch.setattr(quiet, "read_stat", lambda proc_root=None: (9, 0, 100))
    cfg = BatchConfig(tasks=["gsm8k_basic", "factual_qa"], providers=["scripted"],
                      workflows=list(ARMS), repetitions=2, seed=7, hz=200.0,
                      db_path=tmp_path / "e.db", save_db=True, baseline_duration_s=0.02,
                      baseline_reps=2, group_id="g-arms")
    runner = BatchRunner(cfg, sampler_factory=lambda: BusyReplaySampler(
        pkg_w=2.0, core_w=None, busy_w=30.0, hz=200.0, energy_source="estimate"),
        provider_factory=lambda name: ScriptedProvider(three_step_reply, delay_s=0.005),
        log=lambda m: None, progress=False, closing=batch_closing)
    return runner.run()


def test_closing_lines_are_summary_first_lines(tmp_path, monkeypatch, capsys):
    closing = format_summary(_estimate_batch(tmp_path, monkeypatch)).splitlines()
    db = tmp_path / "e.db"
    conn = open_db(db)
    group = resolve_group(conn, "g-arms")
    s = build_summary(conn, db, group)
    heads = [line + ESTIMATE_TAG for line in _heads(s)]
    assert len(heads) == 2 and s["estimate"]
    # the closing block: every arm's headline with the tag, then the headline's caveats
    at = closing.index("  " + heads[0])
    assert closing[at:at + 2] == ["  " + h for h in heads]
    caveats = s["headline_caveats"]
    assert caveats[0].startswith("12 run(s) were not measured on a quiet machine")
    assert any("rests on only 4 pairs" in w for w in caveats)
    assert closing[at + 2:at + 2 + len(caveats)] == [f"  warning: {w}" for w in caveats]
    # summary lists them first within their kinds (summary_warnings.warning_groups)
    assert [w for w in s["warnings"] if w in caveats] == caveats
    assert s["warnings"] == ordered_warnings(s["warnings"])
    # `alems summary`: the same lines first, then the same caveats
    out = _summary_text(capsys, monkeypatch, db, "--group-id", "g-arms").splitlines()
    assert out[:2] == heads
    assert out[2:2 + len(caveats)] == [f"warning: {w}" for w in caveats]
    # the report: the same lines, the first HEADLINE_CAVEATS caveats under them, then how
    # many more wait under Warnings
    from alems.analysis.report import HEADLINE_CAVEATS

    blocks = build_report(conn, db, group)
    texts = [(b.kind, b.text) for b in blocks]
    at = texts.index(("h2", "Headline"))
    shown = caveats[:HEADLINE_CAVEATS]
    assert texts[at + 1:at + 3 + len(shown)] == [("p", h) for h in heads] + \
        [("warn", w) for w in shown]
    more = len(caveats) - len(shown)
    assert texts[at + 3 + len(shown)] == (("p", f"{more} more caveat(s) under Warnings.")
                                          if more else texts[at + 3 + len(shown)])
    # the JSON keeps them too
    code = run_app(app, ["summary", "--db", str(db), "--group-id", "g-arms", "--format", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["headline_caveats"] == caveats
    # the dashboard: the same lines in the same order, then the same caveats
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(db), base_url="http://127.0.0.1") as c:
        page = c.get("/group/g-arms").text
    lines = re.search(r'<ul class="headline-lines" id="headline-lines">(.*?)</ul>', page, re.S)
    warns = re.search(r'<ul class="warn" id="headline-caveats">(.*?)</ul>', page, re.S)
    items = [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", lines.group(1), re.S)]
    assert items == heads
    assert [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", warns.group(1),
                                                   re.S)] == caveats


def test_headline_caveats_come_in_the_issue_order():
    from alems.analysis.summary_warnings import headline_caveats

    row = {"task": "all", "provider": "all", "n_pairs": 4, "tax_ratio": 2.0, "ci_low": 0.5,
           "ci_high": 8.0, "confidence": 0.95, "coverage_checked": False,
           "sd_log_pair_ratio": 0.8,
           "cv_linear": 0.7, "includes_one": True,
           "coverage_flags": ["sd of log pair ratios 0.80 above 0.30"]}
    loud = [{"task_name": "t", "provider": "p", "workflow_type": "linear", "run_number": 1,
             "not_quiet_reason": "2.00 other runnable task(s)"}]
    react = dict(row, arm="react")
    out = headline_caveats([row, react, dict(row, tax_ratio=None, arm="x")], loud)
    assert [w.split(":")[0] for w in out] == [
        "1 run(s) were not measured on a quiet machine (e.g. t/p/linear rep 1",
        "all/all", "all/all (react)", "all/all", "all/all (react)"]
    assert "coverage was not checked" in out[1] and "coverage was not checked" in out[2]
    assert "only 4 pairs" in out[3] and "only 4 pairs" in out[4]


def test_summary_shows_every_arm_in_the_tax_per_host(db3, capsys, monkeypatch, tmp_path):
    """Three arms over two hosts: `alems summary`'s per-host table has react's rows (each
    host and pooled), with the same figures as its JSON."""
    import shutil
    import sqlite3

    db = tmp_path / "experiments.db"
    shutil.copyfile(db3, db)
    shutil.copytree(db3.parent / "samples", tmp_path / "samples")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET host = 'node-b' WHERE run_number % 2 = 0")
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    react = [r for r in s["hosts"]["per_host"] + s["hosts"]["pooled"] if r["arm"] == "react"]
    assert {r.get("host") for r in react} >= {"node-b"} and any("n_hosts" in r for r in react)
    lines = _summary_text(capsys, monkeypatch, db).splitlines()
    table = lines[next(i for i, ln in enumerate(lines) if "Tax per host" in ln):]
    for r in react:
        c = tax_cells(r)
        pat = re.compile(rf"\breact\b.*\b{r['task']}\b.*\b{r['provider']}\b.*"
                         rf"{re.escape(c['ratio'])}.*{re.escape(c['ci'])}")
        assert any(pat.search(line) for line in table), r
