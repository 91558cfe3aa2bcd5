"""A group's summary kept in the database (table group_summaries, schema 9): written when a
batch completes and after `alems merge`, read by the dashboard and `alems summary` so a
study of 10⁵ runs is not re-summarised on every look (issue 23). The rows are opaque text
here; what they hold and when one is valid: alems.analysis.stored_summary."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

TABLE = "group_summaries"


def save(conn: sqlite3.Connection, group_id: str, stamp: tuple, code: str,
         summary_json: str | None, refusal: str | None, digest_json: str | None) -> None:
    """Keep (or replace) the group's stored summary; the caller commits."""
    conn.execute(
        f"INSERT INTO {TABLE} (group_id, stamp_json, code, summary_json, refusal, digest_json, "
        "built_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(group_id) DO UPDATE SET "
        "stamp_json = excluded.stamp_json, code = excluded.code, "
        "summary_json = excluded.summary_json, refusal = excluded.refusal, "
        "digest_json = excluded.digest_json, built_at = excluded.built_at",
        (group_id, json.dumps(list(stamp)), code, summary_json, refusal, digest_json,
         datetime.now(timezone.utc).isoformat(timespec="seconds")))


def load(conn: sqlite3.Connection, group_id: str,
         column: str = "summary_json") -> tuple[tuple, str, str | None, str | None] | None:
    """(stamp, code, `column` (summary_json or digest_json), refusal) stored for the group,
    or None (none stored, or a database older than schema 9 opened read-only, which has no
    such table)."""
    if column not in ("summary_json", "digest_json"):
        raise ValueError(column)
    try:
        row = conn.execute(f"SELECT stamp_json, code, {column}, refusal FROM {TABLE} "
                           "WHERE group_id = ?", (group_id,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    if row is None:
        return None
    return tuple(json.loads(row[0])), row[1], row[2], row[3]
