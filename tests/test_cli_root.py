"""The `alems` entry point as a user meets it: bad flags and Ctrl-C each give one line."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from test_batch import env_for


def alems(tmp_path, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alems", *args], cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=120, **kw)


def test_a_flag_that_does_not_parse_is_one_line_and_exit_2(tmp_path):
    for args in (["batch", "--tasks", "gsm8k_basic", "--repetitions", "abc"], ["nosuch"]):
        proc = alems(tmp_path, *args)
        assert proc.returncode == 2, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("alems: error: "), proc.stderr


def test_help_lists_every_command(tmp_path):
    proc = alems(tmp_path, "--help")
    assert proc.returncode == 0
    for command in ("sample", "doctor", "batch", "query", "summary", "plan-reps", "export",
                    "report", "status"):
        assert command in proc.stdout


@pytest.mark.signals
def test_ctrl_c_keeps_completed_runs_and_the_same_command_resumes(tmp_path):
    batch = ["batch", "--tasks", "gsm8k_basic", "--repetitions", "40", "--providers", "scripted",
             "--db", str(tmp_path / "e.db"), "--hz", "200", "--baseline-duration", "0.05",
             "--baseline-reps", "1", "--cool-down", "0.1"]
    db = tmp_path / "e.db"
    proc = subprocess.Popen([sys.executable, "-m", "alems", *batch], cwd=tmp_path,
                            env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    done = 0
    while done < 3 and time.monotonic() < deadline:  # wait for a few committed runs
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    done = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("alems: error: interrupted"), err
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert 3 <= kept < 80

    status = alems(tmp_path, "status", "--db", str(db))
    assert "interrupted" in status.stdout, status

    again = alems(tmp_path, *[a for a in batch if a not in ("--cool-down", "0.1")])
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT workflow_type, COUNT(*), COUNT(DISTINCT run_number) "
                            "FROM runs GROUP BY workflow_type ORDER BY 1").fetchall()
    assert rows == [("agentic", 40, 40), ("linear", 40, 40)]
