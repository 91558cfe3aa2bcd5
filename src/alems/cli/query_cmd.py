"""`alems query "SQL" [--db PATH] [--format table|csv|json]`: SQL on the index.

The connection is `store.db.connect`, so STDDEV, VARIANCE, SQRT, MEDIAN … work. A missing
database is one error line (a query never creates an empty one); a bad query gives SQLite's
own message in one line, exit 1. Read-only unless --write: the database is opened
read-only and an authorizer allows reads only (no ATTACH, VACUUM INTO, setting PRAGMAs).
Ctrl-C stops a running query (exit 130), so does --timeout (exit 1). Rows are written as
SQLite gives them (csv, json: any number in bounded memory; table: at most TABLE_MAX_ROWS,
the number left out is said). A statement naming `energy_samples` (the Parquet samples as a
table, joinable with runs) runs in a locked-down in-memory DuckDB instead: store/samples_sql.py.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from alems import config
from alems.errors import UsageError
from alems.cli._common import DB_DEFAULT_TEXT, handle_errors
from alems.store.reads import EXAMPLE_QUERY

FORMATS = ("table", "csv", "json")
WIDE_COLUMNS = 12  # more columns than this: one "column: value" block per row
MAX_TIMEOUT_S = 7 * 86_400.0
# The table format aligns columns over all the rows it shows, so it keeps them: at most
# this many (the rest are counted and said); csv and json stream any number.
TABLE_MAX_ROWS = 10_000


def run_query(db_path: Path, sql: str, *, write: bool = False,
              timeout_s: float | None = None) -> tuple[list[str], list[tuple]]:
    """All rows in a list (for small results; the command streams, see `query_rows`)."""
    with query_rows(db_path, sql, write=write, timeout_s=timeout_s) as (columns, rows):
        return columns, list(rows)


@contextlib.contextmanager
def query_rows(db_path: Path, sql: str, *, write: bool = False,
               timeout_s: float | None = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """(columns, rows as they come from SQLite): Ctrl-C and --timeout stop it while its
    rows are written too."""
    from alems.store.db import connect, connect_readonly
    from alems.store.reads import user_query
    from alems.store.samples_sql import mentions_samples, samples_query

    if mentions_samples(sql):   # the Parquet samples: through DuckDB (store/samples_sql.py)
        with _sigint_flag() as stop, samples_query(db_path, sql, write=write,
                                                   timeout_s=timeout_s,
                                                   stop_requested=stop.is_set) as result:
            yield result
        return
    conn = connect(db_path, create=False) if write else connect_readonly(db_path)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SQLite runs the statement in C, where Python's own Ctrl-C cannot reach it; the
        # progress handler polls this flag instead.
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with user_query(conn, sql, write=write, timeout_s=timeout_s,
                        stop_requested=stop.is_set) as result:
            yield result
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        conn.close()


@contextlib.contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """An event Ctrl-C sets (instead of raising) while a statement runs in C."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    if not columns:
        return "(no result columns)"
    if len(columns) > WIDE_COLUMNS:
        width = max(len(c) for c in columns)
        blocks = []
        for i, row in enumerate(rows, start=1):
            lines = [f"-[ row {i} ]" + "-" * 20]
            lines += [f"{c:<{width}} | {_cell(v)}" for c, v in zip(columns, row, strict=True)]
            blocks.append("\n".join(lines))
        blocks.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
        return "\n".join(blocks)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(columns))]

    def line(values):
        return " | ".join(v.rjust(w) if num else v.ljust(w)
                          for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()
    out = [line(columns), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def write_output(columns: list[str], rows: Iterable[tuple], fmt: str, stream=None, *,
                 table_max_rows: int = TABLE_MAX_ROWS) -> None:
    """Write rows as they come: csv and json hold one row at a time whatever the result's
    size; a table needs every row's width first, so it shows at most `table_max_rows` and
    counts the rest (without keeping them)."""
    stream = stream or sys.stdout
    rows = iter(rows)
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    elif fmt == "json":
        first = True
        for row in rows:  # the layout of json.dump(list, indent=1), one element at a time
            item = json.dumps(dict(zip(columns, row, strict=True)), default=str, indent=1)
            stream.write(("[\n " if first else ",\n ") + item.replace("\n", "\n "))
            first = False
        stream.write("[]\n" if first else "\n]\n")
    else:
        shown = list(itertools.islice(rows, table_max_rows))
        left_out = sum(1 for _ in rows)
        stream.write(format_table(columns, shown) + "\n")
        if left_out:
            stream.write(f"({left_out:,} more row{'s' if left_out != 1 else ''} not shown: "
                         f"the table format shows at most {table_max_rows:,}; use --format "
                         "csv or json for all of them, or LIMIT)\n")


def query_command(
    sql: Annotated[str, typer.Argument(help=f"One SQL statement, e.g. \"{EXAMPLE_QUERY}\".")],
    db: Annotated[Path | None, typer.Option(
        "--db", help="SQLite index to query.", show_default=DB_DEFAULT_TEXT)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    write: Annotated[bool, typer.Option("--write", help="Allow statements that modify the "
                                        "database (read-only otherwise).")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Stop the query after this many seconds (default: no limit; "
        "Ctrl-C always stops it).", show_default=False)] = None,
) -> None:
    """Run SQL on the SQLite index (STDDEV, VARIANCE, SQRT, MEDIAN … available); the table
    energy_samples (run_id, t_ns, *_energy_uj, *_power_w) reads the Parquet samples in
    place (DuckDB's SQL; needs duckdb)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not sql.strip():
        raise UsageError("the SQL statement is empty")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_S:  # also NaN
        raise UsageError(f"--timeout must be between 0 and {MAX_TIMEOUT_S:g} s, got {timeout}")
    db = (db if db is not None else config.default_db_path()).absolute()  # in messages too
    with query_rows(db, sql, write=write, timeout_s=timeout) as (columns, rows):
        write_output(columns, rows, fmt)


def register(app) -> None:
    app.command("query", help="Run SQL on the SQLite index (STDDEV, VARIANCE, SQRT, MEDIAN "
                "… registered); --format table|csv|json. The table energy_samples (run_id, "
                "t_ns, *_energy_uj, *_power_w) reads the Parquet samples in place (DuckDB's "
                "SQL; extra `reports`).")(handle_errors(query_command))
