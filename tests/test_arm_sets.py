"""Issue 18 item 5: pairs (arm sets) of three arms stay whole through --shard, the fleet's
units, a resumption after a kill mid-set and `alems merge`; the arm set is stored in the
run key (runs.pair_index), derived for databases from before that column."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import pytest

from alems.errors import AlemsError
from alems.experiment.plan import pair_units, plan_order, runs_to_do, shard_runs
from alems.store import db as store_db
from alems.store.merge import merge

from test_batch import StopAfter, all_runs, assert_store_consistent, make_runner

TASKS = ["gsm8k_basic", "factual_qa"]
ARMS3 = ["linear", "agentic", "react"]


def _sets(keys_or_rows, get):
    """pair identity -> the (task, provider, rep, workflow) of its members."""
    out = defaultdict(list)
    for k in keys_or_rows:
        out[get(k)].append(k)
    return out


def _assert_whole_sets(keys, arms):
    """Each arm set (pair_index) holds the len(arms) arms of one (task, provider, rep)."""
    for members in _sets(keys, lambda k: k.pair_index).values():
        assert len({(k.task, k.provider, k.rep) for k in members}) == 1, \
            "an arm set mixes tasks, providers or repetitions"
        assert sorted(k.workflow for k in members) == sorted(arms)


@pytest.mark.parametrize("arms", [["linear", "agentic"], ARMS3])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shard_never_splits_an_arm_set(arms, n):
    plan = plan_order(TASKS, ["local", "cloud"], arms, 5, seed=3)
    _assert_whole_sets(plan, arms)
    shards = [shard_runs(plan, (k, n)) for k in range(1, n + 1)]
    assert sorted((k for s in shards for k in s), key=lambda k: k.order_index) == plan
    for s in shards:
        _assert_whole_sets(s, arms)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= len(arms), "an even share of whole sets"


def test_fleet_units_are_whole_arm_sets_also_after_a_partial_resume():
    plan = plan_order(TASKS, ["local"], ARMS3, 4, seed=11)
    units = pair_units(plan)
    assert len(units) == len(TASKS) * 4
    for unit in units:
        assert len({(k.task, k.provider, k.rep) for k in unit}) == 1
        assert [k.pair_order for k in unit] == [0, 1, 2], "arms in their planned order"
    # a kill after the first arm of a set: its two other arms form one unit
    first = plan[:4]   # set 0 whole, then the first arm of set 1
    done = {(k.task, k.provider, k.workflow, k.rep): i for i, k in enumerate(first)}
    rest = pair_units(runs_to_do(plan, 1, done))
    assert [(k.workflow, k.pair_order) for k in rest[0]] == [(k.workflow, k.pair_order)
                                                             for k in plan[4:6]]
    assert {k.pair_index for k in rest[0]} == {plan[3].pair_index}
    for unit in rest:
        assert len({(k.task, k.provider, k.rep) for k in unit}) == 1


def _stored_sets(rows):
    """(group, task, provider, rep) -> the pair_index values of its stored arms."""
    out = defaultdict(set)
    for r in rows:
        out[(r["group_id"], r["task_name"], r["provider"], r["run_number"])].add(r["pair_index"])
    return out


def _assert_rows_match_plan(rows, plan):
    planned = {(k.task, k.workflow, k.rep): (k.order_index, k.pair_order, k.pair_index)
               for k in plan}
    for r in rows:
        assert (r["order_index"], r["pair_order"], r["pair_index"]) == \
            planned[(r["task_name"], r["workflow_type"], r["run_number"])]


def test_three_arm_shards_run_whole_sets_and_merge_keeps_them(tmp_path):
    plan = plan_order(TASKS, ["scripted"], ARMS3, 3, seed=7)
    dbs = []
    for k in (1, 2):
        db = tmp_path / f"shard{k}" / "experiments.db"
        summary = make_runner(tmp_path, db_path=db, shard=(k, 2), workflows=ARMS3,
                              repetitions=3).run()
        rows = all_runs(db)
        assert summary.ran == len(rows) > 0
        assert all(len(v) == 1 for v in _stored_sets(rows).values())
        by_set = _sets(rows, lambda r: (r["task_name"], r["run_number"]))
        assert all(sorted(r["workflow_type"] for r in v) == sorted(ARMS3)
                   for v in by_set.values()), "a shard holds every arm of its sets"
        _assert_rows_match_plan(rows, plan)
        dbs.append(db)
    out = tmp_path / "all" / "experiments.db"
    merge(out, dbs)
    rows = assert_store_consistent(out)
    assert len(rows) == len(plan)
    _assert_rows_match_plan(rows, plan)
    sets = _stored_sets(rows)
    assert len(sets) == len(TASKS) * 3 and all(len(v) == 1 for v in sets.values())


def test_resume_after_a_kill_mid_set_completes_the_set_in_its_shard(tmp_path):
    db = tmp_path / "data" / "experiments.db"
    plan = plan_order(TASKS, ["scripted"], ARMS3, 2, seed=7)
    mine = shard_runs(plan, (2, 2))
    runner = make_runner(tmp_path, workflows=ARMS3, shard=(2, 2))
    runner.progress = StopAfter(4)      # the first arm of this shard's second set
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    first = all_runs(db)
    assert len(first) == 4
    assert sorted(r["pair_index"] for r in first) == sorted(k.pair_index for k in mine[:4])
    summary = make_runner(tmp_path, workflows=ARMS3, shard=(2, 2)).run()
    assert summary.done_before == 4 and summary.ran == len(mine) - 4
    rows = assert_store_consistent(db)
    assert sorted((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows) == \
        sorted((k.task, k.workflow, k.rep) for k in mine)
    _assert_rows_match_plan(rows, plan)
    assert all(len(v) == 1 for v in _stored_sets(rows).values())


def _drop_pair_index(db):
    """Make `db` look like a schema-3 database: no runs.pair_index."""
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs DROP COLUMN pair_index")
    conn.execute("UPDATE schema_info SET value = '3' WHERE key = 'version'")
    conn.commit()
    conn.close()


def test_an_older_database_gets_pair_index_from_its_plan_position(tmp_path):
    db3 = tmp_path / "three" / "experiments.db"
    db2 = tmp_path / "two" / "experiments.db"
    make_runner(tmp_path, db_path=db3, workflows=ARMS3).run()
    make_runner(tmp_path, db_path=db2).run()
    want = {db: sorted((r["run_id"], r["pair_index"]) for r in all_runs(db))
            for db in (db3, db2)}
    for db in (db3, db2):
        _drop_pair_index(db)
        assert "pair_index" not in all_runs(db)[0]
        store_db.connect(db).close()      # migrates
        assert sorted((r["run_id"], r["pair_index"]) for r in all_runs(db)) == want[db]


def test_merge_derives_the_arm_set_of_an_older_input_and_refuses_a_mismatch(tmp_path):
    plan = plan_order(TASKS, ["scripted"], ARMS3, 2, seed=7)
    dbs = []
    for k in (1, 2):
        db = tmp_path / f"shard{k}" / "experiments.db"
        make_runner(tmp_path, db_path=db, shard=(k, 2), workflows=ARMS3).run()
        dbs.append(db)
    _drop_pair_index(dbs[0])       # one shard from before the column existed
    out = tmp_path / "all" / "experiments.db"
    merge(out, dbs)
    rows = all_runs(out)
    assert len(rows) == len(plan) and all(r["pair_index"] is not None for r in rows)
    _assert_rows_match_plan(rows, plan)
    # one arm moved into another set: the shards no longer agree on the plan
    conn = sqlite3.connect(dbs[1])
    conn.execute("UPDATE runs SET pair_index = pair_index + 1000 WHERE run_id = "
                 "(SELECT MIN(run_id) FROM runs)")
    conn.commit()
    conn.close()
    out2 = tmp_path / "again" / "experiments.db"
    with pytest.raises(AlemsError, match="different arm sets"):
        merge(out2, dbs)
    assert not out2.exists()   # all or nothing: a refused merge leaves no output
