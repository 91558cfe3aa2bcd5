"""Batch sessions and their experiments: the rows a batch opens, resumes and closes, and
the reads its resume decision and closing summary need.

Callers own the transaction (see `store.db.transaction`), as in `alems.store.runs`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from alems.store.runs import insert_row, sql_value, utc_now_iso


# ---------------------------------------------------------------- sessions

def get_session(conn: sqlite3.Connection, group_id: str) -> dict | None:
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM batch_sessions WHERE group_id = ?",
                           (group_id,)).fetchone()
    finally:
        conn.row_factory = None
    return dict(row) if row else None


def _sessions(conn: sqlite3.Connection, completed: bool) -> list[dict]:
    """Sessions marked completed (or not), newest first."""
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM batch_sessions WHERE (status = 'completed') = ? "
                            "ORDER BY created_at DESC", (completed,)).fetchall()
    finally:
        conn.row_factory = None
    return [dict(r) for r in rows]


def unfinished_sessions(conn: sqlite3.Connection) -> list[dict]:
    """Sessions not marked completed, newest first."""
    return _sessions(conn, False)


def completed_sessions(conn: sqlite3.Connection) -> list[dict]:
    """Sessions marked completed, newest first."""
    return _sessions(conn, True)


def insert_session(conn: sqlite3.Connection, *, group_id: str, settings: dict, command: str,
                   host: dict, order: list, seed: int | None) -> None:
    now = utc_now_iso()
    insert_row(conn, "batch_sessions", {
        "group_id": group_id, "created_at": now, "updated_at": now, "command": command,
        "settings_json": json.dumps(settings, sort_keys=True), "host_json": json.dumps(host),
        "order_json": json.dumps(order), "seed": seed, "status": "running"})


def update_session(conn: sqlite3.Connection, group_id: str, **fields) -> None:
    fields["updated_at"] = utc_now_iso()
    names = list(fields)
    conn.execute(f"UPDATE batch_sessions SET {', '.join(f'{n} = ?' for n in names)} "
                 "WHERE group_id = ?", [sql_value(fields[n]) for n in names] + [group_id])


# ---------------------------------------------------------------- experiments and their runs

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
    return insert_row(conn, "experiments", {
        "group_id": group_id, "task_name": task_name, "provider": provider, "model": model,
        "workflows": workflows, "repetitions": repetitions, "seed": seed,
        "temperature": temperature, "max_tokens": max_tokens, "country": country,
        "created_at": utc_now_iso(), "config_json": json.dumps(config or {}, default=str)})



def completed_runs(conn: sqlite3.Connection, group_id: str) -> dict[tuple[str, str, str, int], int]:
    """(task, provider, workflow, rep) -> run_id of every run row of the session."""
    rows = conn.execute(
        "SELECT e.task_name, e.provider, r.workflow_type, r.run_number, r.run_id "
        "FROM runs r JOIN experiments e ON r.exp_id = e.exp_id WHERE e.group_id = ?",
        (group_id,)).fetchall()
    return {(t, p, w, int(n)): int(rid) for t, p, w, n, rid in rows}


# ---------------------------------------------------------------- closing summary

@dataclass
class SessionTotals:
    ok: int = 0
    errors: int = 0
    per_workflow: dict = field(default_factory=dict)   # workflow -> (n ok, mean dynamic J)
    accuracy: dict = field(default_factory=dict)       # workflow -> (n correct, n scored)
    tax_pairs: int = 0
    mean_tax_percent: float | None = None
    energy_source: str | None = None                    # of any stored run (None if none)


def session_totals(conn: sqlite3.Connection, group_id: str) -> SessionTotals:
    """Run counts, mean dynamic energy per workflow and mean tax over the whole session."""
    q = conn.execute
    g = (group_id,)
    s = SessionTotals()
    s.ok = q("SELECT COUNT(*) FROM runs r JOIN experiments e USING (exp_id) "
             "WHERE e.group_id = ? AND r.status = 'ok'", g).fetchone()[0]
    s.errors = q("SELECT COUNT(*) FROM runs r JOIN experiments e USING (exp_id) "
                 "WHERE e.group_id = ? AND r.status != 'ok'", g).fetchone()[0]
    for wf, n, mean_j in q(
            "SELECT r.workflow_type, COUNT(*), AVG(r.dynamic_energy_uj / 1e6) FROM runs r "
            "JOIN experiments e USING (exp_id) WHERE e.group_id = ? AND r.status = 'ok' "
            "GROUP BY r.workflow_type", g):
        s.per_workflow[wf] = (n, mean_j)
    for wf, n_correct, n_scored in q(
            "SELECT r.workflow_type, SUM(r.success), COUNT(r.success) FROM runs r "
            "JOIN experiments e USING (exp_id) WHERE e.group_id = ? AND r.status = 'ok' "
            "GROUP BY r.workflow_type", g):
        s.accuracy[wf] = (int(n_correct or 0), int(n_scored))
    s.tax_pairs, s.mean_tax_percent = q(
        "SELECT COUNT(tax_percent), AVG(tax_percent) FROM orchestration_tax_summary ots "
        "JOIN experiments e USING (exp_id) WHERE e.group_id = ?", g).fetchone()
    row = q("SELECT r.energy_source FROM runs r JOIN experiments e USING (exp_id) "
            "WHERE e.group_id = ? AND r.energy_source IS NOT NULL LIMIT 1", g).fetchone()
    s.energy_source = row[0] if row else None
    return s
