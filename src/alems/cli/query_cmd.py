"""`alems query "SQL" [--db PATH] [--format table|csv|json]`: SQL on the index.

The connection is `store.db.connect`, so STDDEV, VARIANCE, SQRT, MEDIAN … work. A missing
database is one error line (a query never creates an empty one); a bad query gives SQLite's
own message in one line, exit 1. Read-only unless --write: the database is opened
read-only and an authorizer allows reads only (no ATTACH, VACUUM INTO, setting PRAGMAs).
Ctrl-C stops a running query (exit 130), so does --timeout (exit 1).
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from alems import config
from alems.errors import UsageError
from alems.cli._common import DB_DEFAULT_TEXT, handle_errors
from alems.store.reads import EXAMPLE_QUERY

FORMATS = ("table", "csv", "json")
WIDE_COLUMNS = 12
MAX_TIMEOUT_S = 7 * 86_400.0  # more columns than this: one "column: value" block per row


def run_query(db_path: Path, sql: str, *, write: bool = False,
              timeout_s: float | None = None) -> tuple[list[str], list[tuple]]:
    from alems.store.db import connect, connect_readonly
    from alems.store.reads import run_user_query

    conn = connect(db_path, create=False) if write else connect_readonly(db_path)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SQLite runs the statement in C, where Python's own Ctrl-C cannot reach it; the
        # progress handler polls this flag instead.
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return run_user_query(conn, sql, write=write, timeout_s=timeout_s,
                              stop_requested=stop.is_set)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        conn.close()


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


def write_output(columns: list[str], rows: list[tuple], fmt: str, stream=None) -> None:
    stream = stream or sys.stdout
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    elif fmt == "json":
        json.dump([dict(zip(columns, row, strict=True)) for row in rows], stream, default=str,
                  indent=1)
        stream.write("\n")
    else:
        stream.write(format_table(columns, rows) + "\n")


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
    """Run SQL on the SQLite index (STDDEV, VARIANCE, SQRT, MEDIAN … available)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not sql.strip():
        raise UsageError("the SQL statement is empty")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_S:  # also NaN
        raise UsageError(f"--timeout must be between 0 and {MAX_TIMEOUT_S:g} s, got {timeout}")
    db = (db if db is not None else config.default_db_path()).absolute()  # in messages too
    columns, rows = run_query(db, sql, write=write, timeout_s=timeout)
    write_output(columns, rows, fmt)


def register(app) -> None:
    app.command("query", help="Run SQL on the SQLite index (STDDEV, VARIANCE, SQRT, MEDIAN "
                "… registered); --format table|csv|json.")(handle_errors(query_command))
