"""Every SQL query of the user's spec runs verbatim through `alems query` and returns rows.

The queries are copied from ../shared/spec/seed-batch-experiments-and-metrics.md
("Statistical Analysis", "Sample Queries", "Batch Monitoring", "Resuming"); the only edits
are the placeholders: 'your-session-id' -> the real group id, run 977 / exp 185 -> real ids.
The database is filled by the real batch runner (scripted model, synthetic power).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_batch import REPO, env_for, make_runner

SPEC = REPO.parent / "shared" / "spec" / "seed-batch-experiments-and-metrics.md"

SUMMARY_BY_TASK = """SELECT
e.task_name,
e.provider,
COUNT(*) as runs,
AVG(r.dynamic_energy_uj/1e6) as mean_energy_j,
STDDEV(r.dynamic_energy_uj/1e6) as std_energy_j,
AVG(r.duration_ns/1e9) as mean_duration_s,
AVG(ots.tax_percent) as mean_tax_pct
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
JOIN orchestration_tax_summary ots ON r.run_id = ots.linear_run_id
WHERE e.group_id = 'your-session-id'
GROUP BY e.task_name, e.provider, r.workflow_type;"""

CONFIDENCE = """WITH stats AS (
SELECT
task_name,
provider,
workflow_type,
AVG(dynamic_energy_uj/1e6) as mean,
STDDEV(dynamic_energy_uj/1e6) as std,
COUNT(*) as n
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = 'your-session-id'
GROUP BY task_name, provider, workflow_type
)
SELECT
task_name,
provider,
workflow_type,
ROUND(mean, 3) as mean_j,
ROUND(mean - 1.96 * std/SQRT(n), 3) as ci_lower,
ROUND(mean + 1.96 * std/SQRT(n), 3) as ci_upper
FROM stats;"""

ALL_METRICS = """SELECT * FROM runs WHERE run_id = 977;"""

LINEAR_VS_AGENTIC = """SELECT
r.workflow_type,
AVG(r.dynamic_energy_uj/1e6) as avg_energy_j,
AVG(r.duration_ns/1e9) as avg_duration_s,
AVG(r.ipc) as avg_ipc
FROM runs r
WHERE r.exp_id = 185
GROUP BY r.workflow_type;"""

HIGH_TAX = """SELECT
e.exp_id,
e.task_name,
ots.tax_percent
FROM orchestration_tax_summary ots
JOIN runs r ON ots.linear_run_id = r.run_id
JOIN experiments e ON r.exp_id = e.exp_id
WHERE ots.tax_percent > 200
ORDER BY ots.tax_percent DESC;"""

# Batch Monitoring: the SQL that `watch -n 5 "sqlite3 data/experiments.db '…'"` hands to
# sqlite3 once the shell has removed its quoting (\" -> ").
WATCH = ("SELECT COUNT(*) as total_runs, "
         "SUM(CASE WHEN workflow_type=\"linear\" THEN 1 ELSE 0 END) as linear, "
         "SUM(CASE WHEN workflow_type=\"agentic\" THEN 1 ELSE 0 END) as agentic FROM runs;")

REMAINING = """SELECT
AVG(duration_ns/1e9) as avg_duration_s,
COUNT(*) as completed
FROM runs
WHERE exp_id = (SELECT MAX(exp_id) FROM experiments);"""

RESUMING = """SELECT MAX(run_number) FROM runs
WHERE exp_id = (SELECT MAX(exp_id) FROM experiments)
AND workflow_type = 'agentic';"""

QUERIES = {"summary_by_task": SUMMARY_BY_TASK, "confidence": CONFIDENCE,
           "all_metrics": ALL_METRICS, "linear_vs_agentic": LINEAR_VS_AGENTIC,
           "high_tax": HIGH_TAX, "watch": WATCH, "remaining": REMAINING, "resuming": RESUMING}


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spec")
    runner = make_runner(tmp, tasks=["gsm8k_basic", "gsm8k_multi_step", "factual_qa"],
                         repetitions=3, group_id="20250101-120000-abcd")
    # The spec's "Find High Tax Experiments" looks for tax_percent > 200: let the agentic
    # arm's model calls (plan, synthesis) take longer than the linear one, as they do on
    # a real model, so that some pairs exceed it.
    plain = runner.provider_factory

    def slow_agent(name):
        provider = plain(name)
        converse = provider.converse

        def slower(*args, **kw):
            time.sleep(0.03)
            return converse(*args, **kw)
        provider.converse = slower
        return provider
    runner.provider_factory = slow_agent
    summary = runner.run()
    db_path = tmp / "data" / "experiments.db"
    conn = sqlite3.connect(db_path)
    exp_id = conn.execute("SELECT MIN(exp_id) FROM experiments").fetchone()[0]
    run_id = conn.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
    conn.close()
    return tmp, db_path, summary.group_id, exp_id, run_id


def _real(sql: str, group_id: str, exp_id: int, run_id: int) -> str:
    return (sql.replace("'your-session-id'", f"'{group_id}'")
               .replace("run_id = 977", f"run_id = {run_id}")
               .replace("r.exp_id = 185", f"r.exp_id = {exp_id}"))


def _query(cwd: Path, sql: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alems", "query", sql, *args], cwd=cwd,
                          env=env_for(cwd), capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not SPEC.is_file(), reason="the spec is not beside this checkout")
@pytest.mark.parametrize("name", [n for n in QUERIES if n != "watch"])
def test_queries_are_verbatim_from_the_spec(name):
    spec = SPEC.read_text(encoding="utf-8")
    assert QUERIES[name] in spec


@pytest.mark.skipif(not SPEC.is_file(), reason="the spec is not beside this checkout")
def test_watch_query_is_the_spec_shell_line_unquoted():
    spec = SPEC.read_text(encoding="utf-8")
    assert WATCH.replace('"', '\\"').rstrip(";") + ";'\"" in spec


@pytest.mark.parametrize("name", list(QUERIES))
def test_spec_query_returns_rows(filled_db, name):
    cwd, db_path, group_id, exp_id, run_id = filled_db
    sql = _real(QUERIES[name], group_id, exp_id, run_id)
    # the spec's default path: run from the folder that holds data/experiments.db
    proc = _query(cwd, sql, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows, f"{name} returned no rows"
    if name == "summary_by_task":
        assert {r["task_name"] for r in rows} == {"gsm8k_basic", "gsm8k_multi_step", "factual_qa"}
        assert all(r["mean_tax_pct"] > 0 and r["std_energy_j"] is not None for r in rows)
    if name == "confidence":
        assert len(rows) == 6
        assert all(r["ci_lower"] <= r["mean_j"] <= r["ci_upper"] for r in rows)
    if name == "all_metrics":
        assert rows[0]["run_id"] == run_id and "dynamic_energy_uj" in rows[0]
    if name == "linear_vs_agentic":
        assert {r["workflow_type"] for r in rows} == {"linear", "agentic"}
    if name == "high_tax":
        assert all(r["tax_percent"] > 200 for r in rows)
        assert [r["tax_percent"] for r in rows] == sorted((r["tax_percent"] for r in rows),
                                                          reverse=True)
    if name == "watch":
        assert rows == [{"total_runs": 18, "linear": 9, "agentic": 9}]
    if name == "resuming":
        assert rows[0]["MAX(run_number)"] == 3


def test_formats_table_and_csv(filled_db):
    cwd, db_path, group_id, exp_id, run_id = filled_db
    sql = _real(LINEAR_VS_AGENTIC, group_id, exp_id, run_id)
    table = _query(cwd, sql, "--db", str(db_path))
    assert table.returncode == 0 and "avg_energy_j" in table.stdout and "(2 rows)" in table.stdout
    out = _query(cwd, sql, "--db", str(db_path), "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["workflow_type"] for r in parsed] and float(parsed[0]["avg_energy_j"]) != 0
    wide = _query(cwd, _real(ALL_METRICS, group_id, exp_id, run_id), "--db", str(db_path))
    assert wide.returncode == 0 and re.search(r"^dynamic_energy_uj\s+\|", wide.stdout, re.M)


def test_bad_sql_is_one_line_with_sqlites_message(filled_db):
    cwd, db_path, *_ = filled_db
    proc = _query(cwd, "SELEC * FROM runs")
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and 'near "SELEC"' in lines[0]
    proc = _query(cwd, "SELECT nope FROM runs")
    assert proc.returncode == 1 and "no such column: nope" in proc.stderr


def test_query_is_read_only_unless_write(filled_db):
    cwd, db_path, *_ = filled_db
    proc = _query(cwd, "DELETE FROM phases")
    assert proc.returncode == 1 and "--write" in proc.stderr
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM phases").fetchone()[0] > 0


def test_missing_db_is_one_line_and_not_created(tmp_path):
    proc = _query(tmp_path, "SELECT 1", "--db", "nowhere/experiments.db")
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "not found" in lines[0]
    assert not (tmp_path / "nowhere").exists()
