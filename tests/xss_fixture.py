"""A results database whose every stored text carries markup that would run script if a
page ever inserted it as HTML (issue 24, item 5): the dashboard's escaping is tested on it
without a browser (test_dashboard_safety) and in Chromium (test_dashboard_xss_browser)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from analysis_fixture import build_fixture_db

# Each sets window.__xss when run: as an element, as an attribute, and closing the
# <script type="application/json"> a figure's data sits in.
PAYLOAD = ("<img src=x onerror=window.__xss=1>\"'><svg onload=window.__xss=1>"
           "</script><script>window.__xss=1</script>&amp;")
# A group id is also a URL path segment: no '/' in it.
GROUP_PAYLOAD = "g<img src=x onerror=window.__xss=1>"
MARKERS = ("<img src=x", "<svg onload", "<script>window.__xss")

# table -> text columns a page may show (the ids, paths and times keep their meaning)
TEXT_COLUMNS = {
    "batch_sessions": ("command", "status"),
    "experiments": ("task_name", "provider", "model", "country", "workflows"),
    "baselines": ("host", "governor"),
    "runs": ("workflow_type", "item_id", "error", "answer", "expected", "response",
             "country", "not_quiet_reason", "host", "node_id", "cpu_model", "gpu_names",
             "energy_source", "status"),
    "phases": ("name", "kind"),
}


def _poison_json(text: str | None) -> str:
    """Every string value of a JSON object/list carries the payload too."""
    def walk(v):
        if isinstance(v, str):
            return v + PAYLOAD
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v
    try:
        return json.dumps(walk(json.loads(text)))
    except (TypeError, ValueError):
        return text


def build_xss_db(path: Path, *, group_id: str = GROUP_PAYLOAD) -> Path:
    """The analysis fixture, every shown text then suffixed with PAYLOAD, the group id
    replaced by `group_id`."""
    old_group = "g-20260110-100000"
    build_fixture_db(path, group_id=old_group, tasks=("gsm8k_basic",), reps=2)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA ignore_check_constraints = ON")   # a crafted or foreign shard
    for table, columns in TEXT_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for col in columns:
            if col in have:
                conn.execute(f"UPDATE {table} SET {col} = COALESCE({col}, '') || ?", (PAYLOAD,))
    for table, col, key in (("batch_sessions", "host_json", "rowid"),
                            ("batch_sessions", "settings_json", "rowid"),
                            ("phases", "detail_json", "rowid")):
        rows = conn.execute(f"SELECT {key}, {col} FROM {table}").fetchall()
        for rid, text in rows:
            conn.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (_poison_json(text), rid))
    for table in ("batch_sessions", "experiments"):
        conn.execute(f"UPDATE {table} SET group_id = ? WHERE group_id = ?", (group_id, old_group))
    for kind in ("tag", "note"):      # `alems tag` labels, shown on the groups list
        conn.execute("INSERT INTO group_labels (group_id, kind, text, created_at) "
                     "VALUES (?, ?, ?, ?)", (group_id, kind, PAYLOAD, PAYLOAD))
    tool = {"event": "tool", "step": PAYLOAD, "output": PAYLOAD, "error": False,   # the
            "call": {"name": PAYLOAD, "input": {"expression": PAYLOAD}}}          # tool table
    conn.execute("UPDATE runs SET trace_json = ?", (json.dumps([tool, {"event": "plan",
                                                                       "text": PAYLOAD}]),))
    conn.commit()
    conn.close()
    return path
