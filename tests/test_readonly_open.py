"""One read-only open of a database (store.db.connect_readonly) for query, status, the
dashboard, merge and the analysis commands (issue 24, items 2-3): any byte of a path is
that file's name, and a read-only folder never shows a state older than the database's."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from alems.errors import AlemsError
from alems.store import db as store_db

from analysis_fixture import build_fixture_db
from conftest import unprivileged_prefix

GROUP = "g-20260110-100000"
SRC = str(Path(__file__).resolve().parents[1] / "src")
# Every byte but NUL and '/', in slices short enough for a name (+ "-journal") to fit.
ODD_BYTES = [bytes(b for b in range(lo, min(lo + 48, 256)) if b not in (0, 0x2F))
             for lo in range(1, 256, 48)]
ODD_ASCII = ["db%41.db", "a#b.db", "q?mode=rw.db", "pct%25%.db", "sp ace&x=1.db"]


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("ro") / "experiments.db",
                            tasks=("gsm8k_basic",), reps=2)


def _alems(*args, prefix=(), cwd=None):
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([*prefix, sys.executable, "-m", "alems", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.mark.parametrize("raw", ODD_BYTES, ids=lambda b: f"bytes{b[0]}-{b[-1]}")
def test_any_byte_of_a_name_opens_that_file(tmp_path, fixture_db, raw):
    folder = os.fsencode(tmp_path)
    name = raw + b".db"
    with open(os.path.join(folder, name), "wb") as fh:
        fh.write(fixture_db.read_bytes())
    before = set(os.listdir(folder))
    conn = store_db.connect_readonly(os.fsdecode(os.path.join(folder, name)))
    try:
        assert conn.execute("SELECT group_id FROM batch_sessions").fetchone()[0] == GROUP
    finally:
        conn.close()
    created = set(os.listdir(folder)) - before
    assert created <= {name + b"-wal", name + b"-shm"}, "nothing but SQLite's own files"


@pytest.mark.parametrize("name", ODD_ASCII)
def test_query_status_and_dashboard_read_an_odd_name(tmp_path, fixture_db, name):
    odd = tmp_path / name
    shutil.copy(fixture_db, odd)
    shutil.copy(fixture_db, tmp_path / "dbA.db")               # what `%41` would decode to
    listing = set(os.listdir(tmp_path))
    r = _alems("query", "--db", odd, "--format", "json",
               "SELECT COUNT(*) AS n FROM runs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["n"] == 2 * 2
    r = _alems("status", "--db", odd, "--format", "json", cwd=tmp_path)
    assert r.returncode == 0 and GROUP in r.stdout, r.stderr
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app
    with TestClient(create_app(odd), base_url="http://127.0.0.1") as c:
        page = c.get("/")
        assert page.status_code == 200 and GROUP in page.text
    created = set(os.listdir(tmp_path)) - listing
    assert created <= {name + "-wal", name + "-shm"}, created


# ---------------------------------------------------------------- a read-only WAL database

def _commit_into_wal(db: Path) -> None:
    """A second session's commit that stays in the -wal (the writer dies before any
    checkpoint), as on a read-only mount of a study that is still running."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    code = ("import os, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_autocheckpoint=0')\n"
            "c.execute(\"UPDATE batch_sessions SET status='interrupted'\")\n"
            "c.execute(\"INSERT INTO batch_sessions (group_id, created_at, updated_at, command,"
            " settings_json, host_json, order_json, seed, status) SELECT 'g-second',"
            " created_at, updated_at, command, settings_json, host_json, order_json, seed,"
            " 'completed' FROM batch_sessions\")\n"
            "c.commit(); os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0


@pytest.fixture
def read_only_wal_db(tmp_path, fixture_db):
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("cannot drop the power to write a read-only folder (no setpriv)")
    folder = tmp_path / "mount"
    folder.mkdir()
    db = folder / "experiments.db"
    shutil.copy(fixture_db, db)
    _commit_into_wal(db)
    yield db, folder, prefix
    os.chmod(folder, 0o755)


@pytest.mark.parametrize("shm", [True, False], ids=["with-shm", "without-shm"])
def test_a_read_only_wal_database_is_never_read_stale(read_only_wal_db, shm):
    db, folder, prefix = read_only_wal_db
    if not shm:
        os.unlink(f"{db}-shm")          # e.g. copied without it: SQLite cannot rebuild it here
    os.chmod(folder, 0o555)
    listing = sorted(os.listdir(folder))
    r = _alems("query", "--db", db, "--format", "json",
               "SELECT group_id, status FROM batch_sessions ORDER BY group_id", prefix=prefix)
    st = _alems("status", "--db", db, "--group-id", GROUP, "--format", "json", prefix=prefix)
    assert sorted(os.listdir(folder)) == listing
    for proc in (r, st):
        if proc.returncode != 0:             # refused in one line, never stale
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("alems: error:"), proc.stderr
            assert "-wal" in lines[0] and "stale" in lines[0]
    if r.returncode == 0:                    # or read with the WAL: the current state
        assert json.loads(r.stdout) == [{"group_id": GROUP, "status": "interrupted"},
                                        {"group_id": "g-second", "status": "completed"}]
    if st.returncode == 0:
        assert json.loads(st.stdout)["status"] == "interrupted", st.stdout
    assert st.returncode == r.returncode
    assert (r.returncode == 0) == shm, "with its -shm SQLite reads the WAL; without, refused"


def test_connect_readonly_refuses_in_one_line(tmp_path, read_only_wal_db):
    """The refusal as an AlemsError (what the dashboard turns into its 503 page)."""
    db, folder, prefix = read_only_wal_db
    os.unlink(f"{db}-shm")
    os.chmod(folder, 0o555)
    code = ("import sys\nfrom alems.store.db import connect_readonly\nfrom alems.errors import "
            "AlemsError\ntry:\n    connect_readonly(sys.argv[1])\nexcept AlemsError as e:\n"
            "    print('REFUSED', e)\nelse:\n    print('OPENED')\n")
    out = subprocess.run([*prefix, sys.executable, "-c", code, str(db)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=60)
    assert out.stdout.startswith("REFUSED") and "stale" in out.stdout, out.stdout + out.stderr
    assert AlemsError  # the class the refusal is
