"""Opening the results database read-only and picking the batch (group) to analyse."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from alems.errors import AlemsError
from alems.store import db as store_db
from alems.store import reads

LATEST = "latest"
# A batch command that keeps its database (without --save-db it is deleted at the end).
BATCH_HINT = "alems batch --tasks gsm8k_basic --save-db"


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open an existing A-LEMS database (never creates one). Rows come back as sqlite3.Row."""
    path = Path(path).absolute()   # from another folder a relative name says nothing
    if not path.is_file():
        raise AlemsError(f"database not found: {path}; record a batch into it with "
                         f"`{BATCH_HINT}` or point to one with --db PATH (env ALEMS_DB)")
    try:
        conn = store_db.connect_readonly(path)  # also on a read-only mount
    except sqlite3.Error as exc:
        raise AlemsError(f"cannot open database {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        names = reads.table_names(conn)
    except sqlite3.DatabaseError as exc:
        raise AlemsError(f"{path} is not an A-LEMS database: {exc}") from None
    needed = reads.ANALYSIS_TABLES
    if not needed <= names:
        if not names & needed:
            raise AlemsError(f"database {path} is empty (no A-LEMS tables); record a batch "
                             f"with `{BATCH_HINT}`")
        raise AlemsError(f"database {path} lacks table(s) {', '.join(sorted(needed - names))}; "
                         "it was not written by this version of A-LEMS")
    return conn


@dataclass(frozen=True)
class Group:
    group_id: str
    created_at: str
    status: str
    seed: int | None
    settings: dict
    host: dict
    order: list
    command: str | None
    updated_at: str | None


def _loads(text: str | None, default):
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def resolve_group_or_experiment(conn: sqlite3.Connection, value: str | None) -> Group:
    """`resolve_group`, where a number that names no group names an experiment (the
    guide's `--exp-id`): its batch."""
    wanted = (value or LATEST).strip()
    if wanted.isdigit() and reads.group_row(conn, wanted) is None:
        group_id = reads.group_of_experiment(conn, int(wanted))
        if group_id is None:
            raise AlemsError(f"no group or experiment {wanted!r} in the database "
                             "(or use 'latest')")
        wanted = group_id
    return resolve_group(conn, wanted)


def resolve_group(conn: sqlite3.Connection, group_id_or_latest: str | None = LATEST) -> Group:
    """The batch session named `group_id_or_latest`; for 'latest'/None the newest one that
    has runs (a just-started or empty session must not hide finished results), else the
    newest one."""
    wanted = (group_id_or_latest or LATEST).strip()
    if wanted.lower() == LATEST:
        row = reads.latest_group_with_runs_row(conn) or reads.latest_group_row(conn)
        if row is None:
            raise AlemsError(f"the database has no batch sessions yet; record one with "
                             f"`{BATCH_HINT}`")
    else:
        row = reads.group_row(conn, wanted)
        if row is None:
            known = reads.recent_group_ids(conn, 5)
            hint = (f"recent groups: {', '.join(known)}" if known
                    else "the database has no batch sessions")
            raise AlemsError(f"unknown group id {wanted!r}; {hint} (or use 'latest')")
    return Group(
        group_id=row["group_id"], created_at=row["created_at"], status=row["status"],
        seed=row["seed"], settings=_loads(row["settings_json"], {}),
        host=_loads(row["host_json"], {}), order=_loads(row["order_json"], []),
        command=row["command"], updated_at=row["updated_at"],
    )
