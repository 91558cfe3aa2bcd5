"""`alems merge` into an output that already has runs: every id an input row carries is
rewritten to the output's (docs/TESTING.md: merge identity, which survived a mutation
while every test merged into an empty output, where old and new ids coincide)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from alems.errors import AlemsError
from alems.store import samples as store_samples
from alems.store.merge import merge

from test_batch import all_runs, assert_store_consistent, make_runner

# Set by scripts/mutation.sh for one module's run: each input batch below is built once
# into this folder and copied into every test that asks for it, instead of once per
# mutant. Only the merge is mutated there; how a batch writes its database is not.
BATCH_CACHE = "ALEMS_MUTATION_BATCH_CACHE"


def _batch(tmp_path, name: str, **kw) -> Path:
    """`make_runner(…, **kw).run()` into tmp_path/name/e.db; the database's path."""
    db = tmp_path / name / "e.db"
    cache = os.environ.get(BATCH_CACHE)
    if not cache:
        make_runner(tmp_path, db_path=db, **kw).run()
        return db
    built = Path(cache) / hashlib.sha256(repr((name, sorted(kw.items()))).encode()).hexdigest()
    if not built.is_dir():
        part = built.with_name(f"{built.name}.{os.getpid()}.part")
        shutil.rmtree(part, ignore_errors=True)
        make_runner(tmp_path, db_path=part / "e.db", **kw).run()
        os.rename(part, built)        # whole or absent, should two runs race
    shutil.copytree(built, db.parent)
    return db


def _by_key(db):
    """(group, task, workflow, rep) -> everything the merge must carry, by content."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    out = {}
    for r in all_runs(db):
        key = (r["group_id"], r["task_name"], r["workflow_type"], r["run_number"])
        phases = [tuple(p) for p in conn.execute(
            "SELECT seq, name, kind, start_ns, end_ns, energy_uj, detail_json FROM phases "
            "WHERE run_id = ? ORDER BY seq", (r["run_id"],))]
        base = conn.execute("SELECT measured_at, measured_t_ns FROM baselines "
                            "WHERE baseline_id = ?", (r["baseline_id"],)).fetchone()
        samples = store_samples.read_run_identity(db.parent / r["samples_path"])
        out[key] = {"run_id": r["run_id"], "exp_id": r["exp_id"], "phases": phases,
                    "baseline": tuple(base), "energy": r["dynamic_energy_uj"],
                    "t": (r["t_start_ns"], r["t_end_ns"]), "ident": samples}
    tax = {}
    for t in conn.execute(
            "SELECT e.group_id, e.task_name, o.run_number, o.linear_run_id, o.agentic_run_id, "
            "o.tax_ratio FROM orchestration_tax_summary o JOIN experiments e USING (exp_id)"):
        tax[(t[0], t[1], t[2])] = (t[3], t[4], t[5])
    conn.close()
    return out, tax


def test_merge_into_an_output_with_runs_rewrites_every_id(tmp_path):
    first = _batch(tmp_path, "first", tasks=["factual_qa"], repetitions=1, group_id="g-first")
    second = _batch(tmp_path, "second", tasks=["gsm8k_basic", "factual_qa"], repetitions=1,
                    group_id="g-second")
    out = tmp_path / "out" / "e.db"
    merge(out, [first])
    merge(out, [second])
    src, src_tax = _by_key(second)
    got, got_tax = _by_key(out)
    # the input's ids all clash with ids the output already used
    assert {v["run_id"] for v in src.values()} == {1, 2, 3, 4}
    assert sorted(v["run_id"] for k, v in got.items() if k[0] == "g-second") == [3, 4, 5, 6]
    assert sorted(v["exp_id"] for k, v in got.items() if k[0] == "g-second") == [2, 2, 3, 3]
    for key, want in src.items():
        have = got[key]
        assert have["phases"] == want["phases"], key          # the run's own phases
        assert have["baseline"] == want["baseline"], key      # its own baseline
        assert (have["energy"], have["t"]) == (want["energy"], want["t"])
        assert have["ident"]["run_id"] == have["run_id"]      # Parquet says the new id
        assert have["ident"]["exp_id"] == have["exp_id"]
        assert have["ident"]["group_id"] == "g-second"
    for (g, task, rep), (lin, ag, ratio) in got_tax.items():
        if g != "g-second":
            continue
        assert got[(g, task, "linear", rep)]["run_id"] == lin
        assert got[(g, task, "agentic", rep)]["run_id"] == ag
        assert ratio == src_tax[(g, task, rep)][2]
    assert len([k for k in got_tax if k[0] == "g-second"]) == 2
    assert_store_consistent(out)
    conn = sqlite3.connect(out)
    status = dict(conn.execute("SELECT group_id, status FROM batch_sessions"))
    assert status == {"g-first": "completed", "g-second": "completed"}
    assert conn.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == sum(
        sqlite3.connect(d).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
        for d in (first, second))


def test_merging_the_same_input_again_is_refused_by_key_not_id(tmp_path):
    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    out = tmp_path / "out" / "e.db"
    counts = merge(out, [a])
    n_base = sqlite3.connect(a).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
    assert n_base >= 1
    assert counts[0].line() == (f"merged {a}: 1 session(s) (g-a), 1 new experiment(s), "
                                "2 run(s), 2 sample file(s), "
                                f"{n_base} baseline(s)")
    copy = tmp_path / "copy" / "e.db"
    copy.parent.mkdir()
    sqlite3.connect(a).backup(dst := sqlite3.connect(copy))
    dst.close()
    for f in (a.parent / "samples").rglob("*.parquet"):
        dest = copy.parent / f.relative_to(a.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.read_bytes())
    with pytest.raises(AlemsError) as ei:
        merge(out, [copy])
    assert str(ei.value) == (f"{copy}: 2 run(s) already in {out}, e.g. group 'g-a' "
                             "factual_qa/scripted linear rep 1 (and 1 more); merging them "
                             "twice would duplicate them; nothing merged")


def test_shards_of_one_group_join_into_one_session(tmp_path):
    from alems.store.merge import _settings_differ

    dbs = [_batch(tmp_path, f"shard{k}", shard=(k, 2)) for k in (1, 2)]
    out = tmp_path / "all" / "e.db"
    counts = merge(out, dbs)
    n_base = [sqlite3.connect(d).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
              for d in dbs]
    assert [c.line() for c in counts] == [
        f"merged {dbs[0]}: 1 session(s) (g-test), 2 new experiment(s), 4 run(s), "
        f"4 sample file(s), {n_base[0]} baseline(s)",
        f"merged {dbs[1]}: 1 session(s) (g-test), 0 new experiment(s), 4 run(s), "
        f"4 sample file(s), {n_base[1]} baseline(s)"]
    conn = sqlite3.connect(out)
    (settings, status), = conn.execute("SELECT settings_json, status FROM batch_sessions")
    assert "shard" not in json.loads(settings) and status == "completed"
    assert json.loads(settings) == {k: v for k, v in json.loads(sqlite3.connect(dbs[0]).execute(
        "SELECT settings_json FROM batch_sessions").fetchone()[0]).items() if k != "shard"}
    assert conn.execute("SELECT task_name, repetitions FROM experiments ORDER BY task_name"
                        ).fetchall() == [("factual_qa", 2), ("gsm8k_basic", 2)]
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8
    both = tmp_path / "both" / "e.db"
    again = merge(both, [out])
    assert again[0].line().startswith(f"merged {out}: 1 session(s) (g-test), 2 new ")
    assert _settings_differ('{"a": 1, "shard": [1, 2]}', '{"a": 1, "shard": [2, 2]}') == []
    assert _settings_differ('{"a": 1}', '{"a": 1, "b": 2}') == ["b"]
    assert _settings_differ(None, '{"a": 1}') == ["a"] and _settings_differ("", None) == []


def test_sessions_with_other_settings_are_refused_and_the_new_output_removed(tmp_path):
    a = _batch(tmp_path, "a", tasks=["gsm8k_basic"], repetitions=1)
    b = _batch(tmp_path, "b", tasks=["gsm8k_basic"], repetitions=1, seed=8)
    out = tmp_path / "out" / "e.db"
    out.parent.mkdir()
    with pytest.raises(AlemsError) as ei:
        merge(out, [a, b])
    assert str(ei.value) == (f"{b}: session 'g-test' was run with other settings than in "
                             f"{a} (seed); nothing merged")
    assert list(out.parent.iterdir()) == []      # the output this merge created went too


def _drop_runs(db, keep) -> None:
    """Delete the runs for which `keep(row)` is false, with their phases and tax rows: what
    a batch that stopped part-way (and was finished in another database) holds."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    gone = [r["run_id"] for r in conn.execute("SELECT * FROM runs") if not keep(r)]
    q = ",".join("?" * len(gone))
    conn.execute(f"DELETE FROM orchestration_tax_summary WHERE linear_run_id IN ({q}) "
                 f"OR agentic_run_id IN ({q})", gone * 2)
    conn.execute(f"DELETE FROM phases WHERE run_id IN ({q})", gone)
    conn.execute(f"DELETE FROM runs WHERE run_id IN ({q})", gone)
    conn.commit()
    conn.close()


def _settings(db) -> dict:
    (text,), = sqlite3.connect(db).execute("SELECT settings_json FROM batch_sessions")
    return json.loads(text)


def test_a_joined_session_is_one_shard_only_when_every_part_is(tmp_path):
    # shard 1/2 run in two parts (one stopped, the rest run elsewhere): still shard 1/2
    a = _batch(tmp_path, "a", shard=(1, 2))
    b = _batch(tmp_path, "b", shard=(1, 2))
    first = min(r["pair_index"] for r in all_runs(a))
    _drop_runs(a, lambda r: r["pair_index"] == first)
    _drop_runs(b, lambda r: r["pair_index"] != first)
    out = tmp_path / "out1" / "e.db"
    merge(out, [a, b])
    assert _settings(out)["shard"] == [1, 2] and len(all_runs(out)) == 4
    # the unsharded batch's part that shard 1/2 did not run, then shard 1/2: no one shard
    c = _batch(tmp_path, "c")
    d = _batch(tmp_path, "d", shard=(1, 2))
    _drop_runs(c, lambda r: r["pair_index"] % 2 == 1)
    out = tmp_path / "out2" / "e.db"
    merge(out, [c, d])
    assert "shard" not in _settings(out) and _settings(out) == _settings(c)
    assert len(all_runs(out)) == 8


def test_the_merge_line_names_every_session_or_none(tmp_path):
    from alems.store import db as store_db

    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    b = _batch(tmp_path, "b", tasks=["factual_qa"], repetitions=1, group_id="g-b")
    both = tmp_path / "both" / "e.db"
    merge(both, [a, b])
    empty = tmp_path / "empty" / "e.db"
    empty.parent.mkdir()
    store_db.connect(empty).close()
    counts = merge(tmp_path / "out" / "e.db", [both, empty])
    n_base = sqlite3.connect(both).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
    assert n_base >= 2
    assert counts[0].line() == (f"merged {both}: 2 session(s) (g-a, g-b), 2 new experiment(s), "
                                f"4 run(s), 4 sample file(s), {n_base} baseline(s)")
    assert counts[1].line() == (f"merged {empty}: 0 session(s) (-), 0 new experiment(s), "
                                "0 run(s), 0 sample file(s), 0 baseline(s)")


def _copy_db(db, folder) -> Path:
    shutil.copytree(db.parent, folder)
    return folder / db.name


def test_a_baseline_in_two_inputs_goes_in_once_and_its_runs_keep_it(tmp_path):
    a = _batch(tmp_path, "a")                  # one batch, its pairs split over two copies
    b = _copy_db(a, tmp_path / "b")
    _drop_runs(a, lambda r: r["pair_index"] % 2 == 0)
    _drop_runs(b, lambda r: r["pair_index"] % 2 == 1)
    want = {**_by_key(a)[0], **_by_key(b)[0]}
    out = tmp_path / "out" / "e.db"
    counts = merge(out, [a, b])
    n_base = sqlite3.connect(a).execute("SELECT COUNT(*) FROM baselines").fetchone()[0]
    assert [c.baselines for c in counts] == [n_base, 0]
    assert sqlite3.connect(out).execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == n_base
    got = _by_key(out)[0]
    assert len(got) == 8
    for key, run in got.items():
        assert run["baseline"] == want[key]["baseline"], key
    for r in all_runs(out):                    # under the run's own group, experiment, id
        assert r["samples_path"] == store_samples.relative_to_db(
            out, store_samples.samples_path(out, r["group_id"], r["exp_id"], r["run_id"]))


def test_arms_of_one_pair_from_different_plans_are_refused(tmp_path):
    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    b = _copy_db(a, tmp_path / "b")
    _drop_runs(a, lambda r: r["workflow_type"] == "linear")
    _drop_runs(b, lambda r: r["workflow_type"] != "linear")
    with sqlite3.connect(b) as conn:
        conn.execute("UPDATE runs SET pair_index = pair_index + 1")
    with pytest.raises(AlemsError) as ei:
        merge(tmp_path / "out" / "e.db", [a, b])
    assert str(ei.value) == (f"{b}: the arms of factual_qa/scripted rep 1 belong to different "
                             "arm sets (pair_index) than in the other databases: they were "
                             "planned differently; nothing merged")


def test_samples_without_an_identity_get_one_and_unreadable_ones_are_refused(tmp_path):
    import pyarrow.parquet as pq

    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    b = _copy_db(a, tmp_path / "b")
    for f in (a.parent / "samples").rglob("*.parquet"):     # as written before the identity
        t = pq.read_table(f)
        meta = {k: v for k, v in t.schema.metadata.items() if k != store_samples.RUN_KEY}
        pq.write_table(t.replace_schema_metadata(meta), f)
    out = tmp_path / "out" / "e.db"
    merge(out, [a])
    for r in all_runs(out):
        ident = store_samples.read_run_identity(out.parent / r["samples_path"])
        assert ident == {"group_id": "g-a", "exp_id": r["exp_id"], "run_id": r["run_id"]}
    bad = sorted((b.parent / "samples").rglob("*.parquet"))[0]
    bad.write_bytes(b"not parquet")
    with pytest.raises(AlemsError) as ei:
        merge(tmp_path / "out2" / "e.db", [b])
    msg = str(ei.value)
    assert msg.startswith(f"cannot read the samples file {bad} (") and msg.endswith(
        "); nothing merged"), msg


def test_refusals_before_anything_is_read(tmp_path):
    from alems.errors import UsageError

    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    c = _batch(tmp_path, "c", tasks=["factual_qa"], repetitions=1, group_id="g-c")
    out = tmp_path / "out.db"
    cases = [([], "give at least one input database: alems merge OUT.db IN.db…"),
             ([c, a, a], f"{a} is given twice"),
             ([out, a], f"{out} is both the output and an input")]
    for inputs, want in cases:
        with pytest.raises(UsageError) as ei:
            merge(out, inputs)
        assert str(ei.value) == want
    shared = tmp_path / "shared"            # another user's link in a sticky shared folder
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "out.db"
    link.symlink_to(tmp_path / "elsewhere.db")
    os.lchown(link, 12345, 12345)
    with pytest.raises(UsageError) as ei:
        merge(link, [a])
    assert str(ei.value) == (f"merge output {link} is a symlink owned by another user (uid "
                             f"12345) in the shared folder {shared}; it is never followed, "
                             "remove it or choose another name")
    assert not (tmp_path / "elsewhere.db").exists()


def test_inputs_that_are_no_a_lems_database_are_named(tmp_path):
    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all " * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    newer = _copy_db(a, tmp_path / "newer")
    from alems.store.db import SCHEMA_VERSION
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_info SET value = ? WHERE key = 'version'",
                     (str(SCHEMA_VERSION + 1),))
    for bad, want in [
            (junk, f"{junk} is not an A-LEMS database (file is not a database)"),
            (other, f"{other} is not an A-LEMS database (no table batch_sessions)"),
            (newer, f"{newer} has schema version {SCHEMA_VERSION + 1}, newer than this A-LEMS "
                    f"({SCHEMA_VERSION}); upgrade alems")]:
        with pytest.raises(AlemsError) as ei:
            merge(tmp_path / "out" / "e.db", [a, bad])
        assert str(ei.value) == want


def test_what_check_refuses_is_named_exactly(tmp_path):
    a = _batch(tmp_path, "a", tasks=["gsm8k_basic"], repetitions=1)
    b = _batch(tmp_path, "b2", tasks=["gsm8k_basic"], repetitions=1, seed=8, temperature=0.5)
    out = tmp_path / "out" / "e.db"
    merge(out, [a])
    with pytest.raises(AlemsError) as ei:                    # against the output's session
        merge(out, [b])
    assert str(ei.value) == (f"{b}: session 'g-test' was run with other settings than in "
                             f"{out} (seed, temperature); nothing merged")
    one = _copy_db(a, tmp_path / "one")                      # one duplicate, in an input
    first = min(r["run_id"] for r in all_runs(one))
    _drop_runs(one, lambda r: r["run_id"] == first)
    with pytest.raises(AlemsError) as ei:
        merge(tmp_path / "out2" / "e.db", [a, one])
    (key,) = [(r["task_name"], r["workflow_type"]) for r in all_runs(one)]
    assert str(ei.value) == (f"{one}: 1 run(s) already in {a}, e.g. group 'g-test' "
                             f"{key[0]}/scripted {key[1]} rep 1; merging them twice would "
                             "duplicate them; nothing merged")
    gone = _copy_db(a, tmp_path / "gone")
    run = all_runs(gone)[0]
    (gone.parent / run["samples_path"]).unlink()
    with pytest.raises(AlemsError) as ei:
        merge(tmp_path / "out3" / "e.db", [gone])
    assert str(ei.value) == (f"{gone}: the samples of run {run['run_id']} "
                             f"({gone.parent / run['samples_path']}) are missing; nothing merged")


def test_a_joined_session_is_completed_only_with_every_planned_run(tmp_path):
    shard = _batch(tmp_path, "s1", shard=(1, 2))             # completed as a shard
    running = _copy_db(shard, tmp_path / "running")
    with sqlite3.connect(running) as conn:
        conn.execute("UPDATE batch_sessions SET status = 'running'")
    for db, want in [(shard, "interrupted"), (running, "running")]:
        out = tmp_path / f"out-{want}" / "e.db"
        merge(out, [db])
        (status,), = sqlite3.connect(out).execute("SELECT status FROM batch_sessions")
        assert status == want


def test_failures_while_merging_are_one_line_and_leave_nothing(tmp_path):
    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    out = tmp_path / "out" / "e.db"
    out.parent.mkdir()
    from alems.store import db as store_db
    conn = store_db.connect(out)
    conn.execute("CREATE TRIGGER no_runs BEFORE INSERT ON runs "
                 "BEGIN SELECT RAISE(ABORT, 'runs are frozen here'); END")
    conn.commit()
    conn.close()
    with pytest.raises(AlemsError) as ei:
        merge(out, [a])
    assert str(ei.value) == f"cannot merge into {out}: runs are frozen here; nothing merged"
    out2 = tmp_path / "out2" / "e.db"
    out2.parent.mkdir()
    store_samples.samples_root(out2).write_text("a file where the samples folder goes")
    with pytest.raises(AlemsError) as ei:
        merge(out2, [a])
    msg = str(ei.value)
    assert msg.startswith(f"cannot write the samples under {store_samples.samples_root(out2)}: ")
    assert msg.endswith("; nothing merged") and "Errno" not in msg, msg



def test_tags_and_notes_go_with_their_batch(tmp_path):
    from alems.store import db as store_db
    from alems.store.labels import label_group

    a = _batch(tmp_path, "a", tasks=["factual_qa"], repetitions=1, group_id="g-a")
    b = _batch(tmp_path, "b", tasks=["factual_qa"], repetitions=1, group_id="g-b")
    for db, group, tags, note in ((a, "g-a", ["warm", "fan-off"], "first try"),
                                  (b, "g-b", ["warm"], None)):
        conn = store_db.connect(db)
        label_group(conn, group, tags, note, [])
        conn.close()
    out = tmp_path / "out" / "e.db"
    merge(out, [a, b])
    query = "SELECT group_id, kind, text, created_at FROM group_labels ORDER BY 1, 2, 3"
    got = sqlite3.connect(out).execute(query).fetchall()
    assert got == sorted(sqlite3.connect(a).execute(query).fetchall()
                         + sqlite3.connect(b).execute(query).fetchall())
    assert [g[:3] for g in got] == [("g-a", "note", "first try"), ("g-a", "tag", "fan-off"),
                                    ("g-a", "tag", "warm"), ("g-b", "tag", "warm")]
