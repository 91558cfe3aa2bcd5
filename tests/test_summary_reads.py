"""`alems summary` reads only the run columns it uses (issue 23: at 10⁵ runs every
run column cost seconds and most of the memory). Guard: the summary built from that narrow
read equals the one built from the whole runs table, on a group that exercises
every optional column (hosts and CPU models, not-quiet runs, a counter-wrap gap, GPU
energy, the baseline's standard error)."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("pandas")

from alems.analysis import summary as summary_mod  # noqa: E402
from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.store import reads, summary_reads  # noqa: E402
from analysis_fixture import build_fixture_db  # noqa: E402


def _rich_db(tmp_path):
    db = build_fixture_db(tmp_path / "e.db", reps=6, workflows=("linear", "agentic", "react"))
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id")]
    for i, rid in enumerate(ids):
        conn.execute("UPDATE runs SET host = ?, cpu_model = ?, dynamic_energy_se_uj = ?, "
                     "gpu_dynamic_energy_uj = ?, quiet = ?, not_quiet_reason = ? "
                     "WHERE run_id = ?",
                     ("h1" if i % 4 < 2 else "h2", "CPU A" if i % 4 < 2 else "CPU B",
                      1000.0 + i, 5e5 + 1e3 * i, 0 if i % 7 == 3 else 1,
                      "load 3.1" if i % 7 == 3 else None, rid))
    conn.execute("UPDATE runs SET null_reasons = '{\"pkg\": \"gap: counter wrap\"}' "
                 "WHERE run_id = ?", (ids[-1],))
    conn.commit()
    conn.close()
    return db


def _full_runs(conn, group_id):
    return reads.runs_frame(conn, group_id)


def _full_share_phases(conn, group_id, but, kinds):
    ph = reads.phases_frame(conn, group_id)
    return ph[(ph["workflow_type"] != but) & (ph["run_status"] == "ok") & ph["kind"].isin(kinds)]


def test_the_narrow_reads_give_the_summary_of_the_whole_tables(tmp_path, monkeypatch):
    db = _rich_db(tmp_path)
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    narrow = summary_mod.build_summary(conn, db, group)
    assert len(narrow["hosts"]["machines"]) == 2 and narrow["tax_all_devices"]
    warnings = " ".join(narrow["warnings"])
    assert "not measured on a quiet machine" in warnings and "counter wrap" in warnings
    assert "hosts differ in CPU model" in warnings and narrow["phases"]
    monkeypatch.setattr(summary_mod, "summary_runs_frame", _full_runs)
    monkeypatch.setattr(summary_mod, "share_phases_frame", _full_share_phases)
    whole = summary_mod.build_summary(conn, db, group)
    assert narrow == whole
    conn.close()


def test_the_narrow_read_keeps_the_columns_an_older_database_has(tmp_path):
    db = build_fixture_db(tmp_path / "e.db")
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs DROP COLUMN host")
    frame = summary_reads.summary_runs_frame(conn, "g-20260110-100000")
    assert "host" not in frame and "quiet" in frame and len(frame)
    conn.close()
