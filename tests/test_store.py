"""The SQLite index and the per-run Parquet files: functions, schema, atomicity, orphans."""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess

import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from alems.errors import AlemsError
from alems.store import db as store_db
from alems.store import runs as store_runs
from alems.store import samples as store_samples
from alems.store import sessions as store_sessions

from _fake_sampling import synthetic_table

VALUES = [1.0, 2.0, 4.0, 8.5, -3.0]


def test_connect_sets_wal_foreign_keys_and_version(tmp_path):
    conn = store_db.connect(tmp_path / "sub" / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store_db.schema_version(conn) == store_db.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "runs", "orchestration_tax_summary", "baselines", "phases",
            "batch_sessions"} <= tables
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        conn.execute("INSERT INTO runs (exp_id, workflow_type, run_number, status, started_at) "
                     "VALUES (999, 'linear', 1, 'ok', 'x')")


@pytest.mark.parametrize("sql,expected", [
    ("STDDEV(x)", statistics.stdev(VALUES)),
    ("STDEV(x)", statistics.stdev(VALUES)),
    ("VARIANCE(x)", statistics.variance(VALUES)),
    ("STDDEV_POP(x)", statistics.pstdev(VALUES)),
    ("VAR_POP(x)", statistics.pvariance(VALUES)),
    ("MEDIAN(x)", statistics.median(VALUES)),
])
def test_aggregates_match_statistics_module(tmp_path, sql, expected):
    conn = store_db.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE v (x REAL)")
    conn.executemany("INSERT INTO v VALUES (?)", [(x,) for x in VALUES] + [(None,)])
    assert conn.execute(f"SELECT {sql} FROM v").fetchone()[0] == pytest.approx(expected)


def test_aggregates_undefined_give_null(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE v (x REAL)")
    conn.execute("INSERT INTO v VALUES (5)")
    assert conn.execute("SELECT STDDEV(x), VARIANCE(x), STDDEV_POP(x) FROM v").fetchone() == (None, None, 0.0)
    assert conn.execute("SELECT STDDEV(x), MEDIAN(x) FROM v WHERE x > 100").fetchone() == (None, None)


def test_scalar_functions(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    row = conn.execute("SELECT SQRT(16), POWER(2, 10), LN(EXP(2)), EXP(0), SQRT(-1), LN(0), "
                       "SQRT(NULL)").fetchone()
    assert row[:4] == (4.0, 1024.0, pytest.approx(2.0), 1.0)
    assert row[4:] == (None, None, None)


def test_connect_without_create_refuses_missing_file(tmp_path):
    target = tmp_path / "none.db"
    with pytest.raises(AlemsError, match="not found"):
        store_db.connect(target, create=False)
    assert not target.exists()


def test_migration_adds_missing_columns_and_keeps_data(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    # an older index: runs without the newer columns, version 1
    conn.executescript("""
        CREATE TABLE schema_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO schema_info VALUES ('version', '1');
        CREATE TABLE batch_sessions (group_id TEXT PRIMARY KEY, created_at TEXT NOT NULL,
            settings_json TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'running');
        INSERT INTO batch_sessions (group_id, created_at, settings_json) VALUES ('g', 't', '{}');
    """)
    conn.commit()
    conn.close()
    conn = store_db.connect(path)
    cols = {r[1] for r in conn.execute("PRAGMA table_info(batch_sessions)")}
    assert {"order_json", "host_json", "seed"} <= cols
    assert conn.execute("SELECT group_id FROM batch_sessions").fetchall() == [("g",)]
    assert store_db.schema_version(conn) == store_db.SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    conn.execute("UPDATE schema_info SET value = '999' WHERE key = 'version'")
    conn.commit()
    conn.close()
    with pytest.raises(AlemsError, match="newer"):
        store_db.connect(tmp_path / "x.db")


def test_samples_path_layout_and_bad_group(tmp_path):
    p = store_samples.samples_path(tmp_path / "data" / "experiments.db", "20250101-000000-ab12", 3, 17)
    assert p == (tmp_path / "data" / "samples" / "group_id=20250101-000000-ab12" / "exp_id=3"
                 / "run_id=17.parquet")
    with pytest.raises(AlemsError):
        store_samples.samples_path(tmp_path / "x.db", "../evil", 1, 1)


def test_parquet_roundtrip_with_phases_readable_by_pandas_and_polars(tmp_path):
    table = synthetic_table(n=501, hz=1000.0)
    phases = [{"seq": 1, "name": "llm", "kind": "llm", "parent_seq": None, "start_ns": 1,
               "end_ns": 2, "duration_ns": 1, "energy_uj": 3.5, "detail": {"tokens": 4}}]
    db_path = tmp_path / "experiments.db"
    path = store_samples.samples_path(db_path, "g1", 1, 5)
    store_samples.write_samples(path, table, metadata={"energy_source": "powercap"},
                                phases=phases, run={"run_id": 5})
    assert not list(path.parent.glob("*.tmp"))
    assert store_samples.read_phases(path) == phases
    assert store_samples.read_run_identity(path) == {"run_id": 5}
    assert pq.read_schema(path).metadata[b"energy_source"] == b"powercap"
    df = pd.read_parquet(path)
    assert len(df) == 501 and list(df.columns) == table.column_names
    pdf = pl.read_parquet(path)
    assert pdf.height == 501
    # the hive layout is seen as columns when reading the whole samples tree
    tree = pl.scan_parquet(str(store_samples.samples_root(db_path) / "**" / "*.parquet"),
                           hive_partitioning=True).collect()
    assert set(tree["exp_id"].to_list()) == {1}
    assert set(tree["group_id"].to_list()) == {"g1"}


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    path = store_samples.samples_path(tmp_path / "x.db", "g", 1, 1)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(store_samples.pq, "write_table", boom)
    with pytest.raises(OSError):
        store_samples.write_samples(path, synthetic_table(n=10))
    assert not path.exists()
    assert not list(path.parent.iterdir())


def test_remove_orphans_only_touches_unknown_runs(tmp_path):
    db_path = tmp_path / "x.db"
    keep = store_samples.samples_path(db_path, "g", 1, 1)
    orphan = store_samples.samples_path(db_path, "g", 1, 2)
    other_group = store_samples.samples_path(db_path, "h", 1, 9)
    for p in (keep, orphan, other_group):
        store_samples.write_samples(p, synthetic_table(n=5))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_tmp = keep.with_name(f".run_id=3.parquet.{dead.pid}.tmp")
    stale_tmp.write_bytes(b"half")
    live_tmp = keep.with_name(f".run_id=4.parquet.{os.getpid()}.tmp")  # this test is alive
    live_tmp.write_bytes(b"busy")
    removed = store_samples.remove_orphans(db_path, "g", [1])
    assert set(removed) == {orphan, stale_tmp}
    assert keep.exists() and other_group.exists() and not orphan.exists()
    assert live_tmp.exists()


def _session_and_exp(conn):
    store_sessions.insert_session(conn, group_id="g", settings={}, command="t", host={},
                                  order=[], seed=1)
    return store_sessions.get_or_create_experiment(
        conn, group_id="g", task_name="t", provider="scripted", model=None,
        workflows="linear,agentic", repetitions=2, seed=1, temperature=0.0, max_tokens=8,
        country="US")


def test_next_run_id_never_reuses_a_deleted_id(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    with store_db.transaction(conn):
        exp = _session_and_exp(conn)
        for n in (1, 2):
            store_runs.insert_run(conn, {"run_id": store_runs.next_run_id(conn), "exp_id": exp,
                                         "workflow_type": "linear", "run_number": n,
                                         "status": "ok", "started_at": "t"})
    assert store_runs.next_run_id(conn) == 3
    with store_db.transaction(conn):
        conn.execute("DELETE FROM runs WHERE run_id = 2")
    assert store_runs.next_run_id(conn) == 3
    # same experiment twice -> same exp_id
    with store_db.transaction(conn):
        assert _exp_again(conn) == exp


def _exp_again(conn):
    return store_sessions.get_or_create_experiment(
        conn, group_id="g", task_name="t", provider="scripted", model=None,
        workflows="linear,agentic", repetitions=3, seed=1, temperature=0.0, max_tokens=8,
        country="US")


@pytest.mark.parametrize("lin,ag,ratio,pct", [
    (100.0, 220.0, 2.2, 120.0),
    (100.0, 50.0, 0.5, -50.0),
    (0.0, 50.0, None, None),
    (-5.0, 50.0, None, None),
    (None, 50.0, None, None),
])
def test_tax_values(lin, ag, ratio, pct):
    r, p = store_runs.tax_values(lin, ag)
    assert (r, p) == ((None, None) if ratio is None else (pytest.approx(ratio), pytest.approx(pct)))


def test_tax_row_only_when_both_arms_ok(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    with store_db.transaction(conn):
        exp = _session_and_exp(conn)
        base = {"exp_id": exp, "status": "ok", "started_at": "t", "energy_source": "powercap"}
        store_runs.insert_run(conn, {**base, "workflow_type": "linear", "run_number": 1,
                                     "dynamic_energy_uj": 100.0})
        assert store_runs.insert_tax_if_paired(conn, exp, 1) is None
        store_runs.insert_run(conn, {**base, "workflow_type": "agentic", "run_number": 1,
                                     "dynamic_energy_uj": 250.0})
        assert store_runs.insert_tax_if_paired(conn, exp, 1) is not None
        assert store_runs.insert_tax_if_paired(conn, exp, 1) is None  # once only
        store_runs.insert_run(conn, {**base, "workflow_type": "linear", "run_number": 2,
                                     "dynamic_energy_uj": 100.0})
        store_runs.insert_run(conn, {**base, "workflow_type": "agentic", "run_number": 2,
                                     "status": "error", "dynamic_energy_uj": 5.0})
        assert store_runs.insert_tax_if_paired(conn, exp, 2) is None
    rows = conn.execute("SELECT run_number, tax_ratio, tax_percent FROM "
                        "orchestration_tax_summary").fetchall()
    assert rows == [(1, pytest.approx(2.5), pytest.approx(150.0))]
    with pytest.raises(sqlite3.IntegrityError):  # UNIQUE(exp_id, workflow_type, run_number)
        with store_db.transaction(conn):
            store_runs.insert_run(conn, {**base, "workflow_type": "linear", "run_number": 1})


def test_transaction_rolls_back_everything(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    with pytest.raises(RuntimeError):
        with store_db.transaction(conn):
            _session_and_exp(conn)
            raise RuntimeError("crash")
    assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM batch_sessions").fetchone()[0] == 0
