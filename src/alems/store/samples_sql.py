"""`alems query` over `energy_samples`: the full-rate samples as one SQL table, joinable with
`runs`, read in place from the Parquet files — never copied into SQLite.

SQLite (through Python's sqlite3) cannot host a virtual table, so a statement that names
`energy_samples` runs in an in-memory DuckDB instead (the `reports` extra installs it):

- `energy_samples(run_id, t_ns, <domain>_energy_uj…, <domain>_power_w…)`: a view over every
  run's samples file (the columns of all files, NULL where a file lacks one); power is
  d(energy)/dt between consecutive samples of a run (µJ/ns × 1000 = W). A filter on run_id
  opens only that run's file;
- the index's tables the statement names (runs, experiments, …) are read from SQLite into
  DuckDB (they are small); the statement sees a snapshot, and cannot change the database;
- then DuckDB is locked: no file access (read_csv, COPY, ATTACH, INSTALL refused), no
  configuration change, no Python objects by name. Only what was prepared is visible.

The SQL dialect is DuckDB's (STDDEV, MEDIAN, window functions, … all there).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from alems.errors import AlemsError, UsageError
from alems.store import samples as store_samples
from alems.store.reads import QueryStopped, fetch_rows

SAMPLES_TABLE = "energy_samples"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENERGY = re.compile(r"^(\w+)_energy_uj$")
WATCH_S = 0.05   # how often a running statement checks Ctrl-C and --timeout


def mentions_samples(sql: str) -> bool:
    return SAMPLES_TABLE in {w.lower() for w in _WORD.findall(sql)}


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%'")]


_COUNT_STAR = re.compile(r"count\s*\(\s*\*\s*\)", re.IGNORECASE)


def _named_columns(conn: sqlite3.Connection, table: str, sql: str, wanted: set[str]) -> str:
    """The columns of `table` to copy into DuckDB: those the statement names (a 10⁵-run
    study's replies and traces are ~1 GB as Python strings, issue 23), or all of them where
    it may use columns it does not name (a `*` other than COUNT(*), DuckDB's COLUMNS())."""
    names = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    if "*" in _COUNT_STAR.sub("", sql) or "columns" in wanted:
        return "*"
    keep = [n for n in names if n.lower() in wanted] or names[:1]   # COUNT(*): any one
    return ", ".join(f'"{n}"' for n in keep)


def _samples_dataset(conn: sqlite3.Connection, db_path: Path):
    """A pyarrow dataset of every run's samples with its run_id (one file per run), or None
    when no run has a readable samples file."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    files, ids = [], []
    for run_id, rel in conn.execute("SELECT run_id, samples_path FROM runs "
                                    "WHERE samples_path IS NOT NULL ORDER BY run_id"):
        path = store_samples.stored_file(db_path, rel)
        if path is not None and path.is_file():
            files.append(str(path))
            ids.append(int(run_id))
    if not files:
        return None
    fields: dict[str, pa.Field] = {"run_id": pa.field("run_id", pa.int64())}
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:   # pyarrow raises several types for a damaged file
            raise AlemsError(f"cannot read samples {f}: {' '.join(str(exc).split())}") from None
        for field in schema:
            fields.setdefault(field.name, field.with_nullable(True))
    # each file's run_id is its "partition" expression: a filter on run_id skips the others
    return ds.FileSystemDataset.from_paths(
        files, schema=pa.schema(list(fields.values())), format=ds.ParquetFileFormat(),
        filesystem=pafs.LocalFileSystem(), partitions=[ds.field("run_id") == i for i in ids])


def _samples_view(names: list[str]) -> str:
    domains = {n: m.group(1) for n in names if (m := _ENERGY.match(n))}
    energies = list(domains)
    powers = [f'("{n}" - lag("{n}") OVER w) * 1000.0 / (t_ns - lag(t_ns) OVER w) '
              f'AS "{d}_power_w"' for n, d in domains.items()]
    cols = ", ".join(["run_id", "t_ns", *[f'"{n}"' for n in energies], *powers])
    return (f"CREATE VIEW {SAMPLES_TABLE} AS SELECT {cols} FROM _alems_samples "
            "WINDOW w AS (PARTITION BY run_id ORDER BY t_ns)")


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise AlemsError(f"a query of {SAMPLES_TABLE} needs duckdb; install it with "
                         "`pip install 'alems[reports]'`") from None
    return duckdb


@contextlib.contextmanager
def samples_query(db_path: Path, sql: str, *, write: bool = False,
                  timeout_s: float | None = None, stop_requested=lambda: False
                  ) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """(columns, rows) of `sql` over energy_samples and the index's tables it names; the
    same contract as reads.user_query (Ctrl-C: KeyboardInterrupt, --timeout: QueryStopped,
    an SQL error: one AlemsError line)."""
    import pandas as pd

    from alems.store.db import connect_readonly

    if write:
        raise UsageError(f"--write cannot modify {SAMPLES_TABLE} (the Parquet samples are "
                         "read-only); run the statement without it")
    duckdb = _duckdb()
    conn = connect_readonly(db_path)
    duck = duckdb.connect(":memory:")
    try:
        wanted = {w.lower() for w in _WORD.findall(sql)}
        for table in _sqlite_tables(conn):
            if table.lower() in wanted and table.lower() != SAMPLES_TABLE:
                cols = _named_columns(conn, table, sql, wanted)
                duck.register(f"_alems_{table}", pd.read_sql_query(
                    f"SELECT {cols} FROM \"{table}\"", conn))
                duck.execute(f'CREATE VIEW "{table}" AS SELECT * FROM "_alems_{table}"')
        data = _samples_dataset(conn, Path(db_path))
        if data is None:
            raise AlemsError(f"no run in {db_path} has a samples file next to it; "
                             f"{SAMPLES_TABLE} is empty")
        duck.register("_alems_samples", data)
        duck.execute(_samples_view(data.schema.names))
        duck.execute("SET python_enable_replacements = false")
        duck.execute("SET enable_external_access = false")
        duck.execute("SET lock_configuration = true")
        yield _run(duck, sql, timeout_s, stop_requested)
    finally:
        duck.close()
        conn.close()


def _run(duck, sql: str, timeout_s, stop_requested) -> tuple[list[str], Iterator[tuple]]:
    import duckdb

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    why: list[str] = []
    done = threading.Event()

    def watch() -> None:   # DuckDB runs the statement in C; interrupt() stops it there
        while not done.wait(WATCH_S):
            if stop_requested():
                why.append("interrupt")
            elif deadline is not None and time.monotonic() > deadline:
                why.append("timeout")
            if why:
                duck.interrupt()
                return

    def failed(exc: Exception) -> BaseException:
        if why == ["interrupt"]:
            return KeyboardInterrupt()
        if why:
            return QueryStopped(f"query stopped after --timeout {timeout_s:g} s; narrow it "
                                "(WHERE run_id = …, LIMIT) or give a longer --timeout")
        msg = " ".join(str(exc).split())
        return AlemsError(f"SQL error (DuckDB, for {SAMPLES_TABLE}): {msg}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        cur = duck.execute(sql)
    except duckdb.Error as exc:
        done.set()
        raise failed(exc) from None
    columns = [d[0] for d in cur.description or []]

    def rows() -> Iterator[tuple]:
        try:
            yield from fetch_rows(cur, duckdb.Error, failed)
        finally:
            done.set()
    return columns, rows()
