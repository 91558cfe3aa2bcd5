"""A custom arm's tax on every surface, as the built-in arms': `alems summary` (text and
JSON), the report and the dashboard read its headline and its per task × provider rows;
a group without an agentic arm (`--workflows linear,mypkg:agent`) still has a summary,
report and dashboard, its headline saying there is no agentic arm."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pandas")
pytest.importorskip("scipy")

from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.report import build_report  # noqa: E402
from alems.analysis.summary import build_summary  # noqa: E402
from alems.analysis.views import arm_tax_rows, headline_lines  # noqa: E402
from alems.cli import app  # noqa: E402
from alems.cli._common import run_app  # noqa: E402

from analysis_fixture import build_fixture_db  # noqa: E402

ARM = "mypkg.agents:my_agent"


def _surfaces(db, capsys, monkeypatch):
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    summary = build_summary(conn, db, group)
    monkeypatch.setenv("COLUMNS", "400")
    assert run_app(app, ["summary", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert run_app(app, ["summary", "--db", str(db), "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    blocks = build_report(conn, db, group)
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(db), base_url="http://127.0.0.1") as c:
        page = c.get(f"/group/{summary['group_id']}")
    assert page.status_code == 200
    return summary, text, as_json, blocks, page.text


@pytest.mark.parametrize("workflows", [("linear", "agentic", ARM), ("linear", ARM)])
def test_custom_arm_tax_on_every_surface(tmp_path, capsys, monkeypatch, workflows):
    db = build_fixture_db(tmp_path / "experiments.db", workflows=workflows)
    summary, text, as_json, blocks, page = _surfaces(db, capsys, monkeypatch)
    mine = summary["arm_tax"][ARM]
    line = mine["headline_text"]
    assert line.startswith(f"orchestration tax of {ARM}: ") and "n/a" not in line
    assert line in headline_lines(summary) and line in text.splitlines()
    assert as_json["arm_tax"][ARM]["headline_text"] == line
    assert line in [b.text for b in blocks if b.kind == "p"]
    rows = [t for t in arm_tax_rows(summary) if t["arm"] == ARM]
    assert len(rows) == len(mine["rows"]) == 4   # 2 tasks, per provider, overall
    assert page.count(f'data-arm="{ARM}"') == len(rows)
    table = next(b for b in blocks if b.kind == "table" and b.text.startswith("Orchestration tax"))
    assert sum(r[0] == ARM for r in table.rows) == len(rows)
    assert run_app(app, ["status", "--db", str(db)]) == 0   # its progress row lines up
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")
            and " failed " in line]
    assert len(rows) == len(workflows) and len({line.index("/") for line in rows}) == 1
    if "agentic" not in workflows:
        assert summary["headline_text"] == ("orchestration tax: n/a — the group ran no "
                                            "agentic arm (see the other arms' lines)")
        assert {t["arm"] for t in arm_tax_rows(summary)} == {ARM}, "no empty agentic rows"
        assert not [w for w in summary["warnings"] if "left out of the tax" in w]
    else:
        assert summary["headline_text"].startswith("orchestration tax: ")
        assert page.count('data-arm="agentic"') == 4


# ---------------------------------------------------------------- every non-linear arm
# agentic, react and a custom arm in one batch: where the energy goes (summary text and
# JSON, the flat table, the report's table and Figure 4, the dashboard's figure) and the
# pilot's repetitions (plan-reps) cover each, built-in arms first, each arm its own figures.
EVERY = ("linear", "agentic", "react", ARM)
NON_LINEAR = ("agentic", "react", ARM)   # ordered_arms: built-in, then custom by name
SHARE_KINDS = {"stage": ("planning", "execution", "synthesis"),
               "activity": ("llm", "tool", "waiting")}


@pytest.fixture(scope="module")
def db4(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("every") / "experiments.db",
                            workflows=EVERY)


@pytest.fixture(scope="module")
def summary4(db4):
    conn = open_db(db4)
    return build_summary(conn, db4, resolve_group(conn, "latest"))


def _expected_shares(db) -> dict:
    """{(arm, task, basis, kind): share} straight from the tables: Σ phase energy ÷ Σ
    package energy of the arm's completed runs (the remainder outside the kinds: 'other')."""
    import sqlite3

    raw = sqlite3.connect(db)
    out = {}
    for arm, task, pkg_uj in raw.execute(
            "SELECT r.workflow_type, e.task_name, SUM(r.pkg_energy_uj) FROM runs r JOIN "
            "experiments e USING (exp_id) WHERE r.status = 'ok' AND r.workflow_type != "
            "'linear' GROUP BY 1, 2"):
        for basis, kinds in SHARE_KINDS.items():
            total = 0.0
            for kind in kinds:
                uj = raw.execute(
                    "SELECT COALESCE(SUM(p.energy_uj), 0) FROM phases p JOIN runs r USING "
                    "(run_id) JOIN experiments e USING (exp_id) WHERE r.status = 'ok' AND "
                    "r.workflow_type = ? AND e.task_name = ? AND p.kind = ?",
                    (arm, task, kind)).fetchone()[0]
                out[(arm, task, basis, kind)] = uj / pkg_uj
                total += uj
            out[(arm, task, basis, "other")] = max(pkg_uj - total, 0.0) / pkg_uj
    return out


def test_phase_shares_cover_every_arm_in_order(db4, summary4):
    phases = summary4["phases"]
    arms_in_order = list(dict.fromkeys(p["arm"] for p in phases))
    assert arms_in_order == list(NON_LINEAR)
    expected = _expected_shares(db4)
    got = {(p["arm"], p["task"], p["basis"], p["kind"]): p["share"] for p in phases}
    assert got.keys() == expected.keys()
    for key, share in expected.items():
        assert got[key] == pytest.approx(share, rel=1e-9), key
    # the flat table: each arm's row has its own shares and its own tax
    from alems.analysis.summary import workflow_table

    by_arm = {(t["arm"], t["task"], t["provider"]): t for t in arm_tax_rows(summary4)}
    for row in workflow_table(summary4):
        if row["workflow"] == "linear":
            continue
        key = (row["workflow"], row["task"], "activity", "llm")
        assert row["share_activity_llm"] == pytest.approx(expected[key], rel=1e-9)
        tax = by_arm[(row["workflow"], row["task"], row["provider"])]
        assert (row["tax_ratio"], row["tax_n_pairs"]) == (tax["tax_ratio"], tax["n_pairs"])


def test_summary_text_and_json_show_every_arm_phase_rows(db4, summary4, capsys,
                                                         monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert run_app(app, ["summary", "--db", str(db4)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, ln in enumerate(lines) if "package energy per phase" in ln)
    assert "each non-linear arm's" in lines[at]
    table = lines[at:]
    for p in summary4["phases"]:
        cells = [p["arm"], p["task"], p["provider"], p["basis"], p["label"], f"{p['share']:.1%}"]
        assert any(all(c in ln for c in cells) and ln.index(p["arm"]) < ln.index(p["task"])
                   for ln in table), cells
    assert run_app(app, ["summary", "--db", str(db4), "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert {p["arm"] for p in as_json["phases"]} == set(NON_LINEAR)


def test_report_phase_table_and_figure_cover_every_arm(db4, summary4):
    conn = open_db(db4)
    blocks = build_report(conn, db4, resolve_group(conn, "latest"))
    table = next(b for b in blocks if b.name == "phase_shares")
    assert table.columns[:3] == ["arm", "task", "provider"]
    assert [r[:2] for r in table.rows] == [[arm, task] for arm in NON_LINEAR
                                           for task in ("factual_qa", "gsm8k_basic")]
    llm = table.columns.index("model calls")
    shares = {(p["arm"], p["task"]): p["share"] for p in summary4["phases"]
              if p["kind"] == "llm"}
    assert [r[llm] for r in table.rows] == [f"{shares[(r[0], r[1])]:.1%}" for r in table.rows]
    fig4 = next(b for b in blocks if b.name == "phase_shares" and b.kind == "figure")
    assert "each non-linear arm's package energy" in fig4.text
    ticks = [t.get_text() for t in fig4.figure.axes[0].get_yticklabels()]
    assert ticks == [f"{arm}: {task} / local: by {basis}" for arm in NON_LINEAR
                     for task in ("factual_qa", "gsm8k_basic") for basis in ("stage", "activity")]


def test_dashboard_phase_figure_covers_every_arm(db4, summary4):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    import re

    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(db4), base_url="http://127.0.0.1") as c:
        page = c.get(f"/group/{summary4['group_id']}").text
    assert f"<h2>Phase breakdown ({', '.join(NON_LINEAR)} runs)</h2>" in page
    fig = json.loads(re.search(r'<script type="application/json" id="fig-phases-json">(.*?)'
                               r"</script>", page, re.S).group(1))
    llm = next(t for t in fig["data"] if t["name"] == "model calls")
    rows = [p for p in summary4["phases"] if p["kind"] == "llm"]
    assert llm["y"] == [f"{p['arm']}: {p['task']} / {p['provider']} · by {p['basis']}"
                        for p in rows]
    assert llm["x"] == pytest.approx([p["share"] * 100 for p in rows], rel=1e-12)
    assert "each non-linear arm" in json.dumps(fig["layout"]["title"])


def _pilot_ratios(db, arm: str) -> dict:
    """{task: [arm ÷ linear dynamic energy of each complete pair]} straight from the runs."""
    import sqlite3

    raw = sqlite3.connect(db)
    rows = raw.execute(
        "SELECT e.task_name, r.run_number, r.workflow_type, r.dynamic_energy_uj FROM runs r "
        "JOIN experiments e USING (exp_id) WHERE r.status = 'ok' AND r.dynamic_energy_uj IS "
        "NOT NULL AND r.workflow_type IN ('linear', ?)", (arm,)).fetchall()
    energy = {(t, n, w): e for t, n, w, e in rows}
    out: dict = {}
    for (t, n, w), e in sorted(energy.items()):
        if w == arm and (t, n, "linear") in energy:
            out.setdefault(t, []).append(e / energy[(t, n, "linear")])
    return out


def test_plan_reps_sizes_every_arm_tax(db4, capsys):
    import math
    import statistics

    assert run_app(app, ["plan-reps", "--db", str(db4), "--group-id", "latest",
                         "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    tax = [r for r in plan["rows"] if r["metric"] == "tax_ratio"]
    assert [r["workflow"] for r in tax] == [f"{arm} ÷ linear" for arm in NON_LINEAR
                                            for _ in ("factual_qa", "gsm8k_basic")]
    for r in tax:
        ratios = _pilot_ratios(db4, r["arm"])[r["task"]]
        logs = [math.log(x) for x in ratios]
        assert r["pilot_n"] == len(ratios)
        assert r["mean"] == pytest.approx(math.exp(statistics.fmean(logs)), rel=1e-9)
        assert r["sd"] == pytest.approx(statistics.stdev(logs), rel=1e-9)
    assert plan["repetitions"] == max(r["repetitions"] for r in plan["rows"]
                                      if r["repetitions"] is not None)
    # a few-pairs warning per arm and cell, the arm named where it is not agentic
    for arm in ("react", ARM):
        assert any(w.startswith(f"gsm8k_basic/local ({arm}): the pilot has only")
                   for w in plan["warnings"]), arm
    assert run_app(app, ["plan-reps", "--db", str(db4), "--from-group", "latest"]) == 0
    text = capsys.readouterr().out
    for arm in NON_LINEAR:
        assert f"{arm} ÷ linear" in text


def test_a_custom_arm_run_left_out_of_the_shares_is_named(tmp_path):
    """A custom arm's run whose phase energy is unknown leaves its arm's shares, and the
    warning names that arm; the other arms keep all their runs."""
    import sqlite3

    db = build_fixture_db(tmp_path / "e.db", workflows=EVERY, with_error=False)
    with sqlite3.connect(db) as raw:
        run_id = raw.execute("SELECT MIN(run_id) FROM runs WHERE workflow_type = ?",
                             (ARM,)).fetchone()[0]
        raw.execute("UPDATE phases SET energy_uj = NULL WHERE run_id = ? AND kind = 'llm'",
                    (run_id,))
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    assert any(w.startswith(f"1 {ARM} run(s) left out of the phase shares")
               for w in s["warnings"])
    assert not any("agentic run(s) left out" in w or "react run(s) left out" in w
                   for w in s["warnings"])
    n_runs = {(p["arm"], p["task"]): p["n_runs"] for p in s["phases"]}
    assert sorted(n_runs.values()).count(3) == 1 and set(n_runs.values()) == {3, 4}


def test_export_gives_every_arm_run_its_pair_and_status_lists_arms_in_order(db4, capsys,
                                                                            tmp_path):
    """`alems export`: each non-linear run carries its own pair with the linear run of its
    repetition (arm_pair_*), agentic's equal to the spec's tax_* columns; `alems status`
    lists the arms as the batch does (built-in first, then custom)."""
    pd = pytest.importorskip("pandas")
    out = tmp_path / "runs.csv"
    assert run_app(app, ["export", "--db", str(db4), "-o", str(out)]) == 0
    capsys.readouterr()
    df = pd.read_csv(out)
    for arm in NON_LINEAR:
        mine = df[df["workflow_type"] == arm].sort_values(["task_name", "run_number"])
        for task, ratios in _pilot_ratios(db4, arm).items():
            got = mine[(mine["task_name"] == task) & mine["arm_pair_tax_ratio"].notna()]
            assert got["arm_pair_tax_ratio"].tolist() == pytest.approx(ratios, rel=1e-12), arm
            assert got["arm_pair_tax_percent"].tolist() == pytest.approx(
                [(x - 1) * 100 for x in ratios], rel=1e-9)
        assert mine["arm_pair_linear_run_id"].notna().all()
    ag = df[(df["workflow_type"] == "agentic") & df["tax_ratio"].notna()]
    assert ag["arm_pair_tax_ratio"].tolist() == pytest.approx(ag["tax_ratio"].tolist(),
                                                              rel=1e-12)
    assert df.loc[df["workflow_type"] == "linear", "arm_pair_tax_ratio"].isna().all()
    assert run_app(app, ["status", "--db", str(db4), "--format", "json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert [w["workflow"] for w in st["workflows"]] == ["linear", *NON_LINEAR]


def test_every_surface_orders_the_arms_alike(summary4):
    """Built-in arms first, then custom ones by name (catalog.arms.ordered_arms), on the
    headline lines, the tax rows and the phase shares alike."""
    assert [line.split(": ")[0] for line in headline_lines(summary4)] == [
        "orchestration tax", "orchestration tax of react", f"orchestration tax of {ARM}"]
    assert list(dict.fromkeys(t["arm"] for t in arm_tax_rows(summary4))) == list(NON_LINEAR)
    assert list(dict.fromkeys(p["arm"] for p in summary4["phases"])) == list(NON_LINEAR)
    assert list(summary4["arm_tax"]) == ["react", ARM]


def test_closing_lines_and_host_rows_order_the_arms_alike(db4, tmp_path):
    import shutil
    import sqlite3

    from alems.analysis.closing import batch_closing

    conn = open_db(db4)
    group = resolve_group(conn, "latest")
    closing = batch_closing(conn, group.group_id, list(reversed(EVERY)))
    assert list(closing["arm_headlines"]) == ["react", ARM]
    db = tmp_path / "hosts.db"     # the same batch over two hosts: per-host rows per arm
    shutil.copyfile(db4, db)
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE runs SET host = 'node-b' WHERE run_number % 2 = 0")
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    assert list(dict.fromkeys(r["arm"] for r in s["hosts"]["per_host"])) == list(NON_LINEAR)


def test_each_arm_names_the_repetitions_its_tax_leaves_out(tmp_path):
    """An errored react run and an errored custom-arm run each leave one repetition out of
    their own arm's tax; the warning says which arm (agentic's stays unlabelled)."""
    import sqlite3

    db = build_fixture_db(tmp_path / "e.db", workflows=EVERY, with_error=False)
    with sqlite3.connect(db) as raw:
        for arm, rep in (("react", 1), (ARM, 2)):
            raw.execute("UPDATE runs SET status = 'error' WHERE workflow_type = ? AND "
                        "run_number = ? AND exp_id = (SELECT MIN(exp_id) FROM experiments)",
                        (arm, rep))
        task = raw.execute("SELECT task_name FROM experiments ORDER BY exp_id").fetchone()[0]
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    left = sorted(w for w in s["warnings"] if "left out of the tax" in w)
    assert left == sorted(f"{task}/local ({arm}): 1 repetition(s) left out of the tax (an arm "
                          "errored or has no energy)" for arm in ("react", ARM))


def test_a_scripted_batch_of_every_arm_reaches_every_surface(tmp_path, capsys, monkeypatch):
    """A real (scripted) batch of linear, agentic, react and a custom arm: the phases the
    arms mark themselves give each its shares (summary, report, dashboard) and its
    plan-reps rows."""
    from test_batch import make_runner

    custom = "_arms:good"
    arms = ("agentic", "react", custom)
    make_runner(tmp_path, workflows=["linear", *arms]).run()
    db = tmp_path / "data" / "experiments.db"
    summary, text, as_json, blocks, page = _surfaces(db, capsys, monkeypatch)
    assert list(dict.fromkeys(p["arm"] for p in summary["phases"])) == list(arms)
    for arm in arms:
        for task in ("gsm8k_basic", "factual_qa"):
            mine = [p for p in summary["phases"] if (p["arm"], p["task"]) == (arm, task)]
            for basis in ("stage", "activity"):
                assert sum(p["share"] for p in mine if p["basis"] == basis) == \
                    pytest.approx(1.0, abs=1e-9), (arm, task, basis)
            llm = next(p for p in mine if p["kind"] == "llm")
            assert 0 < llm["share"] < 1 and llm["n_runs"] == 2, (arm, task)
    assert {p["arm"] for p in as_json["phases"]} == set(arms)
    table = next(b for b in blocks if b.name == "phase_shares")
    assert [r[0] for r in table.rows] == [a for a in arms for _ in range(2)]
    import re

    fig = json.loads(re.search(r'id="fig-phases-json">(.*?)</script>', page, re.S).group(1))
    bars = {y for trace in fig["data"] for y in trace["y"]}
    for arm in arms:
        assert f"{arm}: gsm8k_basic / scripted · by activity" in bars
        assert any(line.strip("│ ").startswith(f"{arm} ") and "model calls" in line
                   for line in text.splitlines()), arm
    assert run_app(app, ["plan-reps", "--db", str(db), "--group-id", "latest",
                         "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [r["arm"] for r in plan["rows"] if r["metric"] == "tax_ratio"] == \
        [a for a in arms for _ in range(2)]
