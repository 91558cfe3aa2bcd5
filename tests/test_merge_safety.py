"""`alems merge` never damages its inputs (issue 24, items 1-2): it never writes where an
input's files live, its clean-up removes only what it created, the output is all or
nothing, and odd input names (`%41`, `#`, `?`) are those files, never URI syntax."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from alems.errors import AlemsError
from alems.store.merge import merge

from analysis_fixture import build_fixture_db
from test_batch import alems, all_runs, assert_store_consistent
from test_merge import run_shards


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative name -> sha256): what must not change. SQLite's
    -shm/-wal of a WAL database appear when it is read, even read-only: not counted."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


def one_error_line(proc, needle: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("alems: error:") and needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return run_shards(tmp_path_factory.mktemp("shards"))


def copy_shards(shards, dest: Path) -> list[Path]:
    out = []
    for db in shards:
        shutil.copytree(db.parent, dest / db.parent.name)
        out.append(dest / db.parent.name / db.name)
    return out


def test_merge_inside_a_shards_folder_is_refused_and_touches_nothing(tmp_path, shards):
    s1, s2 = copy_shards(shards, tmp_path)
    before = {d: tree_digest(d.parent) for d in (s1, s2)}
    # the shard workflow run inside shard 1's folder: all.db shares shard 1's samples folder
    proc = alems(s1.parent, "merge", "all.db", "../shard2/experiments.db", "experiments.db")
    one_error_line(proc, "share the samples folder")
    assert {d: tree_digest(d.parent) for d in (s1, s2)} == before
    assert not (s1.parent / "all.db").exists()


def test_a_corrupt_input_parquet_is_one_line_and_deletes_nothing(tmp_path, shards):
    s1, s2 = copy_shards(shards, tmp_path)
    victim = sorted((s2.parent / "samples").rglob("*.parquet"))[-1]
    victim.write_bytes(b"PAR1 not really parquet PAR1")
    before = {d: tree_digest(d.parent) for d in (s1, s2)}
    out = tmp_path / "all" / "experiments.db"
    proc = alems(tmp_path, "merge", str(out), str(s1), str(s2))
    one_error_line(proc, str(victim))
    assert {d: tree_digest(d.parent) for d in (s1, s2)} == before, "inputs untouched"
    leftovers = [p for p in out.parent.rglob("*") if p.is_file() and p != out
                 and not p.name.startswith(out.name)]
    assert leftovers == [], "all or nothing: no sample file of the failed merge stays"
    assert not any(p.name.startswith(".samples.") for p in out.parent.iterdir())
    assert not out.exists(), "an output the failed merge created is removed"


def test_a_file_already_at_an_output_sample_path_is_never_replaced(tmp_path, shards):
    s1, = copy_shards(shards[:1], tmp_path)
    out = tmp_path / "all" / "experiments.db"
    build_fixture_db(out, group_id="g-other", tasks=("gsm8k_basic",), reps=1)  # runs of its own
    pristine = tmp_path / "pristine"
    shutil.copytree(out.parent, pristine)
    had = set(tree_digest(out.parent))
    merge(out, [s1])                              # learn where the merge puts a file …
    new = set(tree_digest(out.parent)) - had
    # the last file the merge writes: the ones before it are already in place when it fails
    rel = max(new, key=lambda r: int(r.rsplit("run_id=", 1)[1].split(".")[0]))
    shutil.rmtree(out.parent)
    shutil.copytree(pristine, out.parent)
    stranger = out.parent / rel                   # … and put someone else's file there
    stranger.parent.mkdir(parents=True, exist_ok=True)
    stranger.write_bytes(b"another database's samples")
    before = tree_digest(out.parent)
    folders = sorted(p for p in out.parent.rglob("*") if p.is_dir())
    runs_before = all_runs(out)
    with pytest.raises(AlemsError, match="already there.*nothing merged"):
        merge(out, [s1])
    assert stranger.read_bytes() == b"another database's samples"
    assert all_runs(out) == runs_before, "the output as it was"
    assert tree_digest(out.parent) == before, "files it had placed are gone again"
    assert sorted(p for p in out.parent.rglob("*") if p.is_dir()) == folders


def test_a_merge_into_a_fresh_folder_still_works(tmp_path, shards):
    s1, s2 = copy_shards(shards, tmp_path)
    before = {d: tree_digest(d.parent) for d in (s1, s2)}
    out = tmp_path / "merged" / "all.db"
    counts = merge(out, [s1, s2])
    assert sum(c.runs for c in counts) == len(all_runs(out)) == 8
    assert_store_consistent(out)
    assert {d: tree_digest(d.parent) for d in (s1, s2)} == before
    assert not any(p.name.startswith(".samples.") for p in out.parent.iterdir())


@pytest.mark.parametrize("name", ["db%41.db", "a#b.db", "q?mode=rw.db", "sp ace&x=1.db",
                                  "pct%25%.db", "semi;colon'quote\".db"])
def test_odd_input_names_are_those_files(tmp_path, shards, name):
    """`db%41.db` once merged `dbA.db`; `a#b.db` opened `a` read-write, leaving it empty."""
    s1, = copy_shards(shards[:1], tmp_path)
    odd = s1.with_name(name)
    s1.rename(odd)
    decoy = sqlite3.connect(s1.with_name("dbA.db"))      # what `%41` would decode to
    decoy.execute("CREATE TABLE t (x)")
    decoy.close()
    expected = len(all_runs(odd))
    listing = set(p.name for p in s1.parent.iterdir())
    out = tmp_path / "all" / "experiments.db"
    counts = merge(out, [odd])
    assert counts[0].runs == len(all_runs(out)) == expected > 0
    created = set(p.name for p in s1.parent.iterdir()) - listing
    assert created <= {name + "-wal", name + "-shm"}, "nothing but SQLite's own files beside it"
