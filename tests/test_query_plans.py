"""The queries a group's summary, dashboard page, export and every commit make use indexes:
no full scan of runs, phases or tax rows per group or per pair (issue 23: a scan per run
made `alems export` and each commit's tax row cost grow with the square of the study)."""

from __future__ import annotations

import re
import sqlite3

import pytest

from alems.store import dashboard_reads, db as store_db, reads, runs, summary_reads

# SQLite's plan line for a full table scan, of the big tables under their names or aliases
FULL_SCAN = re.compile(r"^SCAN (runs|r|phases|p|orchestration_tax_summary|ots)\b")

GROUP_QUERIES = {
    "summary runs": reads._RUNS_SQL.format(run_columns="r.*"),
    "summary phases": reads._PHASES_SQL,
    "summary's run columns": summary_reads._SUMMARY_RUNS_SQL.format(run_columns="r.run_id"),
    "summary's share phases": summary_reads._SHARE_PHASES_SQL.format(kinds="'llm'"),
    "export": reads._EXPORT_SQL,
    "progress": reads._PROGRESS_SQL,
    "dashboard run list": dashboard_reads.RUN_LIST_SQL,
    "dashboard energy figure": dashboard_reads.RUN_ENERGY_SQL,
}


def _plan(conn: sqlite3.Connection, sql: str, params: tuple) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.fixture
def conn(tmp_path):
    c = store_db.connect(tmp_path / "plans.db")
    yield c
    c.close()


@pytest.mark.parametrize("name", sorted(GROUP_QUERIES))
def test_group_queries_use_indexes(conn, name):
    sql = GROUP_QUERIES[name]
    plan = _plan(conn, sql, ("g",) + (1,) * (sql.count("?") - 1))   # the group, then numbers
    scans = [line for line in plan if FULL_SCAN.match(line)]
    assert not scans, f"{name}: full scan {scans} in plan {plan}"


def test_pair_lookup_at_every_commit_uses_the_pair_index(conn):
    plan = _plan(conn, runs.PAIR_ARMS_SQL, (1, 1))
    assert any("idx_runs_exp_rep (exp_id=? AND run_number=?)" in line for line in plan), plan


def test_an_older_database_gets_the_indexes_when_opened_for_writing(tmp_path):
    path = tmp_path / "old.db"
    c = store_db.connect(path)
    for name in ("idx_runs_exp_rep", "idx_tax_linear_run", "idx_tax_agentic_run"):
        c.execute(f"DROP INDEX {name}")
    c.execute("UPDATE schema_info SET value = '4' WHERE key = 'version'")
    c.commit()
    c.close()
    c = store_db.connect(path)
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_runs_exp_rep", "idx_tax_linear_run", "idx_tax_agentic_run"} <= names
    assert store_db.schema_version(c) == store_db.SCHEMA_VERSION
    scans = [line for line in _plan(c, reads._EXPORT_SQL, ("g",)) if FULL_SCAN.match(line)]
    assert not scans
    c.close()


def test_a_mistyped_value_is_found_by_the_one_scan_then_named(conn):
    """store.db.mistyped_value scans each table once for every column (issue 23) and
    still names the column and row of a value of the wrong storage class."""
    tables = ("batch_sessions", "experiments", "runs", "phases")
    conn.execute("INSERT INTO batch_sessions (group_id, created_at, settings_json) "
                 "VALUES ('g', '2026-01-01', '{}')")
    conn.execute("INSERT INTO experiments (group_id, task_name, provider, workflows, "
                 "repetitions, created_at) VALUES ('g', 't', 'p', 'linear', 1, 'now')")
    for n in (1, 2):
        conn.execute("INSERT INTO runs (exp_id, workflow_type, run_number, status, started_at,"
                     " duration_ns) VALUES (1, 'linear', ?, 'ok', 'now', 5)", (n,))
    conn.commit()
    assert store_db.mistyped_value(conn, tables) is None
    conn.execute("UPDATE runs SET duration_ns = 'slow' WHERE run_number = 2")
    conn.commit()
    found = store_db.mistyped_value(conn, tables)
    assert found is not None and found.startswith("runs.duration_ns of row 2 holds a text")
