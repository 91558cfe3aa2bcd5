"""Reads of the SQLite index for analysis and `alems query`: every SELECT they need, by name.

Functions that return tables give pandas DataFrames (pandas is imported on first use: it
comes with the `reports` extra); the others return sqlite3 rows or plain values.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

from alems.errors import AlemsError

# The tables an analysis command needs; an older or foreign database lacks some.
ANALYSIS_TABLES = frozenset({"batch_sessions", "experiments", "runs", "phases",
                             "orchestration_tax_summary"})
# Shown in `alems query --help`.
EXAMPLE_QUERY = "SELECT * FROM runs LIMIT 5"

# A run's free text (the reply, the extracted and expected answers, the trace): kilobytes
# a run that the statistics never read; `runs_frame(texts=False)` leaves them out.
FREE_TEXT_COLUMNS = ("response", "trace_json", "answer", "expected")

_RUNS_SQL = """
SELECT {run_columns}, e.group_id, e.task_name, e.provider, e.model, e.temperature, e.max_tokens,
       e.repetitions AS planned_repetitions, e.seed AS exp_seed, e.country AS exp_country,
       e.created_at AS exp_created_at,
       b.measured_at AS baseline_measured_at, b.energy_source AS baseline_energy_source,
       b.pkg_power_w_mean AS baseline_pkg_power_w_mean,
       b.pkg_power_w_std AS baseline_pkg_power_w_std, b.repetitions AS baseline_repetitions,
       b.duration_s AS baseline_duration_s
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
LEFT JOIN baselines b ON r.baseline_id = b.baseline_id
WHERE e.group_id = ?
ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type
"""

_PHASES_SQL = """
SELECT p.*, r.exp_id, r.workflow_type, r.status AS run_status
FROM phases p JOIN runs r ON p.run_id = r.run_id
JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = ? ORDER BY p.run_id, p.seq
"""

# runs joined with their experiment, baseline and tax-pair rows (`alems export`): tax_* is
# the spec's agentic pair (orchestration_tax_summary); arm_pair_* is any non-linear run's
# own pair, against the linear run of its repetition (react and custom arms included)
_EXPORT_SQL = """
SELECT e.group_id, e.task_name, e.provider, e.model, e.workflows AS exp_workflows,
       e.repetitions AS exp_repetitions, e.seed AS exp_seed, e.temperature, e.max_tokens,
       e.country AS exp_country, e.created_at AS exp_created_at,
       r.*,
       b.measured_at AS baseline_measured_at, b.pkg_power_w_mean AS baseline_pkg_power_w_mean,
       b.pkg_power_w_std AS baseline_pkg_power_w_std, b.repetitions AS baseline_repetitions,
       ots.pair_id AS tax_pair_id, ots.tax_ratio AS tax_ratio, ots.tax_percent AS tax_percent,
       ots.linear_run_id AS tax_linear_run_id, ots.agentic_run_id AS tax_agentic_run_id,
       ots.linear_dynamic_energy_uj AS tax_linear_dynamic_energy_uj,
       ots.agentic_dynamic_energy_uj AS tax_agentic_dynamic_energy_uj,
       lin.run_id AS arm_pair_linear_run_id,
       CASE WHEN r.status = 'ok' AND lin.status = 'ok' AND lin.dynamic_energy_uj > 0
            THEN r.dynamic_energy_uj / lin.dynamic_energy_uj END AS arm_pair_tax_ratio,
       CASE WHEN r.status = 'ok' AND lin.status = 'ok' AND lin.dynamic_energy_uj > 0
            THEN (r.dynamic_energy_uj - lin.dynamic_energy_uj) / lin.dynamic_energy_uj * 100.0
            END AS arm_pair_tax_percent
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
LEFT JOIN baselines b ON r.baseline_id = b.baseline_id
LEFT JOIN orchestration_tax_summary ots
       ON ots.linear_run_id = r.run_id OR ots.agentic_run_id = r.run_id
LEFT JOIN runs lin
       ON r.workflow_type != 'linear' AND lin.exp_id = r.exp_id
       AND lin.run_number = r.run_number AND lin.workflow_type = 'linear'
WHERE e.group_id = ?
ORDER BY r.exp_id, r.run_number, r.workflow_type
"""

_PROGRESS_SQL = """
SELECT r.workflow_type, COUNT(*), SUM(r.status != 'ok'), SUM(r.success = 1),
       SUM(r.success = 0), AVG(r.duration_ns), SUM(r.duration_ns),
       MIN(r.started_at), MAX(r.started_at)
FROM runs r JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = ? AND r.run_number >= ? GROUP BY r.workflow_type
"""


def _frame(conn: sqlite3.Connection, sql: str, params: tuple):
    import pandas as pd

    return pd.read_sql_query(sql, conn, params=params)


# ------------------------------------------------------------------ tables and batches
def table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the database's tables (raises sqlite3.DatabaseError if it is no database)."""
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def latest_group_row(conn: sqlite3.Connection) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM batch_sessions ORDER BY created_at DESC, rowid DESC "
                        "LIMIT 1").fetchone()


def latest_group_with_runs_row(conn: sqlite3.Connection) -> sqlite3.Row | None:
    """The newest batch session that has at least one stored run."""
    return conn.execute(
        "SELECT s.* FROM batch_sessions s WHERE EXISTS (SELECT 1 FROM runs r JOIN experiments e "
        "ON e.exp_id = r.exp_id WHERE e.group_id = s.group_id) "
        "ORDER BY s.created_at DESC, s.rowid DESC LIMIT 1").fetchone()


def group_row(conn: sqlite3.Connection, group_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM batch_sessions WHERE group_id = ?", (group_id,)).fetchone()


def recent_group_ids(conn: sqlite3.Connection, limit: int = 5) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT group_id FROM batch_sessions ORDER BY created_at DESC LIMIT ?", (limit,))]


def running_group_id(conn: sqlite3.Connection) -> str | None:
    """The newest batch whose status is still 'running', if any."""
    row = conn.execute("SELECT group_id FROM batch_sessions WHERE status = 'running' "
                       "ORDER BY created_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def count_groups(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM batch_sessions").fetchone()[0]


def baseline_row(conn: sqlite3.Connection, baseline_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM baselines WHERE baseline_id = ?",
                        (baseline_id,)).fetchone()


def group_of_experiment(conn: sqlite3.Connection, exp_id: int) -> str | None:
    row = conn.execute("SELECT group_id FROM experiments WHERE exp_id = ?", (exp_id,)).fetchone()
    return None if row is None else row[0]


# ------------------------------------------------------------------ one batch's rows
def runs_frame(conn: sqlite3.Connection, group_id: str, *, texts: bool = True):
    """The group's runs with their experiment and baseline columns (one row per run);
    without `texts`, less FREE_TEXT_COLUMNS (most of a run's bytes: `alems summary` at
    10⁵ runs held them all in memory for nothing, issue 23)."""
    if texts:
        columns = "r.*"
    else:
        names = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        columns = ", ".join(f"r.{n}" for n in names if n not in FREE_TEXT_COLUMNS)
    return _frame(conn, _RUNS_SQL.format(run_columns=columns), (group_id,))


def phases_frame(conn: sqlite3.Connection, group_id: str, *, details: bool = True):
    """The group's phases with their run's exp_id, workflow_type and run_status; without
    `details`, less detail_json (tokens, tool input and output: what shares never read)."""
    sql = _PHASES_SQL
    if not details:
        names = [r[1] for r in conn.execute("PRAGMA table_info(phases)")]
        sql = sql.replace("p.*", ", ".join(f"p.{n}" for n in names if n != "detail_json"))
    return _frame(conn, sql, (group_id,))


def export_runs_frame(conn: sqlite3.Connection, group_id: str):
    """The group's runs joined with experiment, baseline and tax-pair columns."""
    return _frame(conn, _EXPORT_SQL, (group_id,))


# Rows per DataFrame when the export streams (a few MB each, whatever the study's size).
EXPORT_BATCH_ROWS = 1000


def export_runs_batches(conn: sqlite3.Connection, group_id: str,
                        batch_rows: int | None = None):
    """`export_runs_frame` in DataFrames of at most `batch_rows` rows (typed_batches):
    written one after the other they make the very file the whole frame makes."""
    return typed_batches(conn, _EXPORT_SQL, (group_id,), batch_rows or EXPORT_BATCH_ROWS)


def typed_batches(conn: sqlite3.Connection, sql: str, params: tuple, batch_rows: int):
    """The rows of `sql` in DataFrames of at most `batch_rows` rows, each column with the
    dtype pandas gives it in the whole result (text: object; integers with a NULL anywhere,
    or any real: float64; integers only: int64; all NULL: object), learnt first by one
    aggregate over the result. Returns (column -> 'text' | 'float64' | 'int64' | 'null'
    (every value NULL), an iterator of the DataFrames: none for an empty result)."""
    import pandas as pd

    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    stats = ", ".join(f"SUM(typeof(c{i}) = 'text'), SUM(typeof(c{i}) = 'real'), "
                      f"SUM(c{i} IS NULL)" for i in range(len(names)))
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    row = conn.execute(f"WITH x({aliases}) AS ({sql}) SELECT {stats}, COUNT(*) FROM x",
                       params).fetchone()
    total = row[-1]
    kinds = {}
    for i, name in enumerate(names):
        text, real, null = (row[3 * i] or 0, row[3 * i + 1] or 0, row[3 * i + 2] or 0)
        kinds[name] = ("null" if null == total else "text" if text else
                       "float64" if real or null else "int64")
    dtypes = {n: object if k in ("null", "text") else k for n, k in kinds.items()}

    def frames():
        while rows := cur.fetchmany(batch_rows):
            yield pd.DataFrame([tuple(r) for r in rows], columns=names).astype(dtypes)
    return kinds, frames()


def run_sample_paths(conn: sqlite3.Connection, group_id: str) -> list[tuple[int, int, str | None]]:
    """(run_id, exp_id, samples_path) of the group's runs, by run_id."""
    return [tuple(r) for r in conn.execute(
        "SELECT r.run_id, r.exp_id, r.samples_path FROM runs r JOIN experiments e "
        "ON r.exp_id = e.exp_id WHERE e.group_id = ? ORDER BY r.run_id", (group_id,))]


def planned_workflows(conn: sqlite3.Connection,
                      group_id: str) -> list[tuple[str | None, int | None]]:
    """(comma-separated workflows, repetitions) of each experiment of the group."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT workflows, repetitions FROM experiments WHERE group_id = ? ORDER BY exp_id",
        (group_id,))]


def workflow_progress(conn: sqlite3.Connection, group_id: str,
                      first_rep: int = 1) -> list[tuple]:
    """Per workflow of the group, over repetitions from `first_rep` on: (workflow, runs,
    failed, correct, wrong, mean duration_ns, summed duration_ns, first started_at, last
    started_at)."""
    return [tuple(r) for r in conn.execute(_PROGRESS_SQL, (group_id, first_rep))]


def group_workflows(conn: sqlite3.Connection, group_id: str) -> set[str]:
    """The arms the group has runs of (ok or failed)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT r.workflow_type FROM runs r JOIN experiments e ON r.exp_id = e.exp_id "
        "WHERE e.group_id = ?", (group_id,))}


def run_energies(conn: sqlite3.Connection, group_id: str) -> list[tuple]:
    """(task, provider, run_number, workflow_type, dynamic energy J) of the group's runs that
    completed with a dynamic energy: what the headline tax pairs up."""
    return conn.execute(
        "SELECT e.task_name, e.provider, r.run_number, r.workflow_type, "
        "r.dynamic_energy_uj / 1e6 FROM runs r JOIN experiments e ON r.exp_id = e.exp_id "
        "WHERE e.group_id = ? AND r.status = 'ok' AND r.dynamic_energy_uj IS NOT NULL",
        (group_id,)).fetchall()


def run_device_energies(conn: sqlite3.Connection, group_id: str) -> list[tuple]:
    """(task, provider, run_number, workflow_type, CPU dynamic µJ, GPU dynamic µJ) of the
    group's runs that completed with a CPU dynamic energy (the runs `alems summary` pairs):
    what the all-devices tax pairs up (GPU NULL: not measured)."""
    return conn.execute(
        "SELECT e.task_name, e.provider, r.run_number, r.workflow_type, r.dynamic_energy_uj, "
        "r.gpu_dynamic_energy_uj FROM runs r JOIN experiments e ON r.exp_id = e.exp_id "
        "WHERE e.group_id = ? AND r.status = 'ok' AND r.dynamic_energy_uj IS NOT NULL",
        (group_id,)).fetchall()


def run_conditions(conn: sqlite3.Connection, group_id: str) -> list[dict]:
    """task_name, provider, workflow_type, run_number, quiet, not_quiet_reason and
    energy_source of the group's runs, in the order of `runs_frame` (the batch's closing
    lines say what `alems summary` says of them without pandas)."""
    cur = conn.execute(
        "SELECT e.task_name, e.provider, r.workflow_type, r.run_number, r.quiet, "
        "r.not_quiet_reason, r.energy_source FROM runs r JOIN experiments e "
        "ON r.exp_id = e.exp_id WHERE e.group_id = ? "
        "ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type", (group_id,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# ------------------------------------------------------------------ `alems query`
# Without --write a query runs on a read-only connection under an authorizer that allows
# reads only: no ATTACH/DETACH (VACUUM INTO attaches its target), no PRAGMA that sets
# anything, no transaction control. These PRAGMAs only report.
_PRAGMAS_WITH_ARGUMENT = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"})
_PRAGMAS_QUERY_ONLY = frozenset({
    "database_list", "collation_list", "function_list", "pragma_list", "module_list",
    "compile_options", "user_version", "schema_version", "application_id", "journal_mode",
    "page_count", "page_size", "freelist_count", "encoding", "data_version", "foreign_keys"})
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                           getattr(sqlite3, "SQLITE_RECURSIVE", 33)})
# How often (SQLite virtual-machine steps) the stop/timeout check runs.
PROGRESS_STEPS = 10_000


def read_only_authorizer(action, arg1, arg2, _db, _trigger):
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _PRAGMAS_WITH_ARGUMENT or (name in _PRAGMAS_QUERY_ONLY and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class QueryStopped(AlemsError):
    """The query was stopped by its --timeout."""


# Rows fetched from SQLite at a time while streaming a user query's result.
FETCH_ROWS = 1000


def fetch_rows(cur, errors, failed) -> Iterator[tuple]:
    """A query's rows, fetched FETCH_ROWS at a time (any result in bounded memory); an
    error of kind `errors` while fetching is raised as `failed(exc)`."""
    while True:
        try:
            chunk = cur.fetchmany(FETCH_ROWS)
        except errors as exc:
            raise failed(exc) from None
        if not chunk:
            return
        yield from chunk


def run_user_query(conn: sqlite3.Connection, sql: str, **kw) -> tuple[list[str], list[tuple]]:
    """`user_query`, all rows in a list (for small results)."""
    with user_query(conn, sql, **kw) as (columns, rows):
        return columns, list(rows)


def _user_query(conn: sqlite3.Connection, sql: str, *, write: bool = False,
                timeout_s: float | None = None, stop_requested=lambda: False
                ) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """Run one statement of the user's; yields (column names, an iterator of the rows,
    fetched FETCH_ROWS at a time: a result of any size in bounded memory). Read-only
    unless `write` (the caller opens a read-only connection; the authorizer refuses the
    rest). The statement is abandoned when `stop_requested()` turns true (Ctrl-C:
    KeyboardInterrupt) or after `timeout_s` (QueryStopped), also while its rows are read.
    SQLite's complaint becomes one AlemsError line."""
    if not write:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(read_only_authorizer)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    why: list[str] = []

    def check() -> int:
        if stop_requested():
            why.append("interrupt")
        elif deadline is not None and time.monotonic() > deadline:
            why.append("timeout")
        return 1 if why else 0

    def failed(exc: sqlite3.Error) -> BaseException:
        if isinstance(exc, sqlite3.Warning):  # e.g. more than one statement
            return AlemsError(f"query rejected: {exc}")
        if why == ["interrupt"]:
            return KeyboardInterrupt()
        if why:
            return QueryStopped(f"query stopped after --timeout {timeout_s:g} s; narrow it "
                                "(WHERE, LIMIT) or give a longer --timeout")
        msg = " ".join(str(exc).split())
        if not write and ("authoriz" in msg or "readonly" in
                          msg.replace("-", "").replace(" ", "").lower()):
            msg += (" (queries are read-only: no ATTACH, VACUUM INTO or setting PRAGMAs; "
                    "pass --write to modify the database)")
        return AlemsError(f"SQL error: {msg}")

    conn.set_progress_handler(check, PROGRESS_STEPS)
    try:
        try:
            cur = conn.execute(sql)
        except sqlite3.Error as exc:
            raise failed(exc) from None
        yield [d[0] for d in cur.description or []], fetch_rows(cur, sqlite3.Error, failed)
        if write:
            try:
                conn.commit()
            except sqlite3.Error as exc:
                raise failed(exc) from None
    finally:
        conn.set_progress_handler(None, 0)
        if not write:
            conn.set_authorizer(None)


# Wrapped here, not decorated: mutation testing (docs/TESTING.md) mutates only undecorated
# functions, and this is the query gate's body.
user_query = contextlib.contextmanager(_user_query)
