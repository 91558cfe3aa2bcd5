"""`--shard K/N` slices of a plan and `alems merge` of their databases and samples."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from alems.errors import AlemsError, UsageError
from alems.experiment.plan import parse_shard, plan_order, shard_runs
from alems.store.merge import merge

from inproc import alems_inproc
from test_batch import alems, all_runs, assert_store_consistent, env_for, make_runner


def refused(tmp_path, *args):
    """`alems ARGS` in-process (run_app, as `alems` runs it), from folder tmp_path."""
    return alems_inproc(*args, cwd=tmp_path, env=env_for(tmp_path))

TASKS = ["gsm8k_basic", "factual_qa"]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shards_partition_the_plan_into_whole_pairs(n):
    plan = plan_order(TASKS, ["local"], ["linear", "agentic"], 5, seed=3)
    shards = [shard_runs(plan, (k, n)) for k in range(1, n + 1)]
    assert sorted((k for s in shards for k in s), key=lambda k: k.order_index) == plan, \
        "disjoint and complete"
    for s in shards:
        pairs = Counter(k.pair_index for k in s)
        assert set(pairs.values()) == {2}, "a pair is never split between shards"
        assert s == sorted(s, key=lambda k: k.order_index)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 2
    assert shards == [shard_runs(plan, (k, n)) for k in range(1, n + 1)]   # deterministic


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0", ""])
def test_bad_shard_is_refused(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_shard_needs_a_group_id_one_line(tmp_path):
    proc = alems(tmp_path, "batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                 "--shard", "1/2", "--db", "data/e.db")
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--group-id" in lines[0], proc.stderr
    assert not (tmp_path / "data").exists()


def run_shards(tmp_path, n=2):
    dbs = []
    for k in range(1, n + 1):
        db = tmp_path / f"shard{k}" / "experiments.db"
        summary = make_runner(tmp_path, db_path=db, shard=(k, n)).run()
        assert summary.ran == summary.planned and summary.ran in (2, 4, 6)
        dbs.append(db)
    return dbs


def test_shards_merged_give_the_whole_batch(tmp_path):
    dbs = run_shards(tmp_path)
    assert sum(len(all_runs(db)) for db in dbs) == 8
    for db, note in zip(dbs, ("shard one", "shard two"), strict=True):   # labels travel too
        assert alems_inproc("tag", "g-test", "sharded", "--note", note,
                            "--db", str(db)).returncode == 0
    out = tmp_path / "all" / "experiments.db"
    proc = alems(tmp_path, "merge", str(out), *map(str, dbs))
    assert proc.returncode == 0, proc.stderr
    assert [l.startswith("merged ") for l in proc.stdout.splitlines()] == [True, True, False,
                                                                            False]
    assert proc.stdout.splitlines()[-1].endswith("summary kept for 1 batch(es)")
    assert "8 run(s) merged from 2" in proc.stdout
    rows = assert_store_consistent(out)          # ids rewritten in every Parquet file
    keys = Counter((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows)
    assert len(keys) == 8 and set(keys.values()) == {1}
    assert {r["group_id"] for r in rows} == {"g-test"}
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM orchestration_tax_summary").fetchone()[0] == 4
    status, settings = conn.execute("SELECT status, settings_json FROM batch_sessions").fetchone()
    assert status == "completed" and "shard" not in json.loads(settings)
    assert sorted(conn.execute("SELECT kind, text FROM group_labels")) == [
        ("note", "shard one"), ("note", "shard two"), ("tag", "sharded")]
    assert all(r["baseline_id"] is not None for r in rows)
    n_base = sum(sqlite3.connect(db).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
                 for db in dbs)
    assert conn.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == n_base
    # the same rows as one batch over the whole plan
    full = make_runner(tmp_path, db_path=tmp_path / "full" / "experiments.db").run()
    assert full.ran == 8
    full_rows = all_runs(tmp_path / "full" / "experiments.db")
    project = lambda rs: sorted((r["task_name"], r["workflow_type"], r["run_number"],  # noqa: E731
                                 r["order_index"], r["pair_order"], r["item_id"]) for r in rs)
    assert project(rows) == project(full_rows)


def test_merge_refuses_duplicates_and_names_them(tmp_path):
    dbs = run_shards(tmp_path)
    out = tmp_path / "all" / "experiments.db"
    merge(out, [dbs[0]])
    before = all_runs(out)
    files = sorted(p for p in (out.parent / "samples").rglob("*") if p.is_file())
    with pytest.raises(AlemsError, match=r"shard1.*: \d run\(s\) already in .*all.*rep \d+.*nothing merged"):
        merge(out, [dbs[1], dbs[0]])
    assert all_runs(out) == before, "nothing of the refused merge went in"
    assert sorted(p for p in (out.parent / "samples").rglob("*") if p.is_file()) == files
    proc = refused(tmp_path, "merge", str(tmp_path / "x.db"), str(dbs[0]), str(dbs[0]))
    assert proc.returncode == 2 and "given twice" in proc.stderr


def test_merge_refuses_sessions_with_other_settings(tmp_path):
    a = tmp_path / "a" / "e.db"
    b = tmp_path / "b" / "e.db"
    make_runner(tmp_path, db_path=a, tasks=["gsm8k_basic"], repetitions=1).run()
    make_runner(tmp_path, db_path=b, tasks=["gsm8k_basic"], repetitions=1, seed=8).run()
    with pytest.raises(AlemsError, match="other settings.*seed"):
        merge(tmp_path / "out.db", [a, b])


@pytest.mark.parametrize("make,needle", [
    (lambda p: None, "database not found"),
    (lambda p: p.write_text("not a database at all " * 100), "not an A-LEMS database"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)"), "not an A-LEMS database"),
])
def test_merge_bad_input_is_one_line(tmp_path, make, needle):
    bad = tmp_path / "in.db"
    make(bad)
    proc = refused(tmp_path, "merge", str(tmp_path / "out.db"), str(bad))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("alems: error:") and needle in lines[0]


def test_merge_output_as_input_is_refused(tmp_path):
    proc = refused(tmp_path, "merge", "same.db", "same.db")
    assert proc.returncode == 2 and "both the output and an input" in proc.stderr
    proc = refused(tmp_path, "merge", "only.db")
    assert proc.returncode == 2 and proc.stderr.startswith("alems: error:")
