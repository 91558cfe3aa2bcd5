"""The dashboard's reads: a read-only connection and the few fixed queries its pages need.

Every statement here is a constant with `?` parameters; nothing a browser sends is ever
run as SQL. The connection is opened read-only (store.db.connect_readonly), so the dashboard
cannot change the database even by mistake, and may read while `alems batch` writes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from alems.errors import AlemsError
from alems.store import db
from alems.store.db import DatabaseBusy, connect_readonly  # noqa: F401 (DatabaseBusy: 503)

BUSY_TIMEOUT_S = 5.0   # a page waits this long for a writer, then says 503 and retries
# Tables the dashboard reads; a database without them is empty or still being created.
DASHBOARD_TABLES = ("batch_sessions", "experiments", "runs", "phases", "group_labels")


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """`path` opened read-only (store.db.connect_readonly; rows as sqlite3.Row); clear
    errors when it is unusable."""
    path = Path(path).resolve()
    if not path.is_file():
        raise AlemsError(f"no database at {path} yet; record a batch with "
                         "`alems batch --save-db` (or pass --db PATH)")
    conn = connect_readonly(path, check_same_thread=False,
                            busy_timeout_ms=int(BUSY_TIMEOUT_S * 1000))
    try:
        conn.row_factory = sqlite3.Row
        names = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseBusy(f"database {path} is being written right now ({exc}); "
                               "this page retries in a moment") from None
        raise AlemsError(f"cannot open database {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise AlemsError(f"{path} is not an A-LEMS database: {exc}") from None
    missing = [t for t in DASHBOARD_TABLES if t not in names]
    if missing:
        conn.close()
        if len(missing) == len(DASHBOARD_TABLES):
            raise AlemsError(f"database {path} is empty (no A-LEMS tables yet); a batch that "
                             "is starting creates them — record one with `alems batch --save-db`")
        raise AlemsError(f"database {path} lacks table(s) {', '.join(missing)}; it is being "
                         "created, or was not written by this version of A-LEMS")
    found = db.schema_version(conn)
    if found != db.SCHEMA_VERSION:  # pages read columns of this version only
        conn.close()
        raise AlemsError(
            f"database {path} has schema version {found if found is not None else 'unknown'}, "
            f"this A-LEMS reads version {db.SCHEMA_VERSION}: resume any of its batches with "
            "this version (`alems batch --db PATH …`) to upgrade it, or view it with the "
            "A-LEMS version that wrote it")
    bad = _mistyped(conn, path)
    if bad is not None:
        conn.close()
        raise AlemsError(f"database {path} cannot be shown: {bad}; it was edited by hand or "
                         "is damaged (find the row with `alems query`)")
    return conn


_type_checked: dict[str, tuple] = {}   # path -> (db and WAL file stamps) of a clean check
# one check at a time: a page asked for while the warm-up checks the same files waits for
# that check instead of scanning beside it (10⁵ runs: ~2 s a scan, issue 23)
_type_check_lock = threading.Lock()


def files_stamp(path: str | Path) -> tuple:
    """(mtime, size) of the database file and its WAL: any commit changes it, so whatever
    was derived from the database under an equal stamp still holds."""
    path = Path(path).resolve()
    return tuple((s.st_mtime_ns, s.st_size) for s in
                 (_stat(path), _stat(path.with_name(path.name + "-wal"))) if s is not None)


def _mistyped(conn: sqlite3.Connection, path: Path) -> str | None:
    """db.mistyped_value over the pages' tables, re-run only when the files changed."""
    with _type_check_lock:
        stamp = files_stamp(path)
        if _type_checked.get(str(path)) == stamp:
            return None
        bad = db.mistyped_value(conn, DASHBOARD_TABLES)
        if bad is None:
            _type_checked[str(path)] = stamp
        return bad


def _stat(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


def group_ids(conn: sqlite3.Connection) -> list[str]:
    """Every batch session, newest first."""
    return [r[0] for r in conn.execute(
        "SELECT group_id FROM batch_sessions ORDER BY created_at DESC, rowid DESC")]


def group_facts(conn: sqlite3.Connection) -> dict[str, dict]:
    """group_id -> models, providers, tasks and energy sources seen, for the groups page."""
    facts: dict[str, dict] = {}
    for gid, models, providers, tasks in conn.execute(
            "SELECT group_id, GROUP_CONCAT(DISTINCT model), GROUP_CONCAT(DISTINCT provider), "
            "GROUP_CONCAT(DISTINCT task_name) FROM experiments GROUP BY group_id"):
        facts[gid] = {"models": _split(models), "providers": _split(providers),
                      "tasks": _split(tasks), "energy_sources": []}
    for gid, sources in conn.execute(
            "SELECT e.group_id, GROUP_CONCAT(DISTINCT r.energy_source) FROM runs r "
            "JOIN experiments e ON r.exp_id = e.exp_id GROUP BY e.group_id"):
        facts.setdefault(gid, {"models": [], "providers": [], "tasks": []})
        facts[gid]["energy_sources"] = _split(sources)
    return facts


def _split(text: str | None) -> list[str]:
    return sorted({t for t in (text or "").split(",") if t})


RUN_LIST_SQL = """
SELECT r.run_id, e.task_name, e.provider, e.model, r.workflow_type, r.run_number, r.status,
       r.error, r.success, r.started_at, r.duration_ns, r.energy_source, r.pkg_energy_uj,
       r.dynamic_energy_uj, r.avg_power_watts, r.llm_calls, r.tool_calls
FROM runs r JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = ?
ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type
LIMIT ? OFFSET ?
"""

# What the group page's energy figure draws: each completed run's dynamic energy.
RUN_ENERGY_SQL = """
SELECT r.run_id, e.task_name, e.provider, r.workflow_type, r.run_number, r.status,
       r.dynamic_energy_uj
FROM runs r JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = ? AND r.status = 'ok' AND r.dynamic_energy_uj IS NOT NULL
ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type
"""


def group_runs(conn: sqlite3.Connection, group_id: str, limit: int | None = None,
               offset: int = 0) -> list[dict]:
    """One light row per run of the group (no samples, no trace), in the summary's order:
    `limit` rows from `offset` on (all without a limit)."""
    return [dict(r) for r in conn.execute(RUN_LIST_SQL, (group_id, -1 if limit is None
                                                         else limit, offset))]


def group_run_facts(conn: sqlite3.Connection, group_id: str) -> tuple[int, list[str]]:
    """(number of runs, their energy sources sorted) of the group."""
    rows = conn.execute(
        "SELECT r.energy_source, COUNT(*) FROM runs r JOIN experiments e "
        "ON r.exp_id = e.exp_id WHERE e.group_id = ? GROUP BY r.energy_source",
        (group_id,)).fetchall()
    return sum(n for _, n in rows), sorted(src for src, _ in rows if src)


def arm_counts(conn: sqlite3.Connection, group_id: str) -> list[tuple[str, int, int, int]]:
    """(workflow_type, runs, correct, failed) of each arm of the group, by arm: the
    summary's workflow rows added up per arm, by one aggregate."""
    return [tuple(r) for r in conn.execute(
        "SELECT r.workflow_type, COUNT(*), SUM(r.success = 1), SUM(r.status != 'ok') "
        "FROM runs r JOIN experiments e ON r.exp_id = e.exp_id WHERE e.group_id = ? "
        "GROUP BY r.workflow_type ORDER BY r.workflow_type", (group_id,))]


def group_run_energies(conn: sqlite3.Connection, group_id: str) -> list[dict]:
    """run_id, task_name, provider, workflow_type, run_number, status, dynamic_energy_uj of the
    group's completed runs with a dynamic energy (RUN_ENERGY_SQL)."""
    return [dict(r) for r in conn.execute(RUN_ENERGY_SQL, (group_id,))]


def run_detail(conn: sqlite3.Connection, run_id: int) -> dict | None:
    """Every column of one run plus its experiment's group, task, provider and model."""
    row = conn.execute(
        "SELECT r.*, e.group_id, e.task_name, e.provider, e.model FROM runs r "
        "JOIN experiments e ON r.exp_id = e.exp_id WHERE r.run_id = ?", (int(run_id),)).fetchone()
    return None if row is None else dict(row)


def run_phases(conn: sqlite3.Connection, run_id: int) -> list[dict]:
    return [dict(r) for r in conn.execute(
        "SELECT seq, name, kind, parent_seq, start_ns, end_ns, duration_ns, energy_uj, "
        "detail_json FROM phases WHERE run_id = ? ORDER BY seq", (int(run_id),))]


def latest_run_started(conn: sqlite3.Connection, group_id: str) -> dict | None:
    """The newest stored run of the group (what the live page names as 'last run')."""
    row = conn.execute(
        "SELECT r.run_id, e.task_name, e.provider, r.workflow_type, r.run_number, r.status, "
        "r.started_at FROM runs r JOIN experiments e ON r.exp_id = e.exp_id "
        "WHERE e.group_id = ? ORDER BY r.run_id DESC LIMIT 1", (group_id,)).fetchone()
    return None if row is None else dict(row)


def group_stamp(conn: sqlite3.Connection, group_id: str) -> tuple:
    """What changes whenever the group's summary can: its runs (count, newest id, newest
    status), its status and update time, and the baselines its runs use."""
    row = conn.execute(
        "SELECT COUNT(*), MAX(r.run_id), SUM(r.status = 'ok'), MAX(r.baseline_id), "
        "(SELECT status || '|' || COALESCE(updated_at, '') FROM batch_sessions "
        " WHERE group_id = ?) FROM runs r JOIN experiments e ON r.exp_id = e.exp_id "
        "WHERE e.group_id = ?", (group_id, group_id)).fetchone()
    return tuple(row)


def labels(conn: sqlite3.Connection) -> dict[str, dict]:
    """Every group's tags and notes (store.labels.group_labels), read-only."""
    from alems.store.labels import group_labels

    return group_labels(conn)
