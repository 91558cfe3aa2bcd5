"""What the report, `alems summary` and the dashboard add for issues 9, 13 and 15: the
examples of each arm with their phases, the tax on CPU package and on all measured devices
(GPU), and the tax per host when a batch spans hosts."""

from __future__ import annotations

import html as html_mod
import os
import shutil
import sqlite3

import pytest

pd = pytest.importorskip("pandas")

from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.report import build_report, render_html  # noqa: E402
from alems.analysis.report_examples import pick_example, trace_lines  # noqa: E402
from alems.analysis.tax import ALL_DEVICES_LABEL, CPU_LABEL  # noqa: E402

from inproc import alems_inproc  # noqa: E402
from test_batch import TASKS, make_runner  # noqa: E402


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    """A scripted batch (2 tasks × 2 repetitions; its agentic plans call three tools)."""
    root = tmp_path_factory.mktemp("extras")
    make_runner(root).run()
    return root / "data"


@pytest.fixture(scope="module")
def fleet_gpu_db(batch_dir, tmp_path_factory):
    """The same batch as if repetition 2 ran on another host and every run measured a GPU."""
    data = tmp_path_factory.mktemp("fleet") / "data"
    shutil.copytree(batch_dir, data)
    db = data / "experiments.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET host = 'node-b' WHERE run_number = 2")
        conn.execute("UPDATE runs SET gpu_dynamic_energy_uj = 2e6 WHERE status = 'ok'")
    return db


def _html(db) -> str:
    conn = open_db(db)
    try:
        return render_html(build_report(conn, db, resolve_group(conn, "latest")))
    finally:
        conn.close()


# ------------------------------------------------------------------ issue 9: examples
def test_report_shows_one_run_per_task_and_arm_with_plan_tool_calls_and_phases(batch_dir):
    db = batch_dir / "experiments.db"
    with sqlite3.connect(db) as conn:   # model text must be escaped, never markup
        conn.execute("UPDATE runs SET response = '<b>Answer: 5</b>' WHERE workflow_type = 'linear'")
    html = _html(db)
    examples = html[html.index("<h2>Examples</h2>"):html.index("<h2>Conditions</h2>")]
    for task in TASKS:
        for arm in ("linear", "agentic"):
            assert f"Example: {task} / scripted / {arm}" in examples
            assert f"({task} / {arm})</caption>" in examples   # its phases table
    assert examples.count("calculator(expression=1 + 1) → 2") == len(TASKS)   # agentic only
    assert "lookup(table=elements, key=Iron) → symbol=Fe; atomic_number=26" in examples
    assert "<td>  · tool:calculator</td><td>tool</td>" in examples
    assert "<td>planning</td><td>planning</td>" in examples and "<td>linear</td><td>linear</td>" in examples
    assert "&lt;b&gt;Answer: 5&lt;/b&gt;" in examples and "<b>Answer" not in examples
    assert "What is the chemical symbol" in examples or "Which planet" in examples   # a prompt
    assert _html(db).count("Example: ") == html.count("Example: ")   # same runs every time


def test_the_example_is_the_median_energy_ok_run():
    cell = pd.DataFrame({"run_id": [1, 2, 3, 4, 5], "status": ["ok", "ok", "error", "ok", "ok"],
                         "dynamic_energy_uj": [5.0, 1.0, 3.0, None, 9.0]})
    assert pick_example(cell)["run_id"] == 1          # ok runs with energy: 1 J, 5 J, 9 J
    assert pick_example(cell[cell["run_id"] == 3]) is None
    assert pick_example(cell[cell["run_id"] == 4])["run_id"] == 4   # no energy: still shown


def test_trace_lines_show_dropped_calls_react_steps_and_refusals():
    trace = ('[{"event": "step", "step": 1, "mode": "act", "calls": [{"name": "calculator", '
             '"input": {"expression": "2+2"}}], "answer": null},'
             '{"event": "dropped", "step": 2, "reason": "step limit", "call": {"name": "lookup", '
             '"input": {"key": "Fe"}, "malformed": "no table"}},'
             '{"event": "llm", "purpose": "plan"}, {"event": "refusal", "text": "I cannot"}]')
    rows = trace_lines(trace)
    assert rows == [["step 1 (act)", "calculator(expression=2+2)"],
                    ["dropped 2", "lookup(key=Fe) [malformed: no table]: step limit"],
                    ["refusal", "I cannot"]]
    assert trace_lines("{not json")[0][1].startswith("unreadable")


# ------------------------------------------------------ issues 13 and 15: GPU and hosts
def test_one_host_without_gpu_keeps_one_headline_and_no_host_table(batch_dir):
    html = _html(batch_dir / "experiments.db")
    assert ALL_DEVICES_LABEL not in html and "Tax per host" not in html
    proc = alems_inproc("summary", "--db", str(batch_dir / "experiments.db"),
                        env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Tax per host" not in out and ALL_DEVICES_LABEL not in out


def test_report_gives_both_labelled_taxes_and_the_tax_per_host(fleet_gpu_db):
    html = _html(fleet_gpu_db)
    head = html[html.index("<h2>Headline</h2>"):html.index("<h2>Summary per task")]
    assert f"<p>{html_mod.escape(CPU_LABEL)}: orchestration tax" in head
    assert f"<p>{html_mod.escape(ALL_DEVICES_LABEL)}: orchestration tax" in head
    hosts = html[html.index("Tax per host"):]
    hosts = hosts[:hosts.index("</table>")]
    assert "<td>node-b</td>" in hosts
    assert hosts.count("<tr") == 1 + 2 * len(TASKS) + len(TASKS)   # head, 2 hosts, pooled
    assert hosts.count("pooled (2 hosts, host as block)") == len(TASKS)


def test_summary_table_shows_the_tax_per_host_only_with_several_hosts(fleet_gpu_db):
    proc = alems_inproc("summary", "--db", str(fleet_gpu_db), env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Tax per host" in out and "node-b" in out and "pooled (2 hosts" in out
    assert f"{CPU_LABEL}: orchestration tax" in out and ALL_DEVICES_LABEL in out


def test_dashboard_group_page_shows_both_taxes_and_the_tax_per_host(fleet_gpu_db, batch_dir):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(fleet_gpu_db), base_url="http://127.0.0.1") as c:
        page = c.get("/group/g-test").text
    assert 'id="headline-lines"' in page
    assert f"{html_mod.escape(ALL_DEVICES_LABEL)}: orchestration tax" in page
    cpu_line = html_mod.escape(f"{CPU_LABEL}: orchestration tax", quote=False)
    assert cpu_line.split("'")[0] in page and cpu_line.split("'")[1] in page   # Jinja: &#39;
    assert 'id="host-tax"' in page and "<td>node-b</td>" in page
    with TestClient(create_app(batch_dir / "experiments.db"), base_url="http://127.0.0.1") as c:
        page = c.get("/group/g-test").text
    assert 'id="host-tax"' not in page and html_mod.escape(ALL_DEVICES_LABEL) not in page
