"""`alems export` to CSV and Parquet streams the runs in batches (issue 23: memory
independent of the study's size) and writes the very file the whole frame gives, also
when a column is NULL in some batches only, or everywhere."""

from __future__ import annotations

import shutil
import sqlite3

import pyarrow.parquet as pq
import pytest

from alems.analysis.export import runs_export_frame, write_runs, write_runs_streamed
from alems.analysis.groups import open_db, resolve_group
from alems.store import reads
from analysis_fixture import build_fixture_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "experiments.db"
    build_fixture_db(path)
    with sqlite3.connect(path) as w:   # columns whose type a single batch cannot tell
        first = w.execute("SELECT MIN(run_id) FROM runs").fetchone()[0]
        w.execute("UPDATE runs SET instructions = NULL WHERE run_id < ?", (first + 3,))
        w.execute("UPDATE runs SET error = 'late text' WHERE run_id > ?", (first + 10,))
        w.execute("UPDATE runs SET carbon_g = NULL WHERE run_id % 3 = 0")
        w.execute("UPDATE runs SET psys_energy_uj = NULL, node_id = NULL")
    return path


@pytest.mark.parametrize("country", [None, "FR"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_streamed_export_is_the_whole_frames_file(db, tmp_path, monkeypatch, fmt, country):
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    whole = write_runs(runs_export_frame(conn, group, country=country), fmt,
                       tmp_path / f"whole.{fmt}", group)
    monkeypatch.setattr(reads, "EXPORT_BATCH_ROWS", 3)   # 16 runs: 6 batches
    batches = list(reads.export_runs_batches(conn, group.group_id)[1])
    assert len(batches) == 6
    streamed, n = write_runs_streamed(conn, group, fmt, tmp_path / f"streamed.{fmt}",
                                      country=country)
    assert n == 16
    if fmt == "csv":
        assert streamed.read_bytes() == whole.read_bytes()
    else:
        a, b = pq.read_table(whole), pq.read_table(streamed)
        assert a.schema.equals(b.schema, check_metadata=False)
        assert a.equals(b)
        assert a.schema.metadata[b"alems.group_id"] == b.schema.metadata[b"alems.group_id"]
    conn.close()


def test_streamed_export_of_a_group_without_runs_says_so(db, tmp_path):
    empty = tmp_path / "empty.db"
    shutil.copy(db, empty)
    with sqlite3.connect(empty) as w:
        w.execute("DELETE FROM orchestration_tax_summary")
        w.execute("DELETE FROM phases")
        w.execute("DELETE FROM runs")
    conn = open_db(empty)
    group = resolve_group(conn, "latest")
    with pytest.raises(Exception, match="has no runs to export yet"):
        write_runs_streamed(conn, group, "csv", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    conn.close()
