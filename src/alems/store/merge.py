"""`alems merge OUT.db IN.db…`: join databases and their sample folders into one.

For shards of one batch (`alems batch --shard K/N --group-id G`, each on its own machine)
or any databases of A-LEMS. Sessions with the same group id become one session (their
settings must agree, apart from the shard); experiments with the same (group, task,
provider) become one; runs, phases and baselines are copied with new ids, each run's
Parquet file is rewritten under OUT's samples folder with its new ids in its metadata, each
run keeps its arm set (`runs.pair_index`, derived for inputs older than that column; arms
of one pair that name different sets are refused), and the pairs' tax rows are computed as
a batch computes them.

A run that is already in OUT or in an earlier input (same group, task, provider, workflow,
repetition) is a duplicate: the merge refuses it and names it, before anything is written.
The whole merge is one transaction: it all goes in, or nothing does. Its sample files are
written into a staging folder of its own (`merge_staging.Staging`) and moved into place,
never over an existing file, just before the commit; a failure removes only what the
merge created.
An output whose samples folder is an input's is refused: the merge never writes where an
input's files live.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alems.atomic_io import write_parquet_atomic
from alems.errors import AlemsError, UsageError
from alems.atomic_io import refuse_untrusted_link
from alems.store.merge_staging import Staging, refuse_shared_samples
from alems.store import db as store_db
from alems.store import runs as store_runs
from alems.store import samples as store_samples
from alems import arrowfile

REQUIRED_TABLES = ("batch_sessions", "experiments", "runs", "phases", "baselines")
SHARD_KEY = "shard"      # the one setting in which sessions to be joined may differ


@dataclass
class MergeCount:
    path: Path
    sessions: list = field(default_factory=list)
    experiments: int = 0
    runs: int = 0
    baselines: int = 0
    samples: int = 0

    def line(self) -> str:
        return (f"merged {self.path}: {len(self.sessions)} session(s) "
                f"({', '.join(self.sessions) or '-'}), {self.experiments} new experiment(s), "
                f"{self.runs} run(s), {self.samples} sample file(s), "
                f"{self.baselines} baseline(s)")


def _open_input(path: Path) -> sqlite3.Connection:
    conn = store_db.connect_readonly(path)
    try:
        conn.row_factory = sqlite3.Row
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise AlemsError(f"{path} is not an A-LEMS database ({exc})") from None
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        conn.close()
        raise AlemsError(f"{path} is not an A-LEMS database (no table {missing[0]})")
    version = store_db.schema_version(conn)
    if version is not None and version > store_db.SCHEMA_VERSION:
        conn.close()
        raise AlemsError(f"{path} has schema version {version}, newer than this A-LEMS "
                         f"({store_db.SCHEMA_VERSION}); upgrade alems")
    return conn


def _run_keys(conn) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT r.*, e.group_id AS m_group, e.task_name AS m_task, e.provider AS m_provider "
        "FROM runs r JOIN experiments e ON r.exp_id = e.exp_id ORDER BY r.run_id").fetchall()


def _key(r) -> tuple:
    return (r["m_group"], r["m_task"], r["m_provider"], r["workflow_type"], r["run_number"])


def _settings_differ(a: str, b: str) -> list[str]:
    x, y = json.loads(a or "{}"), json.loads(b or "{}")
    return sorted(k for k in set(x) | set(y) if k != SHARD_KEY and x.get(k) != y.get(k))


def _check(out, out_path: Path, inputs: list[tuple[Path, sqlite3.Connection]]) -> None:
    """Refuse duplicates, sessions that disagree and missing sample files (nothing written)."""
    seen = {_key(r): out_path for r in _run_keys(out)}
    sessions = {r[0]: (r[1], out_path) for r in
                out.execute("SELECT group_id, settings_json FROM batch_sessions")}
    for path, conn in inputs:
        for s in conn.execute("SELECT group_id, settings_json FROM batch_sessions"):
            if s["group_id"] in sessions:
                diff = _settings_differ(sessions[s["group_id"]][0], s["settings_json"])
                if diff:
                    raise AlemsError(f"{path}: session {s['group_id']!r} was run with other "
                                     f"settings than in {sessions[s['group_id']][1]} "
                                     f"({', '.join(diff)}); nothing merged")
            else:
                sessions[s["group_id"]] = (s["settings_json"], path)
        dups = []
        for r in _run_keys(conn):
            k = _key(r)
            if k in seen:
                dups.append((k, seen[k]))
            else:
                seen[k] = path
            if r["samples_path"] and not (path.parent / r["samples_path"]).is_file():
                raise AlemsError(f"{path}: the samples of run {r['run_id']} "
                                 f"({path.parent / r['samples_path']}) are missing; nothing merged")
        if dups:
            (g, t, p, w, n), where = dups[0]
            more = f" (and {len(dups) - 1} more)" if len(dups) > 1 else ""
            raise AlemsError(f"{path}: {len(dups)} run(s) already in {where}, e.g. group "
                             f"{g!r} {t}/{p} {w} rep {n}{more}; merging them twice would "
                             "duplicate them; nothing merged")


_MERGED_TABLES = ("batch_sessions", "experiments", "baselines", "runs", "phases")


def _insert(out, cols: dict[str, set[str]], table: str, row: sqlite3.Row, drop: tuple = (),
            **values) -> int:
    """`row` of an input into the output's `table`: the columns both have, less `drop`,
    plus `values`. `cols`: the output's columns per table, read once per merge."""
    have = cols[table]
    data = {k: row[k] for k in row.keys() if k in have and k not in drop}  # noqa: SIM118 (a Row iterates values)
    data.update(values)
    return store_runs.insert_row(out, table, data, have)


def _merge_one(out, out_path: Path, path: Path, conn, stage: Staging) -> MergeCount:
    cols = {t: store_runs.table_columns(out, t) for t in _MERGED_TABLES}
    count = MergeCount(path)
    for s in conn.execute("SELECT * FROM batch_sessions ORDER BY created_at"):
        count.sessions.append(s["group_id"])
        old = out.execute("SELECT settings_json FROM batch_sessions WHERE group_id = ?",
                          (s["group_id"],)).fetchone()
        if old is None:
            _insert(out, cols, "batch_sessions", s)
        elif json.loads(old[0] or "{}").get(SHARD_KEY) != json.loads(
                s["settings_json"] or "{}").get(SHARD_KEY):
            settings = json.loads(old[0])
            settings.pop(SHARD_KEY, None)      # the joined session is no single shard
            out.execute("UPDATE batch_sessions SET settings_json = ? WHERE group_id = ?",
                        (json.dumps(settings, sort_keys=True), s["group_id"]))
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                    "name = 'group_labels'").fetchone():   # older inputs have no labels
        for lab in conn.execute("SELECT * FROM group_labels ORDER BY label_id"):
            out.execute("INSERT OR IGNORE INTO group_labels (group_id, kind, text, created_at) "
                        "VALUES (?, ?, ?, ?)", (lab["group_id"], lab["kind"], lab["text"],
                                                lab["created_at"]))
    exp_map = {}
    for e in conn.execute("SELECT * FROM experiments ORDER BY exp_id"):
        found = out.execute("SELECT exp_id FROM experiments WHERE group_id = ? AND "
                            "task_name = ? AND provider = ?",
                            (e["group_id"], e["task_name"], e["provider"])).fetchone()
        if found:
            exp_map[e["exp_id"]] = found[0]
            out.execute("UPDATE experiments SET repetitions = MAX(repetitions, ?) "
                        "WHERE exp_id = ?", (e["repetitions"], found[0]))
        else:
            exp_map[e["exp_id"]] = _insert(out, cols, "experiments", e, drop=("exp_id",))
            count.experiments += 1
    base_map = {}
    for b in conn.execute("SELECT * FROM baselines ORDER BY baseline_id"):
        found = out.execute("SELECT baseline_id FROM baselines WHERE measured_at = ? AND "
                            "energy_source = ? AND host IS ? AND measured_t_ns IS ?",
                            (b["measured_at"], b["energy_source"], b["host"],
                             b["measured_t_ns"])).fetchone()
        if found:
            base_map[b["baseline_id"]] = found[0]
        else:
            base_map[b["baseline_id"]] = _insert(out, cols, "baselines", b, drop=("baseline_id",))
            count.baselines += 1
    pairs = set()
    for r in _run_keys(conn):
        run_id = store_runs.next_run_id(out)
        exp_id = exp_map[r["exp_id"]]
        values = {"run_id": run_id, "exp_id": exp_id,
                  "baseline_id": base_map.get(r["baseline_id"])}
        if r["samples_path"]:
            dest = store_samples.samples_path(out_path, r["m_group"], exp_id, run_id)
            _copy_samples(path.parent / r["samples_path"], stage.path_for(dest), r["m_group"],
                          exp_id, run_id)
            values["samples_path"] = store_samples.relative_to_db(out_path, dest)
            count.samples += 1
        _insert(out, cols, "runs", r, drop=("m_group", "m_task", "m_provider"), **values)
        for ph in conn.execute("SELECT * FROM phases WHERE run_id = ? ORDER BY seq",
                               (r["run_id"],)):
            _insert(out, cols, "phases", ph, drop=("phase_id",), run_id=run_id)
        pairs.add((exp_id, r["run_number"]))
        count.runs += 1
    store_runs.derive_pair_index(out)   # an input from before runs.pair_index
    _check_arm_sets(out, path)
    for exp_id, run_number in sorted(pairs):
        store_runs.insert_tax_if_paired(out, exp_id, run_number)
    return count


def _check_arm_sets(out, path: Path) -> None:
    """The arms of one pair (experiment, repetition) must name one arm set (pair_index):
    inputs that disagree come from different plans, and joining them would pair runs of
    different plans."""
    bad = out.execute("SELECT e.task_name, e.provider, r.run_number FROM runs r "
                      "JOIN experiments e USING (exp_id) WHERE r.pair_index IS NOT NULL "
                      "GROUP BY r.exp_id, r.run_number HAVING COUNT(DISTINCT r.pair_index) > 1"
                      ).fetchone()
    if bad is not None:
        raise AlemsError(f"{path}: the arms of {bad[0]}/{bad[1]} rep {bad[2]} belong to "
                         "different arm sets (pair_index) than in the other databases: they "
                         "were planned differently; nothing merged")


def _copy_samples(src: Path, dest: Path, group_id: str, exp_id: int, run_id: int) -> None:
    try:
        table = pq.ParquetFile(arrowfile.source(src)).read()
    except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid is a ValueError
        raise AlemsError(f"cannot read the samples file {src} ({exc}); nothing merged") \
            from None
    meta = dict(table.schema.metadata or {})
    ident = json.loads(meta.get(store_samples.RUN_KEY, b"{}"))
    ident.update(group_id=group_id, exp_id=exp_id, run_id=run_id)
    meta[store_samples.RUN_KEY] = json.dumps(ident, default=str).encode()
    write_parquet_atomic(table.replace_schema_metadata(meta), dest)


def _close_sessions(out, group_ids) -> None:
    """A joined session is completed when every planned run is there."""
    for g in group_ids:
        order, status = out.execute("SELECT order_json, status FROM batch_sessions "
                                    "WHERE group_id = ?", (g,)).fetchone()
        planned = len(json.loads(order or "[]"))
        have = out.execute("SELECT COUNT(*) FROM runs r JOIN experiments e USING (exp_id) "
                           "WHERE e.group_id = ?", (g,)).fetchone()[0]
        new = "completed" if planned and have >= planned else (
            "interrupted" if status == "completed" else status)
        out.execute("UPDATE batch_sessions SET status = ?, updated_at = ? WHERE group_id = ?",
                    (new, store_runs.utc_now_iso(), g))


def merge(out_path, in_paths) -> list[MergeCount]:
    """Merge `in_paths` into `out_path` (created if absent); one MergeCount per input."""
    out_path = Path(out_path)
    paths = [Path(p) for p in in_paths]
    if not paths:
        raise UsageError("give at least one input database: alems merge OUT.db IN.db…")
    refuse_untrusted_link(out_path, "merge output", UsageError)
    real = [os.path.realpath(p) for p in paths]
    if os.path.realpath(out_path) in real:
        raise UsageError(f"{out_path} is both the output and an input")
    if len(set(real)) != len(real):
        dup = next(p for p, r in zip(paths, real, strict=True) if real.count(r) > 1)
        raise UsageError(f"{dup} is given twice")
    inputs: list[tuple[Path, sqlite3.Connection]] = []
    try:
        for p in paths:
            inputs.append((p, _open_input(p)))
        refuse_shared_samples(out_path, paths)
    except BaseException:
        for _, conn in inputs:
            conn.close()
        raise
    new_out = not os.path.lexists(out_path)
    out = store_db.connect(out_path)
    out.row_factory = sqlite3.Row
    stage = Staging(out_path)
    try:
        _check(out, out_path, inputs)
        counts = []
        with store_db.transaction(out):
            for path, conn in inputs:
                counts.append(_merge_one(out, out_path, path, conn, stage))
            _close_sessions(out, {g for c in counts for g in c.sessions})
            stage.publish()        # rows roll back if a file cannot go in place
        stage.done()
        return counts
    except BaseException as exc:
        stage.abandon()
        if new_out:             # nothing merged: an output this merge created goes too
            out.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{out_path}{suffix}")
        if isinstance(exc, sqlite3.Error):
            raise AlemsError(f"cannot merge into {out_path}: {exc}; nothing merged") from None
        if isinstance(exc, OSError):
            raise AlemsError("cannot write the samples under "
                             f"{store_samples.samples_root(out_path)}: "
                             f"{exc.strerror or exc}; nothing merged") from None
        raise
    finally:
        out.close()
        for _, conn in inputs:
            conn.close()
