"""The reads of `alems summary` (analysis.summary): only the run columns it
uses, so its time and memory follow the data it uses (issue 23: at 10⁵ runs every run
column cost seconds and most of the peak)."""

from __future__ import annotations

import sqlite3

from alems.store.reads import _frame

# What `alems summary` reads of a run (analysis.summary, summary_warnings, hosts, frames),
# of ~110 run columns. A column an older database lacks is left out (the summary checks
# `in runs` for the optional ones).
SUMMARY_RUN_COLUMNS = (
    "run_id", "workflow_type", "run_number", "status", "started_at", "duration_ns",
    "energy_source", "pkg_energy_uj", "baseline_id", "dynamic_energy_uj",
    "dynamic_energy_se_uj", "dynamic_clipped", "avg_power_watts", "gpu_dynamic_energy_uj",
    "success", "country", "carbon_g", "water_ml", "methane_mg", "quiet", "not_quiet_reason",
    "null_reasons", "host", "cpu_model")
_SUMMARY_RUNS_SQL = """
SELECT {run_columns}, e.task_name, e.provider, e.country AS exp_country,
       b.measured_at AS baseline_measured_at, b.energy_source AS baseline_energy_source
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
LEFT JOIN baselines b ON r.baseline_id = b.baseline_id
WHERE e.group_id = ?
ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type
"""

def summary_runs_frame(conn: sqlite3.Connection, group_id: str):
    """`runs_frame` with only the columns `alems summary` reads (SUMMARY_RUN_COLUMNS that
    the database has, the task, provider, experiment country and the baseline's time and
    energy source), in the same row order."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    columns = ", ".join(f"r.{n}" for n in SUMMARY_RUN_COLUMNS if n in have)
    return _as_objects(_frame(conn, _SUMMARY_RUNS_SQL.format(run_columns=columns), (group_id,)))


def _as_objects(frame):
    """Text columns as Python strings (object dtype) rather than pandas' Arrow-backed str:
    the summary walks them value by value (pairing, per-host pairs), which costs ~1 µs a
    value through Arrow — seconds at 10⁵ runs — and ~0.1 µs as objects."""
    import pandas as pd

    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.StringDtype):
            frame[name] = frame[name].astype(object)
    return frame


# The phases the summary's shares add up: of the group's completed runs of every arm but
# one (linear), of the given kinds (run_id, kind, energy_uj), in reads.phases_frame's order.
_SHARE_PHASES_SQL = """
SELECT p.run_id, p.kind, p.energy_uj
FROM phases p JOIN runs r ON p.run_id = r.run_id
JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = ? AND r.workflow_type != ? AND r.status = 'ok' AND p.kind IN ({kinds})
ORDER BY p.run_id, p.seq
"""


def share_phases_frame(conn: sqlite3.Connection, group_id: str, but: str,
                       kinds: tuple[str, ...]):
    """(run_id, kind, energy_uj) of the phases of `kinds` of the group's completed runs of
    every arm but `but` (what the summary's phase shares add up)."""
    sql = _SHARE_PHASES_SQL.format(kinds=", ".join("?" * len(kinds)))
    return _frame(conn, sql, (group_id, but, *kinds))


def group_has_phases(conn: sqlite3.Connection, group_id: str) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM phases p JOIN runs r ON p.run_id = r.run_id "
        "JOIN experiments e ON r.exp_id = e.exp_id WHERE e.group_id = ?)",
        (group_id,)).fetchone()[0] == 1
