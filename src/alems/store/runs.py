"""Rows of the index: batch sessions, experiments, runs, phases, orchestration-tax pairs.

Callers own the transaction (see `store.db.transaction`); these functions only execute
statements, so a run, its phases and its tax row go in together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any, Iterable

from alems.errors import AlemsError


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    known = _columns(conn, table)
    unknown = sorted(set(row) - known)
    if unknown:
        raise AlemsError(f"internal: table {table} has no column(s) {', '.join(unknown)}")
    names = list(row)
    sql = (f"INSERT INTO {table} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    cur = conn.execute(sql, [row[n] for n in names])
    return int(cur.lastrowid)


# ---------------------------------------------------------------- sessions

def get_session(conn: sqlite3.Connection, group_id: str) -> dict | None:
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM batch_sessions WHERE group_id = ?",
                           (group_id,)).fetchone()
    finally:
        conn.row_factory = None
    return dict(row) if row else None


def unfinished_sessions(conn: sqlite3.Connection) -> list[dict]:
    """Sessions not marked completed, newest first."""
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM batch_sessions WHERE status != 'completed' "
                            "ORDER BY created_at DESC").fetchall()
    finally:
        conn.row_factory = None
    return [dict(r) for r in rows]


def insert_session(conn: sqlite3.Connection, *, group_id: str, settings: dict, command: str,
                   host: dict, order: list, seed: int | None) -> None:
    now = utc_now_iso()
    _insert(conn, "batch_sessions", {
        "group_id": group_id, "created_at": now, "updated_at": now, "command": command,
        "settings_json": json.dumps(settings, sort_keys=True), "host_json": json.dumps(host),
        "order_json": json.dumps(order), "seed": seed, "status": "running"})


def update_session(conn: sqlite3.Connection, group_id: str, **fields) -> None:
    fields["updated_at"] = utc_now_iso()
    names = list(fields)
    conn.execute(f"UPDATE batch_sessions SET {', '.join(f'{n} = ?' for n in names)} "
                 "WHERE group_id = ?", [fields[n] for n in names] + [group_id])


# ---------------------------------------------------------------- experiments

def get_or_create_experiment(conn: sqlite3.Connection, *, group_id: str, task_name: str,
                             provider: str, model: str | None, workflows: str,
                             repetitions: int, seed: int | None, temperature: float | None,
                             max_tokens: int | None, country: str | None,
                             config: dict | None = None) -> int:
    row = conn.execute("SELECT exp_id, repetitions FROM experiments WHERE group_id = ? AND "
                       "task_name = ? AND provider = ?", (group_id, task_name, provider)).fetchone()
    if row:
        if repetitions > row[1]:
            conn.execute("UPDATE experiments SET repetitions = ? WHERE exp_id = ?",
                         (repetitions, row[0]))
        return int(row[0])
    return _insert(conn, "experiments", {
        "group_id": group_id, "task_name": task_name, "provider": provider, "model": model,
        "workflows": workflows, "repetitions": repetitions, "seed": seed,
        "temperature": temperature, "max_tokens": max_tokens, "country": country,
        "created_at": utc_now_iso(), "config_json": json.dumps(config or {}, default=str)})


# ---------------------------------------------------------------- runs

def next_run_id(conn: sqlite3.Connection) -> int:
    """The id the next run row will get; call inside a write (IMMEDIATE) transaction so no
    other writer can take it meanwhile. Respects AUTOINCREMENT's never-reuse sequence."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
    top = conn.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
    return max(int(seq[0]) if seq else 0, int(top or 0)) + 1


def insert_run(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    return _insert(conn, "runs", row)


def completed_runs(conn: sqlite3.Connection, group_id: str) -> dict[tuple[str, str, str, int], int]:
    """(task, provider, workflow, rep) -> run_id of every run row of the session."""
    rows = conn.execute(
        "SELECT e.task_name, e.provider, r.workflow_type, r.run_number, r.run_id "
        "FROM runs r JOIN experiments e ON r.exp_id = e.exp_id WHERE e.group_id = ?",
        (group_id,)).fetchall()
    return {(t, p, w, int(n)): int(rid) for t, p, w, n, rid in rows}


def insert_phases(conn: sqlite3.Connection, run_id: int, phases: Iterable[dict]) -> int:
    count = 0
    for ph in phases:
        _insert(conn, "phases", {
            "run_id": run_id, "seq": ph["seq"], "name": ph["name"], "kind": ph["kind"],
            "parent_seq": ph.get("parent_seq"), "start_ns": ph["start_ns"],
            "end_ns": ph["end_ns"], "duration_ns": ph["duration_ns"],
            "energy_uj": ph.get("energy_uj"),
            "detail_json": json.dumps(ph.get("detail") or {}, default=str)})
        count += 1
    return count


# ---------------------------------------------------------------- orchestration tax

def tax_values(linear_uj: float | None, agentic_uj: float | None) -> tuple[float | None, float | None]:
    """(ratio, percent) = (agentic / linear, (agentic − linear) / linear × 100); both None
    when either energy is unknown or the linear energy is not positive (no meaningful ratio)."""
    if linear_uj is None or agentic_uj is None or linear_uj <= 0:
        return None, None
    return agentic_uj / linear_uj, (agentic_uj - linear_uj) / linear_uj * 100.0


def insert_tax_if_paired(conn: sqlite3.Connection, exp_id: int, run_number: int) -> int | None:
    """Insert the pair's tax row once both arms have a successful run; returns pair_id."""
    rows = conn.execute(
        "SELECT workflow_type, run_id, dynamic_energy_uj, energy_source, status FROM runs "
        "WHERE exp_id = ? AND run_number = ?", (exp_id, run_number)).fetchall()
    arms = {r[0]: r for r in rows}
    if not {"linear", "agentic"} <= set(arms):
        return None
    lin, ag = arms["linear"], arms["agentic"]
    if lin[4] != "ok" or ag[4] != "ok":
        return None
    ratio, percent = tax_values(lin[2], ag[2])
    source = lin[3] if lin[3] == ag[3] else f"{lin[3]}/{ag[3]}"
    cur = conn.execute(
        "INSERT OR IGNORE INTO orchestration_tax_summary (exp_id, run_number, linear_run_id, "
        "agentic_run_id, linear_dynamic_energy_uj, agentic_dynamic_energy_uj, tax_ratio, "
        "tax_percent, energy_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (exp_id, run_number, lin[1], ag[1], lin[2], ag[2], ratio, percent, source))
    return int(cur.lastrowid) if cur.rowcount else None
