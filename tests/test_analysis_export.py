"""`alems export` output read back by pandas, polars and DuckDB."""

import csv
import json

import duckdb
import pandas as pd
import polars as pl
import pytest

from alems.analysis.export import runs_export_frame, write_runs, write_samples_dataset
from alems.analysis.groups import open_db, resolve_group
from alems.errors import AlemsError
from analysis_fixture import build_fixture_db

N_RUNS = 16   # 2 tasks x 4 reps x 2 workflows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    db = build_fixture_db(tmp_path_factory.mktemp("exp") / "experiments.db")
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    return db, conn, group, runs_export_frame(conn, group)


def _check_frame(df, n=N_RUNS):
    assert len(df) == n
    for col in ("run_id", "group_id", "task_name", "provider", "workflow_type",
                "dynamic_energy_uj", "tax_ratio", "tax_percent", "carbon_g", "started_at"):
        assert col in df.columns, col


def test_joined_rows(setup):
    _, _, _, df = setup
    _check_frame(df)
    # every run of a complete pair carries that pair's tax; the errored run and its partner don't
    assert df["tax_ratio"].notna().sum() == 2 * 7
    paired = df[df["tax_ratio"].notna()]
    assert (paired["tax_ratio"] > 1).all()


def test_csv_round_trip(setup, tmp_path):
    _, _, group, df = setup
    out = write_runs(df, "csv", tmp_path / "r.csv", group)
    raw = out.read_bytes()
    assert b"\r\n" in raw                                   # RFC 4180 line ends
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["group_id", "task_name"] and len(rows) == N_RUNS + 1
    _check_frame(pd.read_csv(out))
    back = pl.read_csv(out, infer_schema_length=None)
    _check_frame(back.to_pandas())
    # ISO-8601 dates a spreadsheet parses
    assert pd.to_datetime(pd.read_csv(out)["started_at"], utc=True).notna().all()


def test_parquet_round_trip(setup, tmp_path):
    _, _, group, df = setup
    out = write_runs(df, "parquet", tmp_path / "r.parquet", group)
    _check_frame(pd.read_parquet(out))
    _check_frame(pl.read_parquet(out).to_pandas())
    n = duckdb.connect().execute(f"SELECT COUNT(*), AVG(dynamic_energy_uj) FROM read_parquet('{out}')").fetchone()
    assert n[0] == N_RUNS and n[1] == pytest.approx(df["dynamic_energy_uj"].mean())


def test_json_round_trip(setup, tmp_path):
    _, _, group, df = setup
    out = write_runs(df, "json", tmp_path / "r.json", group)
    records = json.loads(out.read_text())
    assert isinstance(records, list) and len(records) == N_RUNS
    assert all(r["methane_mg"] is None for r in records)        # no factor: null, not 0/NaN
    _check_frame(pd.read_json(out))
    _check_frame(pl.read_json(out, infer_schema_length=None).to_pandas())


def test_samples_dataset(setup, tmp_path):
    db, conn, group, _ = setup
    out = tmp_path / "samples"
    info = write_samples_dataset(conn, db, group, out)
    assert info["runs"] == N_RUNS and not info["missing_runs"]
    files = sorted(out.rglob("*.parquet"))
    assert len(files) == N_RUNS
    assert files[0].relative_to(out).parts[0] == f"group_id={group.group_id}"
    pdf = pd.read_parquet(out)
    assert len(pdf) == info["rows"] and {"run_id", "exp_id", "t_ns", "pkg_energy_uj"} <= set(pdf.columns)
    pldf = pl.read_parquet(str(out / "**" / "*.parquet"), hive_partitioning=True)
    assert pldf.height == info["rows"] and "run_id" in pldf.columns
    n_runs = duckdb.connect().execute(f"SELECT COUNT(DISTINCT run_id) FROM read_parquet('{out}/**/*.parquet', "
                        "hive_partitioning=true)").fetchone()[0]
    assert n_runs == N_RUNS
    with pytest.raises(AlemsError, match="not an empty folder"):
        write_samples_dataset(conn, db, group, out)


def test_export_bad_format(setup, tmp_path):
    _, _, group, df = setup
    with pytest.raises(AlemsError, match="unknown export format"):
        write_runs(df, "ods", tmp_path / "r.ods", group)
