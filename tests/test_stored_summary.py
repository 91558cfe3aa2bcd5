"""A group's summary kept in its database (analysis.stored_summary, issue 23): stored when
a batch completes and after `alems merge`, read back by `alems summary` and the dashboard
only while it is exactly what a fresh build gives (same runs, status, baselines and code)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from alems.analysis import stored_summary, views
from alems.analysis.tax import tax_cells
from alems.analysis.groups import open_db, resolve_group
from alems.store import summaries
from alems.store.db import connect, transaction

from inproc import alems_inproc
from test_batch import env_for, make_runner

GROUP = "g-kept"
BATCH = ["batch", "--tasks", "gsm8k_basic,factual_qa", "--providers", "scripted",
         "--repetitions", "3", "--hz", "200", "--baseline-duration", "0.02",
         "--baseline-reps", "1", "--group-id", GROUP]


@pytest.fixture(scope="module")
def batch_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("kept")
    db = root / "data" / "experiments.db"
    p = alems_inproc(*BATCH, "--db", str(db), cwd=root, env=env_for(root))
    assert p.returncode == 0, p.stderr
    return db


def _kept_rows(db) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT group_id, summary_json IS NOT NULL, refusal "
                            "FROM group_summaries").fetchall()
    finally:
        conn.close()


def _summary_outputs(db) -> dict[str, tuple[int, str, str]]:
    out = {}
    for fmt in ("json", "table", "csv"):
        p = alems_inproc("summary", "--db", str(db), "--group-id", GROUP, "--format", fmt)
        out[fmt] = (p.returncode, p.stdout, p.stderr)
    return out


def _forget(db) -> None:
    conn = connect(db)
    with transaction(conn):
        conn.execute("DELETE FROM group_summaries")
    conn.close()


def test_a_completed_batch_keeps_its_summary_and_it_reads_as_a_fresh_build(batch_db, tmp_path):
    assert _kept_rows(batch_db) == [(GROUP, 1, None)]
    conn = open_db(batch_db)
    assert stored_summary.stored(conn, GROUP) is not None
    conn.close()
    kept = _summary_outputs(batch_db)
    copy = tmp_path / "fresh.db"
    src = sqlite3.connect(batch_db)
    src.backup(dst := sqlite3.connect(copy))
    src.close(), dst.close()
    _forget(copy)
    fresh = _summary_outputs(copy)
    assert kept["json"][0] == 0 and '"tax"' in kept["json"][1]
    assert kept == {k: (rc, out, err.replace(str(copy), str(batch_db)))
                    for k, (rc, out, err) in fresh.items()}


def test_alems_summary_reads_the_kept_one(batch_db, monkeypatch):
    """With the build made to fail, the default summary still comes (from the row); a
    non-default one is built, so it fails."""
    import alems.analysis.summary as summary_mod

    def broken(*a, **kw):
        raise RuntimeError("built, not read")

    monkeypatch.setattr(summary_mod, "build_summary", broken)
    assert alems_inproc("summary", "--db", str(batch_db), "--group-id", GROUP,
                        "--format", "json").returncode == 0
    with pytest.raises(RuntimeError, match="built, not read"):
        alems_inproc("summary", "--db", str(batch_db), "--group-id", GROUP,
                     "--confidence", "0.9")


@pytest.mark.parametrize("change", ["a run", "the status", "a baseline", "the code"])
def test_a_kept_summary_is_not_used_once_its_group_or_the_code_changed(batch_db, tmp_path,
                                                                         monkeypatch, change):
    db = tmp_path / "e.db"
    src = sqlite3.connect(batch_db)
    src.backup(dst := sqlite3.connect(db))
    src.close()
    if change == "a run":
        dst.execute("UPDATE runs SET status = 'error' WHERE run_id = "
                    "(SELECT MIN(run_id) FROM runs)")
    elif change == "the status":
        dst.execute("UPDATE batch_sessions SET status = 'running'")
    elif change == "a baseline":
        dst.execute("UPDATE runs SET baseline_id = baseline_id + 1000 WHERE run_id = "
                    "(SELECT MAX(run_id) FROM runs)")
    else:
        monkeypatch.setattr(stored_summary, "code_fingerprint", lambda: "other code")
    dst.commit()
    dst.close()
    conn = open_db(db)
    assert stored_summary.stored(conn, GROUP) is None
    conn.close()


def test_a_group_without_a_summary_keeps_why(tmp_path):
    """A single-arm batch has no tax: the row keeps the refusal, and `alems summary` says
    the same line as a fresh build."""
    db = tmp_path / "data" / "e.db"
    p = alems_inproc(*BATCH, "--workflows", "linear", "--db", str(db), cwd=tmp_path,
                     env=env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    [(gid, has, why)] = _kept_rows(db)
    assert gid == GROUP and not has and why
    kept = alems_inproc("summary", "--db", str(db), "--group-id", GROUP)
    _forget(db)
    fresh = alems_inproc("summary", "--db", str(db), "--group-id", GROUP)
    assert kept.returncode == fresh.returncode != 0
    assert kept.stderr == fresh.stderr and why in kept.stderr


def test_merge_keeps_the_merged_batch_summary(tmp_path):
    dbs = []
    for k in (1, 2):
        dbs.append(tmp_path / f"shard{k}" / "experiments.db")
        make_runner(tmp_path, db_path=dbs[-1], shard=(k, 2)).run()
    out = tmp_path / "all" / "experiments.db"
    p = alems_inproc("merge", str(out), *map(str, dbs), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].endswith("summary kept for 1 batch(es)")
    assert _kept_rows(out) == [("g-test", 1, None)]
    conn = open_db(out)
    kept = stored_summary.stored(conn, "g-test")
    from alems.analysis.summary import build_summary

    fresh = json.loads(stored_summary.to_json(build_summary(conn, out,
                                                            resolve_group(conn, "g-test"))))
    conn.close()
    assert kept is not None and kept[1] is None
    assert json.dumps(kept[0], sort_keys=True) == json.dumps(fresh, sort_keys=True)


def test_a_database_before_schema_9_has_none_kept(tmp_path):
    """Read-only, an older database has no table: nothing kept, no error."""
    conn = sqlite3.connect(tmp_path / "old.db")
    assert summaries.load(conn, "g") is None
    conn.close()


def test_the_dashboard_serves_the_kept_summary(batch_db, monkeypatch):
    from starlette.testclient import TestClient

    import alems.analysis.summary as summary_mod
    from alems.dashboard import group_cache
    from alems.dashboard.app import create_app

    def broken(*a, **kw):
        raise RuntimeError("built, not read")

    monkeypatch.setattr(summary_mod, "build_summary", broken)
    monkeypatch.setattr(group_cache, "quick_headline", broken)
    conn = open_db(batch_db)
    summary, _ = stored_summary.stored(conn, GROUP)
    digest, _ = stored_summary.stored(conn, GROUP, part="digest_json")
    conn.close()
    assert digest == {"headline": views.headline_row(summary),
                      "accuracy": views.accuracy_per_arm(summary)}
    ratio = tax_cells(digest["headline"])["ratio"]
    with TestClient(create_app(batch_db), base_url="http://127.0.0.1") as client:
        groups = client.get("/").text      # the digest: no summary built, none parsed
        row = groups[groups.index(f'data-group="{GROUP}"'):]
        assert ratio in row[:row.index("</tr>")]
        page = client.get(f"/group/{GROUP}")
        assert page.status_code == 200 and 'id="headline"' in page.text
        assert ratio in page.text


def test_the_groups_list_reads_the_digest_not_the_summary(batch_db, monkeypatch):
    """Nothing in memory, nothing may be built: the row's headline and accuracy come from
    the kept digest (1 000 batches: no 1 000 summaries parsed, issue 23)."""
    from alems.dashboard import group_cache, pages
    from alems.store import dashboard_reads

    def broken(*a, **kw):
        raise RuntimeError("built, not read")

    monkeypatch.setattr(group_cache, "quick_headline", broken)
    monkeypatch.setattr(pages, "_summaries", {})
    conn = dashboard_reads.open_readonly(batch_db)
    try:
        [row] = [r for r in pages.groups_page(conn, batch_db)["groups"]
                 if r["group_id"] == GROUP]
        digest, _ = stored_summary.stored(conn, GROUP, part="digest_json")
    finally:
        conn.close()
    assert row["headline"] == digest["headline"] and row["headline"]["tax_ratio"] > 0
    assert row["accuracy"] == digest["accuracy"] and not row["pending"]
    assert pages._summaries == {}


def test_without_pandas_a_batch_keeps_nothing_and_says_nothing(tmp_path, monkeypatch):
    """`.[local]` alone (the README's first command) has no pandas: the batch completes as
    before, nothing is kept (nothing could read it)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pandas" else real(name, *a))
    assert not stored_summary.can_build()
    db = tmp_path / "data" / "e.db"
    p = alems_inproc(*BATCH, "--db", str(db), cwd=tmp_path, env=env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert _kept_rows(db) == [] and "summary" not in p.stderr


def test_a_failure_to_keep_the_summary_is_one_line_and_the_batch_completes(tmp_path,
                                                                           monkeypatch):
    """A signal landing in pandas' import surfaces as an ImportError (seen under load): one
    line, the completed batch stays completed, exit 0."""
    def broken(*a, **kw):
        raise ImportError("numpy._core.multiarray failed to import")

    monkeypatch.setattr(stored_summary, "build_and_store", broken)
    db = tmp_path / "data" / "e.db"
    p = alems_inproc(*BATCH, "--db", str(db), cwd=tmp_path, env=env_for(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "could not keep the batch's summary" in p.stderr and "Traceback" not in p.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "completed"
    conn.close()
