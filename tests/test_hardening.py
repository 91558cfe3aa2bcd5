"""Issue 10, each item through the real command line: no damage as root, one batch per
session, safe baselines, bounded inputs, one line never a traceback, the query command."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from analysis_fixture import build_fixture_db
from _hardening_util import (alems, alems_quick, batch_args, check_store, count_runs, env_for,
                             one_error_line, popen, remount_ro, small_tmpfs)
from conftest import IS_ROOT, IS_ROOT_REASON


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    return build_fixture_db(tmp_path_factory.mktemp("hard") / "experiments.db")


# ---------------------------------------------------------------- 1: never replace a node

def _char_device(path: Path) -> Path:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the null device's numbers
    return path


@pytest.mark.skipif(not IS_ROOT, reason=IS_ROOT_REASON)
def test_export_and_sample_write_into_a_device_node_without_replacing_it(tmp_path, fixture_db):
    dev = _char_device(tmp_path / "null")
    link = tmp_path / "link-to-null"
    link.symlink_to(dev)
    r = alems_quick(tmp_path, "export", "--db", fixture_db, "-o", dev)
    assert r.returncode == 0, r.stderr
    r = alems_quick(tmp_path, "export", "--db", fixture_db, "--format", "json", "-o", link)
    assert r.returncode == 0, r.stderr
    # A samples output streams to `<name>.partial` beside it: never beside a device
    # (issue 24); the summary JSON is written into the node.
    r = alems(tmp_path, "sample", "-q", "--hz", "100", "-o", dev, "--", "true")
    assert r.returncode == 2, r.stderr
    one_error_line(r, "character device")
    r = alems(tmp_path, "sample", "-q", "--hz", "100", "--summary-json", dev, "--", "true")
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.lstat(dev).st_mode), "the device node was replaced"
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-sys", "link-to-null", "null"]


def test_fifo_is_written_in_place(tmp_path, fixture_db):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    r = alems(tmp_path, "export", "--db", fixture_db, "-o", fifo)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got and got[0].startswith(b"group_id")


def test_socket_and_directory_targets_are_refused_in_one_line(tmp_path, fixture_db):
    sock_path = tmp_path / "s.csv"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(sock_path))
    try:
        r = alems_quick(tmp_path, "export", "--db", fixture_db, "-o", sock_path)
        assert r.returncode == 2
        one_error_line(r, "socket")
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        srv.close()
    (tmp_path / "r.html").mkdir()
    r = alems_quick(tmp_path, "report", "--db", fixture_db, "-o", tmp_path / "r.html")
    assert r.returncode == 2
    one_error_line(r, "directory")


def test_safe_replace_refuses_a_non_regular_target(tmp_path):
    from alems.errors import AlemsError
    from alems.atomic_io import safe_replace

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    (tmp_path / "tmp").write_text("x")
    with pytest.raises(AlemsError, match="cannot write .* FIFO"):
        safe_replace(tmp_path / "tmp", fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ---------------------------------------------------------------- 2: one batch per session

@pytest.mark.signals
def test_second_batch_on_a_live_session_refuses_and_a_dead_ones_lock_is_taken_over(tmp_path):
    db = tmp_path / "data" / "experiments.db"
    args = batch_args(db, "--cool-down", "1", reps=4)
    first = popen(tmp_path, *args)
    deadline = time.monotonic() + 60
    while count_runs(db) < 1 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = alems(tmp_path, *args)
    assert second.returncode == 1, second.stderr
    one_error_line(second, "being run by another batch", f"pid {first.pid}",
                   socket.gethostname())
    first.kill()
    first.wait(10)
    third = alems(tmp_path, *args)
    assert third.returncode == 0, third.stderr
    assert f"took over the lock" in third.stderr and f"pid {first.pid}" in third.stderr
    assert len(check_store(db)) == 8


# ---------------------------------------------------------------- 3: safe baselines

def test_short_baseline_is_not_reused_by_a_batch_asking_for_longer_windows(tmp_path):
    db = tmp_path / "experiments.db"
    r = alems_quick(tmp_path, *batch_args(db, "--workflows", "linear", reps=1))
    assert r.returncode == 0, r.stderr
    args = batch_args(db, "--workflows", "linear", "--new-session", reps=1)
    args[args.index("--baseline-duration") + 1] = "0.1"
    r = alems_quick(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert "measuring idle baseline" in r.stderr and "0.02 s windows" in r.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == 2


def test_runs_with_negative_energy_warn_and_remeasure(tmp_path):
    from alems.experiment import baseline as bl
    from alems.store import db as store_db

    db = tmp_path / "experiments.db"
    r = alems_quick(tmp_path, *batch_args(db, "--workflows", "linear", reps=1))
    assert r.returncode == 0, r.stderr
    conn = store_db.connect(db)   # make the stored idle power absurd: 49.5 W, and quiet
    # (a later batch reuses only a baseline measured quiet; this machine is shared)
    conn.execute("UPDATE baselines SET pkg_power_w_mean = 49.5, core_power_w_mean = 49.5, "
                 "state_json = json_set(state_json, '$.quiet', 1)")
    conn.commit()
    conn.close()
    r = alems_quick(tmp_path, *batch_args(db, "--workflows", "linear", "--new-session", reps=2))
    assert r.returncode == 0, r.stderr
    assert "negative dynamic energy" in r.stderr and "49.50 W" in r.stderr
    assert "measuring idle baseline" in r.stderr
    conn = sqlite3.connect(db)
    ids = [i for (i,) in conn.execute("SELECT DISTINCT baseline_id FROM runs ORDER BY run_id")]
    assert len(ids) == 2, "the run after the negative one must use a new baseline"
    assert bl.MIN_DURATION_S > 0.001


# ---------------------------------------------------------------- 4: signals, dead batches, pipes

@pytest.mark.signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_batch_like_ctrl_c(tmp_path, sig):
    db = tmp_path / "experiments.db"
    args = batch_args(db, "--cool-down", "0.3", reps=4)
    proc = popen(tmp_path, *args)
    deadline = time.monotonic() + 60
    while count_runs(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and signal.Signals(sig).name in err.splitlines()[-1]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "interrupted"
    conn.close()
    again = alems(tmp_path, *args)
    assert again.returncode == 0 and "resuming" in again.stderr
    assert len(check_store(db)) == 8


@pytest.mark.signals
def test_status_sees_a_killed_batch_and_watch_ends(tmp_path):
    db = tmp_path / "experiments.db"
    proc = popen(tmp_path, *batch_args(db, "--cool-down", "0.5", reps=5))
    deadline = time.monotonic() + 60
    while count_runs(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    live = alems(tmp_path, "status", "--db", db, "--format", "json")
    assert live.returncode == 0 and json.loads(live.stdout)["process_gone"] is False
    proc.kill()
    proc.wait(10)
    r = alems(tmp_path, "status", "--db", db)
    assert r.returncode == 0, r.stderr
    assert "process is gone" in r.stdout and "ETA" not in r.stdout
    r = alems(tmp_path, "status", "--db", db, "--watch", "--interval", "0.2", timeout=20)
    assert r.returncode == 0 and "process is gone" in r.stdout


@pytest.mark.signals
def test_broken_pipe_never_stops_the_batch(tmp_path):
    db = tmp_path / "experiments.db"
    proc = popen(tmp_path, *batch_args(db, "--verbose", reps=3), stderr=subprocess.STDOUT)
    first = proc.stdout.readline()           # `| head -1`
    assert first
    proc.stdout.close()
    assert proc.wait(timeout=90) == 0
    assert len(check_store(db)) == 6
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "completed"


# ---------------------------------------------------------------- 5: bounded inputs

@pytest.mark.parametrize("flags,needle", [
    (["--repetitions", "1000000000"], "--repetitions"),
    (["--threads", "10000"], "--threads"),
    (["--baseline-duration", "1e9"], "--baseline-duration"),
    (["--baseline-duration", "0.001"], "--baseline-duration"),
    (["--baseline-duration", "inf"], "--baseline-duration"),
    (["--baseline-duration", "nan"], "--baseline-duration"),
    (["--cool-down", "inf"], "--cool-down"),
    (["--cool-down", "nan"], "--cool-down"),
    (["--cool-down", "1e308"], "--cool-down"),
    (["--seed", str(2 ** 70)], "--seed"),
    (["--seed", str(2 ** 64)], "--seed"),
    (["--n-ctx", "1000000000"], "--n-ctx"),
    (["--max-steps", "0"], "--max-steps"),
    (["--max-tool-calls", "-1"], "--max-tool-calls"),
    (["--hz", "1e-9"], "--hz"),
    (["--baseline-reps", "100000"], "--baseline-reps"),
    (["--temperature", "nan"], "--temperature"),
])
def test_every_number_is_bounded_before_anything_runs(tmp_path, flags, needle):
    t0 = time.monotonic()
    r = alems_quick(tmp_path, "batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                    "--db", "data/experiments.db", *flags)
    assert r.returncode == 2, r.stderr
    one_error_line(r, needle)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "data").exists()


def test_sample_rate_is_bounded(tmp_path):
    r = alems_quick(tmp_path, "sample", "--hz", "1e-9", "--", "true")
    assert r.returncode == 2
    one_error_line(r, "--hz")


# ---------------------------------------------------------------- 6: one line, never a traceback

def test_deeply_nested_and_huge_task_files_are_one_line(tmp_path):
    nested = tmp_path / "nested.jsonl"
    nested.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    r = alems_quick(tmp_path, "batch", "--tasks", nested, "--providers", "scripted")
    assert r.returncode == 1
    one_error_line(r, "nested too deeply")
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"prompt": "x" * 10_000_000, "answer": "1"}) + "\n")
    t0 = time.monotonic()
    r = alems_quick(tmp_path, "batch", "--tasks", huge, "--providers", "scripted")
    assert r.returncode == 1 and time.monotonic() - t0 < 20
    one_error_line(r, "characters long")


def test_long_output_names_and_same_file_outputs_are_refused(tmp_path, fixture_db):
    name = "x" * 300 + ".csv"
    r = alems(tmp_path, "export", "--db", fixture_db, "-o", tmp_path / name)
    assert r.returncode == 2
    one_error_line(r, "file name")
    r = alems(tmp_path, "sample", "-o", tmp_path / ("y" * 300 + ".parquet"), "--", "true")
    assert r.returncode == 2
    one_error_line(r, "file name")
    marker = tmp_path / "ran"
    out = tmp_path / "same.parquet"
    r = alems(tmp_path, "sample", "-o", out, "--summary-json", out, "--", "touch", marker)
    assert r.returncode == 2
    one_error_line(r, "--summary-json")
    assert not marker.exists() and not out.exists()


def test_full_disk_while_saving_the_baseline_is_one_line(tmp_path, monkeypatch):
    from alems.cli import app
    from alems.cli._common import run_app
    from alems.store import baselines

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(baselines, "insert_baseline", full)
    monkeypatch.chdir(tmp_path)
    code = run_app(app, batch_args(tmp_path / "experiments.db", reps=1))
    assert code == 1


def test_full_disk_while_saving_the_baseline_cli(tmp_path, capfd, monkeypatch):
    from alems.cli import app
    from alems.cli._common import run_app
    from alems.store import baselines

    monkeypatch.setattr(baselines, "insert_baseline", lambda *a, **k: (_ for _ in ()).throw(
        sqlite3.OperationalError("database or disk is full")))
    code = run_app(app, batch_args(tmp_path / "experiments.db", reps=1))
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = [ln for ln in err.splitlines() if ln.startswith("alems:")]
    assert last and "disk is full" in last[-1]


def test_read_only_mount_batch_is_one_line_and_analysis_opens_read_only(tmp_path):
    mnt = tmp_path / "ro"
    with small_tmpfs(mnt, "8m"):
        build_fixture_db(mnt / "experiments.db")
        remount_ro(mnt)
        for args in (["summary"], ["status"], ["query", "SELECT COUNT(*) FROM runs"]):
            r = alems_quick(tmp_path, *args, "--db", mnt / "experiments.db")
            assert r.returncode == 0, (args, r.stderr)
        r = alems_quick(tmp_path, "export", "--db", mnt / "experiments.db", "-o",
                        tmp_path / "x.csv")
        assert r.returncode == 0, r.stderr
        r = alems_quick(tmp_path, *batch_args(mnt / "experiments.db", reps=1))
        assert r.returncode == 1
        one_error_line(r, "read-only")


# ---------------------------------------------------------------- 7: free space first

def test_sample_refuses_before_running_when_the_disk_lacks_room(tmp_path):
    mnt = tmp_path / "small"
    marker = tmp_path / "ran"
    with small_tmpfs(mnt, "1m"):
        r = alems(tmp_path, "sample", "--hz", "1000", "-o", mnt / "out.parquet", "--",
                  "touch", marker)
        assert r.returncode == 1
        one_error_line(r, "MB free")
        assert not marker.exists()


# ---------------------------------------------------------------- 8: stale temporary files

def test_stale_temporaries_of_dead_processes_are_cleaned(tmp_path, fixture_db):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out.parquet"
    stale = tmp_path / f".out.parquet.{dead.pid}.tmp"
    live = tmp_path / f".out.parquet.{os.getpid()}.tmp"     # this test is alive
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    r = alems(tmp_path, "sample", "-q", "--hz", "100", "-o", out, "--", "true")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and not stale.exists() and live.exists()
    csv_stale = tmp_path / f".runs.csv.{dead.pid}.tmp"
    csv_stale.write_text("half")
    r = alems(tmp_path, "export", "--db", fixture_db, "-o", tmp_path / "runs.csv")
    assert r.returncode == 0 and not csv_stale.exists()


# ---------------------------------------------------------------- 9: the query command

@pytest.mark.parametrize("sql,created", [
    ("PRAGMA journal_mode=DELETE", None),
    ("ATTACH 'attached.db' AS a", "attached.db"),
    ("VACUUM INTO 'copy.db'", "copy.db"),
    ("DELETE FROM runs", None),
    ("PRAGMA user_version = 7", None),
])
def test_query_is_read_only(tmp_path, fixture_db, sql, created):
    before = fixture_db.read_bytes()
    r = alems_quick(tmp_path, "query", "--db", fixture_db, sql)
    assert r.returncode == 1
    one_error_line(r, "--write")
    if created:
        assert not (tmp_path / created).exists()
    conn = sqlite3.connect(fixture_db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    assert fixture_db.read_bytes() == before


ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT MAX(n) FROM r"


@pytest.mark.signals
def test_query_timeout_and_ctrl_c_stop_a_runaway_query(tmp_path, fixture_db):
    t0 = time.monotonic()
    r = alems(tmp_path, "query", "--db", fixture_db, "--timeout", "1", ENDLESS, timeout=30)
    assert r.returncode == 1 and time.monotonic() - t0 < 20
    one_error_line(r, "--timeout")
    proc = popen(tmp_path, "query", "--db", fixture_db, ENDLESS)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "Traceback" not in err, err
