"""Issue 11: the command line as a newcomer meets it, each point through the real `alems`
command line (in-process through run_app as `alems` runs it; a real process where the
process itself matters: umask, help layout, start-up): outputs, sessions, reading the
results, help and exit codes."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis_fixture import build_fixture_db
from inproc import alems_inproc
from test_batch import env_for

FAST_BATCH = ["--providers", "scripted", "--hz", "200", "--baseline-duration", "0.05",
              "--baseline-reps", "1"]


def alems(cwd, *args, env_extra=None, umask=None, timeout=180, real=False):
    """`alems ARGS` from folder `cwd`: in-process (run_app, as `alems` runs it), or as a
    real process (real=True); `umask` for that command only."""
    env = env_for(cwd)
    env.pop("ALEMS_FACTORS", None)
    env.pop("COLUMNS", None)
    env.update(env_extra or {})
    if not real:
        return alems_inproc(*args, cwd=cwd, env=env, umask=umask)
    return subprocess.run([sys.executable, "-m", "alems", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def one_error_line(proc, code, *needles) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("alems: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("newcomer") / "experiments.db",
                            tasks=("gsm8k_multi_step", "logical_reasoning"))


# ---------------------------------------------------------------- outputs

def test_export_format_follows_the_extension(db, tmp_path):
    proc = alems(tmp_path, "export", "--db", str(db), "-o", "x.parquet")
    assert proc.returncode == 0, proc.stderr
    assert "(parquet)" in proc.stdout
    assert len(pd.read_parquet(tmp_path / "x.parquet")) > 0
    proc = alems(tmp_path, "export", "--db", str(db), "-o", "x.json")
    assert proc.returncode == 0 and len(pd.read_json(tmp_path / "x.json")) > 0


def test_export_refuses_a_format_the_extension_contradicts(db, tmp_path):
    one_error_line(alems(tmp_path, "export", "--db", str(db), "-o", "x.parquet", "--format",
                         "csv"), 2, "--format csv", "x.parquet")
    one_error_line(alems(tmp_path, "export", "--db", str(db), "--samples", "-o", "ds",
                         "--format", "json"), 2, "--samples")
    assert sorted(os.listdir(tmp_path)) == []


def test_samples_imply_parquet(db, tmp_path):
    proc = alems(tmp_path, "export", "--db", str(db), "--samples", "-o", "ds")
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "ds").rglob("*.parquet"))


@pytest.mark.parametrize("cmd,target", [
    (["report"], "/nonexistent-alems/r.pdf"),
    (["report"], "/proc/r.html"),
    (["export"], "/nonexistent-alems/r.csv"),
    (["export"], "/proc/r.csv"),
    (["export", "--samples"], "/nonexistent-alems/ds"),
])
def test_unwritable_outputs_are_one_line_exit_2_and_create_nothing(db, tmp_path, cmd, target):
    proc = alems(tmp_path, *cmd, "--db", str(db), "-o", target)
    one_error_line(proc, 2, "--output", target)
    assert not Path("/nonexistent-alems").exists()


def test_outputs_follow_the_umask(db, tmp_path):
    for mask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"runs-{mask:o}.parquet"
        proc = alems(tmp_path, "export", "--db", str(db), "-o", str(out), umask=mask)
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(out.stat().st_mode) == mode
        rep = tmp_path / f"r-{mask:o}.html"
        assert alems(tmp_path, "report", "--db", str(db), "-o", str(rep), umask=mask,
                     timeout=300).returncode == 0
        assert stat.S_IMODE(rep.stat().st_mode) == mode


def test_sample_summary_json_follows_the_umask(tmp_path):
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    env = {"ALEMS_SYSFS_ROOT": str(sysfs)}
    proc = alems(tmp_path, "sample", "-q", "-o", "s.parquet", "--summary-json", "s.json",
                 "--", "true", env_extra=env, umask=0o022, real=True)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "s.parquet").stat().st_mode) == 0o644


# ---------------------------------------------------------------- sessions

def test_rerunning_a_finished_batch_says_so_and_keeps_latest(tmp_path):
    batch = ["batch", "--tasks", "gsm8k_basic", "--repetitions", "1", "--db", "e.db",
             *FAST_BATCH]
    first = alems(tmp_path, *batch)
    assert first.returncode == 0, first.stderr
    again = alems(tmp_path, *batch)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr and "--new-session" in again.stderr
    assert "already complete" in again.stdout
    with sqlite3.connect(tmp_path / "e.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM batch_sessions").fetchone()[0] == 1
    # --new-session runs it again, as the message says
    fresh = alems(tmp_path, *batch, "--new-session")
    assert fresh.returncode == 0 and "already complete" not in fresh.stderr + fresh.stdout
    with sqlite3.connect(tmp_path / "e.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM batch_sessions").fetchone()[0] == 2


def test_latest_is_the_newest_session_with_runs(tmp_path):
    db = build_fixture_db(tmp_path / "e.db")
    with sqlite3.connect(db) as conn:   # an empty session started after the finished one
        conn.execute("INSERT INTO batch_sessions (group_id, created_at, updated_at, status, "
                     "settings_json) VALUES ('g-empty', '2099-01-01T00:00:00Z', "
                     "'2099-01-01T00:00:00Z', 'running', '{}')")
    proc = alems(tmp_path, "summary", "--db", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert '"group_id": "g-20260110-100000"' in proc.stdout


def test_from_another_folder_the_path_is_absolute_and_the_hint_works(tmp_path):
    for cmd in (["summary"], ["status"], ["query", "SELECT 1"],
                ["report", "-o", "r.html"], ["export", "-o", "r.csv"]):
        line = one_error_line(alems(tmp_path, *cmd), 1, "database not found")
        assert str(tmp_path / "data" / "experiments.db") in line, line
        hint = re.findall(r"`(alems batch[^`]*)`", line)
        assert all("--save-db" in h for h in hint), line
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- reading the results

def test_summary_fits_80_columns_and_never_cuts_identifiers(db, tmp_path):
    for width in (80, 120):
        proc = alems(tmp_path, "summary", "--db", str(db), env_extra={"COLUMNS": str(width)})
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert max(len(l) for l in lines) <= width
        assert "…" not in proc.stdout
        for name in ("gsm8k_multi_step", "logical_reasoning", "agentic", "linear"):
            assert name in proc.stdout


def test_energies_print_what_the_interval_supports(db, tmp_path):
    proc = alems(tmp_path, "summary", "--db", str(db), env_extra={"COLUMNS": "200"})
    # the fixture's intervals are about ±1 J: two significant digits of that, no more
    assert re.search(r"\b11\.72 ± 0\.60\b", proc.stdout), proc.stdout
    assert not re.search(r"\d+\.\d{4,} ±", proc.stdout)


def test_report_opens_with_the_headline_and_names_the_real_energy_source(tmp_path):
    db = build_fixture_db(tmp_path / "est.db", energy_source="estimate")
    proc = alems(tmp_path, "report", "--db", str(db), "-o", "r.html", timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "r.html").read_text()
    h2 = re.findall(r"<h2>(.*?)</h2>", html)
    assert h2[0] == "Headline" and h2.index("Conditions") > h2.index("Figures")
    assert h2.index("Warnings") > h2.index("Figures")
    headline = html.split("<h2>")[1]                     # the Headline section, first
    assert "RAPL" not in headline and "ESTIMATE" in headline
    assert "Accuracy per arm" in headline


# ---------------------------------------------------------------- help and consistency

def test_help_h_version_and_no_bool_placeholder(tmp_path):
    for cmd in ([], ["batch"], ["sample"], ["summary"], ["export"], ["query"], ["status"],
                ["doctor"], ["plan-reps"], ["report"], ["dashboard"]):
        short = alems(tmp_path, *cmd, "-h", env_extra={"COLUMNS": "100"})
        assert short.returncode == 0 and "Usage:" in short.stdout, (cmd, short.stderr)
        assert "<bool>" not in short.stdout, cmd
    batch = alems(tmp_path, "batch", "--help", env_extra={"COLUMNS": "200"}, real=True)
    db_line = next(l for l in batch.stdout.splitlines() if "--db " in l)
    assert "data/experiments.db" in batch.stdout.split("--db ")[1].split("--start-from")[0], \
        db_line
    version = alems(tmp_path, "--version", real=True)
    assert version.returncode == 0 and re.match(r"alems \S+", version.stdout)
    mod = subprocess.run([sys.executable, "-m", "alems.run_experiment", "-h"], cwd=tmp_path,
                         env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert mod.returncode == 0 and "<bool>" not in mod.stdout


def test_plan_reps_accepts_the_group_id_it_suggests(db, tmp_path):
    for flag in ("--group-id", "--from-group"):
        proc = alems(tmp_path, "plan-reps", "--db", str(db), flag, "latest")
        assert proc.returncode == 0, proc.stderr
    bad = alems(tmp_path, "plan-reps", "--db", str(db), "--group-id", "nosuch")
    assert "--group-id latest" not in bad.stderr and "'latest'" in bad.stderr


@pytest.mark.parametrize("args,needle", [
    (["--providers", "martian"], "unknown provider"),
    (["--workflows", "linear,circular"], "unknown workflow"),
    (["--tasks", "no_such_task"], "unknown task set"),
    (["--country", "ZZ"], "ZZ"),
])
def test_bad_values_are_usage_errors_exit_2(tmp_path, args, needle):
    base = ["batch", "--tasks", "gsm8k_basic", "--providers", "scripted", "--db", "e.db"]
    line = one_error_line(alems(tmp_path, *base, *args), 2, needle)
    assert "scripted" not in line   # test-only: usable, not advertised


def test_cloud_error_names_only_what_the_user_can_set(tmp_path):
    env = {"ANTHROPIC_API_KEY": ""}
    line = one_error_line(alems(tmp_path, "batch", "--tasks", "gsm8k_basic", "--providers",
                                "cloud", env_extra=env), 1, "ANTHROPIC_API_KEY")
    assert "api_key" not in line


# ---------------------------------------------------------------- progress of a long run

def test_progress_hears_each_runs_phases_and_eta_uses_each_arms_mean(tmp_path):
    from alems.cli.progress import RunState, eta_s
    from alems.experiment.batch import BatchProgress
    from alems.experiment.plan import RunKey
    from test_batch import make_runner

    class Recording(BatchProgress):
        def __init__(self):
            self.planned_keys, self.phases = [], []

        def planned(self, keys):
            self.planned_keys = list(keys)

        def phase(self, key, names):
            self.phases.append((key.workflow, names))

    runner = make_runner(tmp_path, repetitions=1)
    runner.progress = rec = Recording()
    runner.run()
    assert len(rec.planned_keys) == 2 * len(runner.cfg.tasks)
    agentic = {names for wf, names in rec.phases if wf == "agentic"}
    assert ("planning",) in agentic and ("planning", "llm") in agentic and () in agentic

    def key(wf, rep):
        return RunKey("t", "p", wf, rep, 0, 0, 0)

    left = [key("linear", 2), key("agentic", 2), key("agentic", 3)]
    assert eta_s(left, {}) is None                         # nothing known yet
    assert eta_s(left, {"linear": [2.0]}) == 6.0           # first run: its mean for all
    assert eta_s(left, {"linear": [2.0], "agentic": [10.0, 20.0]}) == 2.0 + 15.0 + 15.0
    state = RunState()
    state.key, state.phases = key("agentic", 1), ("execution", "tool:calc")
    state.t_run_s = __import__("time").monotonic() - 75
    assert "agentic rep 1 · execution › tool:calc · 1m15s" in state.current()
    assert state.eta() == "ETA after the first run"
