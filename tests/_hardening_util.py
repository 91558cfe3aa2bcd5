"""Helpers of the hardening and adversarial tests: run the real `alems` command, scripted
batches, a small tmpfs where the test may mount one, store consistency checks."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for key in ("ALEMS_DB", "TEMPERATURE", "ALEMS_FACTORS"):
        env.pop(key, None)
    # an empty sysfs: the sampler falls back to its estimate, the same on every machine
    (tmp_path / "empty-sys").mkdir(exist_ok=True)
    env["ALEMS_SYSFS_ROOT"] = str(tmp_path / "empty-sys")
    env["ALEMS_MSR_PATH"] = str(tmp_path / "empty-sys" / "no-msr" / "{cpu}")
    return env


def argv(*args) -> list[str]:
    return [sys.executable, "-m", "alems", *map(str, args)]


def alems(tmp_path, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv(*args), cwd=tmp_path, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=timeout, **kw)


def alems_quick(tmp_path, *args) -> subprocess.CompletedProcess:
    """`alems ARGS` in-process (run_app, as `alems` runs it), for what the process itself
    does not change: argument checks, queries, refusals before anything runs."""
    from inproc import alems_inproc

    return alems_inproc(*args, cwd=tmp_path, env=env_for(tmp_path))


def popen(tmp_path, *args, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(argv(*args), cwd=tmp_path, env=env_for(tmp_path), text=True, **kw)


def one_error_line(proc, *needles) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("alems: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def batch_args(db, *extra, reps=3, tasks="gsm8k_basic") -> list[str]:
    return ["batch", "--tasks", tasks, "--repetitions", str(reps), "--providers", "scripted",
            "--db", str(db), "--hz", "200", "--baseline-duration", "0.02",
            "--baseline-reps", "1", "--seed", "3", *extra]


def count_runs(db_path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def check_store(db_path: Path, *, after_kill: bool = False) -> list[dict]:
    """No duplicated run, every run's Parquet file readable, no orphan or temporary file,
    the SQLite file intact. Returns the runs (none when the batch died before storing any).
    `after_kill`: the samples stream (`*.partial`) of the run a kill interrupted may remain:
    it is kept for recovery and discarded by the next resume, never stored as a run."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []
        rows = [dict(r) for r in conn.execute(
            "SELECT r.*, e.group_id, e.task_name FROM runs r JOIN experiments e "
            "USING (exp_id) ORDER BY run_id")]
    finally:
        conn.close()
    keys = Counter((r["group_id"], r["task_name"], r["workflow_type"], r["run_number"])
                   for r in rows)
    assert all(n == 1 for n in keys.values()), "a run was stored twice"
    folder = db_path.parent
    for r in rows:
        pq.read_table(folder / r["samples_path"])      # readable, not truncated
    on_disk = {p.relative_to(folder).as_posix() for p in (folder / "samples").rglob("*")
               if p.is_file() and not (after_kill and p.name.endswith(".parquet.partial"))
               } if (folder / "samples").is_dir() else set()
    assert on_disk == {r["samples_path"] for r in rows}, "orphan or temporary files remain"
    return rows


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m"):
    """Mount a tmpfs of `size` at `path` (root only); skip the test where we cannot."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")


def fill(path: Path) -> None:
    """Fill the file system of `path` to the last byte."""
    with open(path / "filler", "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    with contextlib.suppress(OSError), open(path / "filler", "ab") as fh:
        while True:  # the last partial block
            fh.write(b"\0" * 512)
            fh.flush()
