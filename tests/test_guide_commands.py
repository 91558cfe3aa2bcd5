"""Issue 22, the user guide's remaining commands, run as the guide writes them (with the
scripted provider where the guide says `local`: no model file in the test run):
`python -m core.execution.tests.run_experiment …` from a checkout without a top-level `core`
installed, the two scripts/tools wrappers, `alems report --exp-id`, `energy_samples` in
`alems query`, `alems export --output results.xlsx`, `alems status` under --start-from and
`plan-reps --group-id`'s labels."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pandas")

from inproc import alems_inproc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = ["--hz", "200", "--baseline-duration", "0.05", "--baseline-reps", "1"]


def _env(**extra) -> dict[str, str]:
    """The environment without PYTHONPATH: what a user's shell in a checkout has."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def _py(*args, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def guide_batch(tmp_path_factory):
    """The guide's resume command (`--repetitions R --start-from K`), through the guide's
    module path, from the checkout."""
    root = tmp_path_factory.mktemp("guide")
    db = root / "data" / "experiments.db"
    proc = _py("-m", "core.execution.tests.run_experiment", "--tasks",
               "gsm8k_basic,factual_qa", "--repetitions", "4", "--providers", "scripted",
               "--save-db", "--db", str(db), "--cool-down", "0", "--verbose", "--start-from",
               "3", *FAST, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return root, db, proc


def test_guide_module_path_runs_from_a_checkout_only(guide_batch, tmp_path):
    _, db, proc = guide_batch
    assert "8 run(s) to do" in proc.stderr            # 2 tasks × reps 3–4 × 2 workflows
    assert db.is_file()
    # the checkout's sources ran, not an installed copy
    probe = _py("-c", "import core.execution.tests.run_experiment, alems; print(alems.__file__)",
                cwd=REPO)
    assert probe.stdout.strip() == str(REPO / "src" / "alems" / "__init__.py"), probe.stderr
    # elsewhere there is no top-level `core`: it is not installed, and setup.py never ships it
    elsewhere = _py("-c", "import core", cwd=tmp_path)
    assert elsewhere.returncode != 0 and "No module named 'core'" in elsewhere.stderr
    setup = ast.parse((REPO / "setup.py").read_text())
    packages = next(kw.value for node in ast.walk(setup) if isinstance(node, ast.Call)
                    for kw in node.keywords if kw.arg == "packages")
    names = [elt.value for elt in packages.elts]  # type: ignore[attr-defined]
    assert names and all(n == "alems" or n.startswith("alems.") for n in names)


def test_status_counts_the_runs_the_batch_planned(guide_batch):
    _, db, _ = guide_batch
    proc = alems_inproc("status", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert "8/8 runs done (repetitions 3–4: --start-from 3)" in first, first
    assert "    4/4 " in proc.stdout


def test_guide_scripts_archive_and_report(guide_batch):
    root, db, _ = guide_batch
    env = {"ALEMS_DB": str(db)}
    proc = _py(str(REPO / "scripts/tools/experiment_archiver.py"), "--group-id", "latest",
               "--format", "csv", "--output", str(root / "results.csv"), cwd=root, **env)
    assert proc.returncode == 0, proc.stderr
    lines = (root / "results.csv").read_text().splitlines()
    assert lines[0].startswith("group_id,") and len(lines) == 1 + 8
    proc = _py(str(REPO / "scripts/tools/report_generator.py"), "--exp-id", "latest",
               "--output", str(root / "report.html"), cwd=root, **env)
    assert proc.returncode == 0, proc.stderr
    assert "orchestration tax" in (root / "report.html").read_text()
    proc = _py(str(REPO / "scripts/tools/report_generator.py"), "--exp-id", "999",
               "--output", str(root / "r.html"), cwd=root, **env)
    assert proc.returncode == 1 and proc.stderr.startswith("alems: error: no group or "
                                                           "experiment '999'")


def test_report_exp_id_is_the_group_id(guide_batch, tmp_path):
    _, db, _ = guide_batch
    out = []
    for flag, value in (("--group-id", "latest"), ("--exp-id", "latest"), ("--exp-id", "1")):
        proc = alems_inproc("report", "--db", str(db), flag, value, "--output",
                            str(tmp_path / f"{flag}{value}.html"))
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout.split(" to ")[0])
    assert len(set(out)) == 1


def test_query_energy_samples_joins_runs_without_copying(guide_batch):
    duckdb = pytest.importorskip("duckdb")
    assert duckdb
    _, db, _ = guide_batch
    size = db.stat().st_size
    proc = alems_inproc("query", "--db", str(db), "--format", "csv",
                        "SELECT s.run_id, r.workflow_type, COUNT(*) AS n, "
                        "MAX(s.pkg_energy_uj) AS e_uj, "
                        "SUM(s.pkg_power_w * s.dt_ns) / SUM(s.dt_ns) AS w, "
                        "(MAX(s.pkg_energy_uj) - MIN(s.pkg_energy_uj)) * 1e3 "
                        "/ (MAX(s.t_ns) - MIN(s.t_ns)) AS mean_w "
                        "FROM (SELECT *, t_ns - lag(t_ns) OVER (PARTITION BY run_id "
                        "ORDER BY t_ns) AS dt_ns FROM energy_samples) s "
                        "JOIN runs r USING (run_id) GROUP BY ALL ORDER BY s.run_id")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in proc.stdout.splitlines()]
    assert rows[0] == ["run_id", "workflow_type", "n", "e_uj", "w", "mean_w"]
    assert len(rows) == 1 + 8
    check = alems_inproc("query", "--db", str(db), "--format", "csv",
                         "SELECT run_id, sample_count, pkg_energy_uj FROM runs ORDER BY run_id")
    stored = [line.split(",") for line in check.stdout.splitlines()[1:]]
    for got, want in zip(rows[1:], stored, strict=True):
        assert got[0] == want[0] and int(got[2]) == int(want[1])       # every sample
        assert float(got[3]) == pytest.approx(float(want[2]), rel=1e-9)  # last cumulative
        # power in W, each sample's d(energy)/dt: weighted by its interval, their mean is the
        # run's mean exactly, however unevenly a loaded machine spaced the samples
        assert float(got[4]) == pytest.approx(float(got[5]), rel=1e-9) and float(got[4]) > 0
    assert db.stat().st_size == size
    with __import__("sqlite3").connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "energy_samples" not in names


@pytest.mark.parametrize("sql,needle", [
    ("SELECT * FROM read_csv('/etc/passwd'), energy_samples", "disabled by configuration"),
    ("COPY (SELECT * FROM energy_samples) TO 'out.csv'", "disabled by configuration"),
    ("SET enable_external_access = true; SELECT * FROM energy_samples", "locked"),
])
def test_query_energy_samples_stays_read_only(guide_batch, sql, needle, tmp_path):
    pytest.importorskip("duckdb")
    _, db, _ = guide_batch
    proc = alems_inproc("query", "--db", str(db), sql, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("alems: error: SQL error") and needle in proc.stderr
    assert not (tmp_path / "out.csv").exists()
    proc = alems_inproc("query", "--db", str(db), "--write", "DELETE FROM energy_samples")
    assert proc.returncode == 2 and "--write" in proc.stderr


def test_export_xlsx_is_a_real_workbook(guide_batch, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    _, db, _ = guide_batch
    with __import__("sqlite3").connect(db) as conn:
        conn.execute("UPDATE runs SET response = '=HYPERLINK(\"http://x\")' WHERE run_id = 1")
    proc = alems_inproc("export", "--db", str(db), "--output", str(tmp_path / "results.xlsx"))
    assert proc.returncode == 0, proc.stderr
    wb = openpyxl.load_workbook(tmp_path / "results.xlsx")
    ws = wb["runs"]
    header = [c.value for c in ws[1]]
    assert ws.max_row == 1 + 8 and "dynamic_energy_uj" in header
    col = header.index("response")
    cell = next(r[col] for r in ws.iter_rows(min_row=2) if r[header.index("run_id")].value == 1)
    assert cell.data_type == "s" and cell.value.startswith("=HYPERLINK")   # text, not formula
    energy = [r[header.index("dynamic_energy_uj")].value for r in ws.iter_rows(min_row=2)]
    assert all(isinstance(v, float) for v in energy if v is not None)
    proc = alems_inproc("export", "--db", str(db), "--output", str(tmp_path / "results.xls"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and ".xlsx" in proc.stderr
    assert not (tmp_path / "results.xls").exists()


def test_plan_reps_labels_its_means_and_tests(guide_batch):
    _, db, _ = guide_batch
    proc = alems_inproc("plan-reps", "--db", str(db), "--group-id", "latest",
                        env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│ ")]
    energy = [r for r in rows if r.startswith("│ energy")]
    tax = [r for r in rows if r.startswith("│ tax_ratio")]
    assert energy and tax
    assert all("one-sample t" in r and "paired" not in r and " J " in r for r in energy)
    assert all("paired t (log ratios)" in r and "×" in r for r in tax)
    assert "mean (tax: geometric)" in proc.stdout


@pytest.mark.pdf
def test_guide_report_generator_writes_the_pdf(guide_batch):
    pytest.importorskip("weasyprint")
    root, db, _ = guide_batch
    proc = _py(str(REPO / "scripts/tools/report_generator.py"), "--exp-id", "latest",
               "--output", str(root / "report.pdf"), cwd=root, ALEMS_DB=str(db))
    assert proc.returncode == 0, proc.stderr
    assert (root / "report.pdf").read_bytes().startswith(b"%PDF")


def test_query_energy_samples_damaged_file_is_one_line(guide_batch, tmp_path):
    pytest.importorskip("duckdb")
    import shutil

    root, db, _ = guide_batch
    copy = tmp_path / "data"
    shutil.copytree(db.parent, copy)
    victim = sorted((copy / "samples").rglob("*.parquet"))[0]
    victim.write_bytes(b"not parquet")
    proc = alems_inproc("query", "--db", str(copy / "experiments.db"),
                        "SELECT COUNT(*) FROM energy_samples")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("alems: error: cannot read samples") and victim.name in proc.stderr


@pytest.mark.parametrize("sql,copied", [
    ("SELECT s.run_id, r.workflow_type, AVG(s.pkg_power_w) FROM energy_samples s "
     "JOIN runs r USING (run_id) GROUP BY ALL", {"run_id", "workflow_type"}),
    ("SELECT COUNT(*) FROM runs, energy_samples", {"run_id"}),
    ("SELECT r.* FROM runs r WHERE r.run_id IN (SELECT run_id FROM energy_samples)", "*"),
    ("SELECT COLUMNS('.*_uj') FROM runs JOIN energy_samples USING (run_id)", "*"),
])
def test_query_energy_samples_copies_only_the_runs_columns_it_names(guide_batch, sql, copied,
                                                                     monkeypatch):
    """A 10⁵-run study's replies and traces are ~1 GB in memory: a statement gets the index
    columns it names (all where it may use others: `r.*`, COLUMNS()), with the same rows."""
    import pandas as pd

    _, db, _ = guide_batch
    seen, real = [], pd.read_sql_query

    def spy(q, conn, *a, **kw):
        seen.append(q)
        return real(q, conn, *a, **kw)

    monkeypatch.setattr(pd, "read_sql_query", spy)
    proc = alems_inproc("query", "--db", str(db), "--format", "csv", sql)
    assert proc.returncode == 0, proc.stderr
    [runs_q] = [q for q in seen if q.endswith('FROM "runs"')]
    got = runs_q.split(" FROM ")[0].removeprefix("SELECT ")
    assert (got == "*") if copied == "*" else \
        ({c.strip('" ') for c in got.split(",")} == copied)
    rows = proc.stdout.splitlines()
    assert len(rows) > 1
    if copied == "*" and "r.*" in sql:
        assert rows[0].split(",")[:2] == ["run_id", "exp_id"] and len(rows) == 1 + 8
