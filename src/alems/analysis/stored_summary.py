"""`alems summary`'s result kept with the data it summarises (issue 23): building it for a
study of 10⁵ runs takes seconds, so a batch stores it when it completes and `alems merge`
after merging; the dashboard and `alems summary` (at its defaults) then read it back.

A stored summary is used only while it is exactly what `build_summary` would give now: the
group's runs, status and baselines unchanged (`group_stamp`) and the same code
(`code_fingerprint`: any changed module makes it stale). Otherwise it is rebuilt; a stale
one is never shown. Stored as JSON with non-finite floats kept (NaN stays NaN), so the
text, JSON and pages drawn from it are those drawn from a fresh build (tests check)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from alems._version import code_fingerprint
from alems.analysis.groups import Group
from alems.analysis.views import accuracy_per_arm, headline_row
from alems.errors import AlemsError
from alems.store import summaries
from alems.store.dashboard_reads import group_stamp


def to_json(summary: dict) -> str:
    """The summary as stored: JSON, non-finite floats kept, numpy scalars as numbers."""
    def number(obj):
        if hasattr(obj, "item"):
            return obj.item()
        raise TypeError(f"a summary holds a {type(obj).__name__}, not JSON")

    return json.dumps(summary, default=number)


def build_and_store(conn: sqlite3.Connection, db_path: str | Path, group: Group) -> str | None:
    """Build the group's summary at its defaults and store it (or why it has none) on the
    caller's writable connection; returns the refusal. Built outside the write lock (seconds
    at 10⁵ runs): the stamp is taken first, so runs written meanwhile make the row stale."""
    from alems.analysis.summary import build_summary
    from alems.store.db import transaction

    stamp = group_stamp(conn, group.group_id)
    text: str | None
    digest: str | None
    why: str | None
    try:
        summary = build_summary(conn, db_path, group)
    except AlemsError as exc:
        text, digest, why = None, None, str(exc)
    else:
        text, why = to_json(summary), None
        digest = to_json({"headline": headline_row(summary),
                          "accuracy": accuracy_per_arm(summary)})
    with transaction(conn):
        summaries.save(conn, group.group_id, stamp, code_fingerprint(), text, why, digest)
    return why


def stored(conn: sqlite3.Connection, group_id: str, stamp: tuple | None = None,
           part: str = "summary_json") -> tuple[dict | None, str | None] | None:
    """(summary, None) or (None, why the group has none) as stored, when still valid for
    the group's runs (`stamp`, read here when not given) and this code; None when there is
    none to trust (rebuild it). `part="digest_json"`: only what the groups list shows of
    it ({headline, accuracy}: views.headline_row, views.accuracy_per_arm)."""
    row = summaries.load(conn, group_id, part)
    if row is None:
        return None
    kept, code, text, why = row
    if code != code_fingerprint() or kept != tuple(stamp or group_stamp(conn, group_id)):
        return None
    return (json.loads(text), None) if text is not None else (None, why)


def can_build() -> bool:
    """Whether this installation can build a summary (pandas and scipy: the `reports` or
    `dashboard` extra); without them nothing is kept, and nothing could read it either."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pandas", "scipy"))


def store_groups(conn: sqlite3.Connection, db_path: str | Path, group_ids) -> int:
    """`build_and_store` for each named group (a completed batch, the groups a merge
    touched), on any writable connection (rows read as sqlite3.Row meanwhile); returns how
    many were kept (none where `can_build` is false)."""
    from alems.analysis.groups import resolve_group

    if not can_build():
        return 0
    groups = list(dict.fromkeys(group_ids))
    saved = conn.row_factory
    conn.row_factory = sqlite3.Row
    try:
        for gid in groups:
            build_and_store(conn, db_path, resolve_group(conn, gid))
    finally:
        conn.row_factory = saved
    return len(groups)
