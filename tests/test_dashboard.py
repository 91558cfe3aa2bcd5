"""`alems dashboard` without a browser: curves, pages over HTTP (Starlette's test client),
safety (read-only, token, clear pages) and the command's flags."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("starlette")
pytest.importorskip("tsdownsample")
pytest.importorskip("httpx")
pytest.importorskip("scipy")

from starlette.testclient import TestClient  # noqa: E402

from alems.dashboard import curves  # noqa: E402
from alems.dashboard.app import create_app  # noqa: E402
from alems.analysis.tax import tax_cells  # noqa: E402
from alems.analysis.views import headline_row  # noqa: E402
from alems.store import dashboard_reads as reads  # noqa: E402

from analysis_fixture import build_fixture_db, create_empty_db  # noqa: E402
from inproc import alems_inproc  # noqa: E402

GROUP = "g-20260110-100000"
TOKEN = "s3cret-s3cret-s3cret"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("dash") / "experiments.db",
                            tasks=("gsm8k_basic",), reps=4)


@pytest.fixture(scope="module")
def client(db):
    with TestClient(create_app(db), base_url="http://127.0.0.1") as c:
        yield c


def _summary_json(db: Path, group: str) -> dict:
    proc = alems_inproc("summary", "--db", str(db), "--group-id", group, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ curves
def test_envelope_keeps_a_one_sample_spike_among_3_6_million():
    n = 3_600_000
    t_s = np.arange(n) / 1000.0
    y = np.full(n, 10.0)
    y[1_234_567] = 95.0       # one sample
    y[3_000_001] = -1.0       # and one dip
    x, w = curves.envelope(t_s, y, 4000)
    assert len(x) <= 4002
    assert w.max() == 95.0 and w.min() == -1.0
    assert np.all(np.diff(x) >= 0)


def test_power_from_cumulative_energy_is_the_power_that_made_it():
    t_ns = np.arange(0, 2_000_000_000, 1_000_000, dtype=np.int64)   # 2 s at 1 kHz
    watts = np.where(t_ns < 1_000_000_000, 5.0, 25.0)
    energy_uj = np.cumsum(watts * 1e-3 * 1e6)
    t_s, w = curves.power_w(t_ns, energy_uj)
    assert w[(t_s > 0.1) & (t_s < 0.9)] == pytest.approx(5.0)
    assert w[(t_s > 1.1) & (t_s < 1.9)] == pytest.approx(25.0)


def _table(t0_ns: int, n: int) -> pa.Table:
    t = t0_ns + np.arange(n, dtype=np.int64) * 1_000_000
    return pa.table({"t_ns": t, "pkg_energy_uj": np.arange(n) * 10_000.0})


def test_partial_stream_reads_every_complete_batch_even_when_cut_mid_write(tmp_path):
    path = tmp_path / "run_id=1.parquet.partial"
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_stream(sink, _table(0, 1).schema) as writer:
            writer.write_table(_table(0, 500))
            writer.write_table(_table(500_000_000, 500))
    whole = path.read_bytes()
    path.write_bytes(whole[:-200])   # the writer was cut off inside a batch
    table = curves.read_partial(path)
    assert table.num_rows == 500
    assert np.allclose(curves.curves_from_table(table)["pkg"]["w"], 10.0)  # 10 mJ per ms
    path.write_bytes(b"")            # created, nothing written yet
    assert curves.read_partial(path) is None


# ------------------------------------------------------------------ pages
def test_groups_page_lists_the_group_with_progress_and_labelled_energy(client):
    r = client.get("/")
    assert r.status_code == 200
    assert GROUP in r.text and "8/8" in r.text and "measured (powercap)" in r.text


def test_group_page_shows_the_same_headline_tax_as_alems_summary(client, db):
    expected = headline_row(_summary_json(db, GROUP))
    assert expected is not None and expected["tax_ratio"] is not None
    r = client.get(f"/group/{GROUP}")
    assert r.status_code == 200
    page_ratio = r.text.split('id="headline"', 1)[1].split('data-tax-ratio="', 1)[1].split('"')[0]
    assert float(page_ratio) == pytest.approx(expected["tax_ratio"], rel=1e-12)
    cells = tax_cells(expected)   # the one formatter of every surface
    assert f'<span class="tax">{cells["ratio"]}</span>' in r.text
    assert cells["ci"] in r.text


def test_run_page_has_phases_counters_and_a_downsampled_curve(client, db):
    conn = reads.open_readonly(db)
    run_id = reads.group_runs(conn, GROUP)[-1]["run_id"]
    conn.close()
    r = client.get(f"/run/{run_id}")
    assert r.status_code == 200
    assert 'id="fig-power"' in r.text and "instructions" in r.text and "expected" in r.text
    z = client.get(f"/api/run/{run_id}/power?t0=0.05&t1=0.10")
    pkg = z.json()["pkg"]
    assert pkg["t_s"] and min(pkg["t_s"]) >= 0.04 and max(pkg["t_s"]) <= 0.11


def test_compare_page_gives_each_tax_and_their_ratio(client, db):
    r = client.get(f"/compare?a={GROUP}&b={GROUP}")
    assert r.status_code == 200
    # a batch against itself: not independent, so no ratio of taxes is given
    assert "not given — A and B are the same batch" in r.text.split('id="ratio"')[1][:300]


def test_live_api_reports_progress_and_a_partial_stream(tmp_path):
    db = build_fixture_db(tmp_path / "experiments.db", tasks=("gsm8k_basic",), reps=2,
                          planned_reps=4, status="running")
    with TestClient(create_app(db), base_url="http://127.0.0.1") as c:
        st = c.get("/api/live").json()
        assert st["progress"]["done"] == 4 and st["progress"]["planned"] == 8
        assert st["curve"] is None and "progress only" in st["curve_note"]
        folder = tmp_path / "samples" / f"group_id={GROUP}" / "exp_id=1"
        with pa.OSFile(str(folder / "run_id=99.parquet.partial"), "wb") as sink:
            with pa.ipc.new_stream(sink, _table(0, 1).schema) as writer:
                writer.write_table(_table(0, 300))
        st = c.get("/api/live").json()
        assert st["curve"]["pkg"]["n_samples"] == 300


# ------------------------------------------------------------------ safety
def test_database_is_opened_read_only(db):
    conn = reads.open_readonly(db)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM runs")
    conn.close()


@pytest.mark.parametrize("case", ["missing", "empty", "garbage"])
def test_unusable_database_gives_a_clear_page_not_a_traceback(tmp_path, case):
    path = tmp_path / "experiments.db"
    if case == "empty":
        sqlite3.connect(path).close()
    elif case == "garbage":
        path.write_bytes(b"this is not sqlite" * 100)
    with TestClient(create_app(path), base_url="http://127.0.0.1") as c:
        for url in ("/", f"/group/{GROUP}", "/run/1", "/live", "/compare"):
            r = c.get(url)
            assert r.status_code == 503 and "Traceback" not in r.text
            assert {"missing": "no database at", "empty": "is empty",
                    "garbage": "not an A-LEMS database"}[case] in r.text
        assert c.get("/api/live").status_code == 503


def test_schema_without_a_batch_and_a_locked_database_are_clear(tmp_path, monkeypatch):
    path = create_empty_db(tmp_path / "experiments.db")
    with TestClient(create_app(path), base_url="http://127.0.0.1") as c:
        assert "holds no batch session yet" in c.get("/").text
        assert "no batch sessions yet" in c.get("/live").text
    plain = tmp_path / "journal.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.execute("BEGIN EXCLUSIVE")   # a writer holds the file (rollback journal mode)
    monkeypatch.setattr(reads, "BUSY_TIMEOUT_S", 0.05)
    with TestClient(create_app(plain), base_url="http://127.0.0.1") as c:
        r = c.get("/")
        assert r.status_code == 503 and "being written" in r.text and 'http-equiv="refresh"' in r.text
    conn.rollback()
    conn.close()


def test_url_text_never_becomes_sql(client, db):
    before = db.stat().st_mtime_ns
    r = client.get("/group/x'; DROP TABLE runs; --")
    assert r.status_code == 404 and "unknown group id" in r.text
    assert client.get("/run/1%20OR%201=1").status_code == 404  # not an int: no route
    assert db.stat().st_mtime_ns == before
    assert client.get(f"/group/{GROUP}").status_code == 200


def test_token_is_asked_for_and_then_remembered(db):
    with TestClient(create_app(db, token=TOKEN), follow_redirects=False) as c:
        r = c.get(f"/group/{GROUP}")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        assert c.get("/api/live").status_code == 401
        assert "needs its token" in c.get("/login").text
        bad = c.post("/login", content="token=nope&next=/", headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 401 and GROUP not in bad.text
        ok = c.post("/login", content=f"token={TOKEN}&next=//evil.example/", headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert c.get("/").status_code == 200 and GROUP in c.get("/").text


# ------------------------------------------------------------------ the command
def _alems(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "alems", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    (["--host", "0.0.0.0"], "--token"),
    (["--host", "192.168.1.5", "--token", "  "], "--token is empty"),
    (["--port", "70000"], "--port"),
    (["--port", "many"], "--port"),
    (["--colour"], "--colour"),
])
def test_bad_flags_are_one_error_line_exit_2(args, needle):
    proc = alems_inproc("dashboard", *args)   # refused before any server starts
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("alems: error:") and needle in lines[0]


def test_busy_port_is_one_error_line():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        proc = _alems("dashboard", "--port", str(s.getsockname()[1]))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "pick another --port" in lines[0]
