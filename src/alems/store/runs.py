"""Rows of the index: runs, phases, orchestration-tax pairs (sessions and experiments:
`alems.store.sessions`; idle baselines: `alems.store.baselines`).

Callers own the transaction (see `store.db.transaction`); these functions only execute
statements, so a run, its phases and its tax row go in together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any
from collections.abc import Iterable

from alems.errors import AlemsError
from alems.catalog.arms import AGENTIC, LINEAR


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def insert_row(conn: sqlite3.Connection, table: str, row: dict[str, Any],
               known: set[str] | None = None) -> int:
    """INSERT `row` (column -> value) into `table`; returns the new rowid. `known`: the
    table's columns, when the caller inserts many rows (merge: 10⁵ PRAGMAs, issue 23)."""
    known = known if known is not None else table_columns(conn, table)
    unknown = sorted(set(row) - known)
    if unknown:
        raise AlemsError(f"internal: table {table} has no column(s) {', '.join(unknown)}")
    names = list(row)
    sql = (f"INSERT INTO {table} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    cur = conn.execute(sql, [sql_value(row[n]) for n in names])
    if cur.lastrowid is None:
        raise AlemsError(f"internal: inserting into {table} gave no row id")
    return cur.lastrowid


def sql_value(value: Any) -> Any:
    """`value` as SQLite can store it: text must be UTF-8, but a path or command line from
    the OS may hold bytes that are not (Python keeps them as lone surrogates); those are
    stored as `\\xNN` escapes, readably and without failing the write."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


# ---------------------------------------------------------------- runs

def next_run_id(conn: sqlite3.Connection) -> int:
    """The id the next run row will get; call inside a write (IMMEDIATE) transaction so no
    other writer can take it meanwhile. Respects AUTOINCREMENT's never-reuse sequence."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
    top = conn.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
    return max(int(seq[0]) if seq else 0, int(top or 0)) + 1


def insert_run(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    return insert_row(conn, "runs", row)


# A run stored before runs.pair_index existed (schema < 4) gets it from its place in the
# plan: every plan has always put the k arms of a pair next to each other, so the pair is
# order_index // k, k = the number of arms in its experiment's `workflows` ('linear,agentic').
_DERIVE_PAIR_INDEX = (
    "UPDATE runs SET pair_index = order_index / (SELECT LENGTH(e.workflows) - "
    "LENGTH(REPLACE(e.workflows, ',', '')) + 1 FROM experiments e "
    "WHERE e.exp_id = runs.exp_id) WHERE pair_index IS NULL AND order_index IS NOT NULL")


def derive_pair_index(conn: sqlite3.Connection) -> int:
    """Fill runs.pair_index where it is NULL but the run's plan position is known (see
    _DERIVE_PAIR_INDEX); returns how many rows got one."""
    return conn.execute(_DERIVE_PAIR_INDEX).rowcount


def insert_phases(conn: sqlite3.Connection, run_id: int, phases: Iterable[dict]) -> int:
    count = 0
    for ph in phases:
        insert_row(conn, "phases", {
            "run_id": run_id, "seq": ph["seq"], "name": ph["name"], "kind": ph["kind"],
            "parent_seq": ph.get("parent_seq"), "start_ns": ph["start_ns"],
            "end_ns": ph["end_ns"], "duration_ns": ph["duration_ns"],
            "energy_uj": ph.get("energy_uj"),
            "detail_json": json.dumps(ph.get("detail") or {}, default=str)})
        count += 1
    return count


# ---------------------------------------------------------------- orchestration tax

def tax_values(linear_uj: float | None,
               agentic_uj: float | None) -> tuple[float | None, float | None]:
    """(ratio, percent) = (agentic / linear, (agentic − linear) / linear × 100); both None
    when either energy is unknown or the linear energy is not positive (no meaningful ratio)."""
    if linear_uj is None or agentic_uj is None or linear_uj <= 0:
        return None, None
    return agentic_uj / linear_uj, (agentic_uj - linear_uj) / linear_uj * 100.0


# The arms of one pair (index idx_runs_exp_rep: not a scan of the experiment's runs).
PAIR_ARMS_SQL = ("SELECT workflow_type, run_id, dynamic_energy_uj, energy_source, status "
                 "FROM runs WHERE exp_id = ? AND run_number = ?")


def insert_tax_if_paired(conn: sqlite3.Connection, exp_id: int, run_number: int) -> int | None:
    """Insert the pair's tax row once both arms have a successful run; returns pair_id."""
    rows = conn.execute(PAIR_ARMS_SQL, (exp_id, run_number)).fetchall()
    arms = {r[0]: r for r in rows}
    if not {LINEAR, AGENTIC} <= set(arms):
        return None
    lin, ag = arms[LINEAR], arms[AGENTIC]
    if lin[4] != "ok" or ag[4] != "ok":
        return None
    ratio, percent = tax_values(lin[2], ag[2])
    source = lin[3] if lin[3] == ag[3] else f"{lin[3]}/{ag[3]}"
    cur = conn.execute(
        "INSERT OR IGNORE INTO orchestration_tax_summary (exp_id, run_number, linear_run_id, "
        "agentic_run_id, linear_dynamic_energy_uj, agentic_dynamic_energy_uj, tax_ratio, "
        "tax_percent, energy_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (exp_id, run_number, lin[1], ag[1], lin[2], ag[2], ratio, percent, source))
    return cur.lastrowid if cur.rowcount else None
