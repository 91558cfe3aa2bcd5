"""The analysis commands as a user runs them: output, exit codes, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from analysis_fixture import build_fixture_db, create_empty_db
from inproc import alems_inproc

SRC = str(Path(__file__).resolve().parents[1] / "src")


def alems(*args, env_extra=None, timeout=120, real=False):
    """`alems ARGS` in-process (run_app, as `alems` runs it); real=True: in a new process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ALEMS_DB", None)
    env.pop("ALEMS_FACTORS", None)
    env.update(env_extra or {})
    if not real:
        return alems_inproc(*args, env=env)
    return subprocess.run([sys.executable, "-c", "from alems.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("cli") / "experiments.db")


def test_summary_json_and_csv(db):
    r = alems("summary", "--db", str(db), "--format", "json", real=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert {t["task"] for t in s["tax"]} == {"gsm8k_basic", "factual_qa", "all"}   # + pooled rows
    assert all(t["tax_ratio"] > 1 for t in s["tax"])
    r = alems("summary", "--db", str(db), "--format", "csv", "--group-id", s["group_id"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("task,provider,workflow,n_runs") and len(lines) == 5
    assert "warning:" in r.stderr


def test_summary_table_via_env_db(db):
    r = alems("summary", env_extra={"ALEMS_DB": str(db)})
    assert r.returncode == 0, r.stderr
    assert "Orchestration tax" in r.stdout and "warning:" in r.stdout


def test_plan_reps():
    r = alems("plan-reps", "--effect-size", "0.1", "--power", "0.8", "--alpha", "0.05")
    assert r.returncode == 0 and "785" in r.stdout
    r = alems("plan-reps", "--effect-size", "0")
    assert r.returncode == 2 and r.stderr.startswith("alems: error: --effect-size")


def test_plan_reps_from_group(db):
    r = alems("plan-reps", "--from-group", "latest", "--db", str(db), "--format", "json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["mode"] == "pilot" and plan["repetitions"] >= 2


def test_export_all_formats(db, tmp_path):
    for fmt, reader in (("csv", pl.read_csv), ("parquet", pl.read_parquet), ("json", pl.read_json)):
        out = tmp_path / f"runs.{fmt}"
        r = alems("export", "--db", str(db), "--group-id", "latest", "--format", fmt,
                  "--output", str(out))
        assert r.returncode == 0, r.stderr
        assert reader(out).height == 16
        assert len(getattr(pd, f"read_{fmt}")(out)) == 16
    r = alems("export", "--db", str(db), "--format", "parquet", "--samples",
              "--output", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "ds").rglob("*.parquet"))) == 16


def test_report_cli(db, tmp_path):
    r = alems("report", "--db", str(db), "--output", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "4 figures" in r.stdout
    assert (tmp_path / "r.html").read_text().count("data:image/png") == 4


def test_status_finished(db):
    r = alems("status", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "16/16 runs done" in r.stdout and "1 failed" in r.stdout and "finished" in r.stdout
    r = alems("status", "--db", str(db), "--watch", "--interval", "0.1")   # done: returns
    assert r.returncode == 0 and "finished" in r.stdout


def test_status_running_batch_has_eta(tmp_path):
    db = build_fixture_db(tmp_path / "run.db", reps=2, planned_reps=6, status="running",
                          with_error=False)
    r = alems("status", "--db", str(db), "--format", "json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["planned"] == 24 and st["done"] == 8 and not st["finished"]
    wf = {w["workflow"]: w for w in st["workflows"]}
    assert wf["agentic"]["remaining"] == 8 and wf["linear"]["remaining"] == 8
    # ETA at least the remaining runs' own durations
    floor = 8 * wf["agentic"]["mean_run_s"] + 8 * wf["linear"]["mean_run_s"]
    assert st["eta_s"] >= floor
    r = alems("status", "--db", str(db))
    assert "8/24 runs done" in r.stdout and "ETA" in r.stdout


def _one_line_error(r, fragment):
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alems: error:"), r.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("cmd", [["summary"], ["report", "--output", "x.pdf"],
                                 ["export", "--output", "x.csv"], ["status"],
                                 ["plan-reps", "--from-group", "latest"]])
def test_missing_db(tmp_path, cmd):
    _one_line_error(alems(*cmd, "--db", str(tmp_path / "nope.db")), "database not found")


def test_unknown_group(db):
    _one_line_error(alems("summary", "--db", str(db), "--group-id", "no-such"),
                    "unknown group id 'no-such'")


def test_empty_databases(tmp_path):
    empty = create_empty_db(tmp_path / "empty.db")
    _one_line_error(alems("summary", "--db", str(empty)), "no batch sessions")
    _one_line_error(alems("status", "--db", str(empty)), "no batch sessions")
    blank = tmp_path / "blank.db"
    blank.write_bytes(b"")
    _one_line_error(alems("summary", "--db", str(blank)), "empty")


def test_only_linear_group(tmp_path):
    db = build_fixture_db(tmp_path / "lin.db", workflows=("linear",))
    _one_line_error(alems("summary", "--db", str(db)), "only linear runs")
    _one_line_error(alems("report", "--db", str(db), "--output", str(tmp_path / "r.pdf")),
                    "only linear runs")
