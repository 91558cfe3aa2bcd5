"""Every SQL query of the user's spec runs verbatim through `alems query` and returns rows.

The queries are kept in tests/data/spec_queries.sql, copied from the user's guide
(../shared/spec/seed-batch-experiments-and-metrics.md: "Statistical Analysis", "Sample
Queries", "Batch Monitoring", "Resuming"), so they are tested in any clone; a separate check
(skipped only where the guide is absent) keeps that file verbatim. The only edits at run
time are the placeholders: 'your-session-id' -> the real group id, run 977 / exp 185 -> real ids.
The database is filled by the real batch runner (scripted model, synthetic power).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inproc import alems_inproc
from test_batch import REPO, env_for, make_runner

# The guide beside the checkout (as CI lays it out); ALEMS_TEST_GUIDE names another copy.
SPEC = Path(os.environ.get("ALEMS_TEST_GUIDE") or
            REPO.parent / "shared" / "spec" / "seed-batch-experiments-and-metrics.md")

QUERIES_FILE = Path(__file__).resolve().parent / "data" / "spec_queries.sql"


def load_queries(path: Path = QUERIES_FILE) -> dict[str, str]:
    """{name: sql} from the `-- query: NAME` blocks of tests/data/spec_queries.sql."""
    queries: dict[str, str] = {}
    name = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-- query: "):
            name = line[len("-- query: "):].strip()
            queries[name] = ""
        elif name is not None:
            queries[name] += line + "\n"
    return {k: v.strip("\n") for k, v in queries.items()}


QUERIES = load_queries()
LINEAR_VS_AGENTIC, ALL_METRICS = QUERIES["linear_vs_agentic"], QUERIES["all_metrics"]
needs_guide = pytest.mark.skipif(not SPEC.is_file(),
                                 reason=f"the user's guide is not beside this checkout ({SPEC})")


def test_the_queries_file_has_every_query():
    assert list(QUERIES) == ["summary_by_task", "confidence", "all_metrics", "linear_vs_agentic",
                             "high_tax", "watch", "remaining", "resuming"]
    assert all(sql.startswith(("SELECT", "WITH")) and sql.endswith(";")
               for sql in QUERIES.values())


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
    return alems_inproc("query", sql, *args, cwd=cwd, env=env_for(cwd))


def _query_subprocess(cwd: Path, sql: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alems", "query", sql, *args], cwd=cwd,
                          env=env_for(cwd), capture_output=True, text=True, timeout=60)


@needs_guide
@pytest.mark.parametrize("name", [n for n in QUERIES if n != "watch"])
def test_queries_are_verbatim_from_the_spec(name):
    spec = SPEC.read_text(encoding="utf-8")
    assert QUERIES[name] in spec


@needs_guide
def test_watch_query_is_the_spec_shell_line_unquoted():
    spec = SPEC.read_text(encoding="utf-8")
    assert QUERIES["watch"].replace('"', '\\"').rstrip(";") + ";'\"" in spec


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
    proc = _query_subprocess(cwd, "SELEC * FROM runs")  # the real command: no traceback
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
