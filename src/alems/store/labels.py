"""Tags and notes on a batch (`alems tag`): the one place that writes `group_labels`; the
dashboard reads them through store.dashboard_reads and never writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from alems.errors import UsageError
from alems.store.db import transaction

TAG_MAX_CHARS = 64       # a tag is a short label (shown in the groups list and filtered on)
NOTE_MAX_CHARS = 2000    # a note is a sentence or a paragraph, not a document


def _check(text: str, what: str, limit: int) -> str:
    text = text.strip()
    if not text:
        raise UsageError(f"an empty {what} says nothing; give some text")
    if len(text) > limit:
        raise UsageError(f"a {what} is at most {limit} characters (got {len(text)})")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise UsageError(f"a {what} may not contain control characters")
    if what == "tag" and any(c.isspace() for c in text):
        raise UsageError(f"a tag is one word (got {text!r}); put sentences in --note")
    return text


def label_group(conn: sqlite3.Connection, group_id: str, tags: list[str], note: str | None,
                remove: list[str]) -> dict:
    """Add `tags` and `note` to the group and remove the tags in `remove`; returns what
    changed ({added, removed, note}). A tag already there is left as is."""
    tags = [_check(t, "tag", TAG_MAX_CHARS) for t in tags]
    remove = [_check(t, "tag", TAG_MAX_CHARS) for t in remove]
    note = None if note is None else _check(note, "note", NOTE_MAX_CHARS)
    if not tags and not remove and note is None:
        raise UsageError("give tags to add, --note TEXT, or --remove TAG")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    added, removed = [], []
    with transaction(conn):
        for tag in dict.fromkeys(tags):
            cur = conn.execute("INSERT OR IGNORE INTO group_labels (group_id, kind, text, "
                               "created_at) VALUES (?, 'tag', ?, ?)", (group_id, tag, now))
            if cur.rowcount:
                added.append(tag)
        for tag in dict.fromkeys(remove):
            cur = conn.execute("DELETE FROM group_labels WHERE group_id = ? AND kind = 'tag' "
                               "AND text = ?", (group_id, tag))
            if cur.rowcount:
                removed.append(tag)
        if note is not None:
            conn.execute("INSERT OR IGNORE INTO group_labels (group_id, kind, text, "
                         "created_at) VALUES (?, 'note', ?, ?)", (group_id, note, now))
    return {"added": added, "removed": removed, "note": note}


def group_labels(conn: sqlite3.Connection) -> dict[str, dict]:
    """group_id -> {"tags": [text…], "notes": [{"text", "created_at"}…]} in the order
    written (groups without labels absent)."""
    out: dict[str, dict] = {}
    for gid, kind, text, created in conn.execute(
            "SELECT group_id, kind, text, created_at FROM group_labels ORDER BY label_id"):
        g = out.setdefault(gid, {"tags": [], "notes": []})
        if kind == "tag":
            g["tags"].append(text)
        else:
            g["notes"].append({"text": text, "created_at": created})
    return out
