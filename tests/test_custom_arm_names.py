"""A custom arm's stored name (its module:callable) is safe as text everywhere: the rule is
alems.catalog.arms.CUSTOM_ARM_PATTERN, and the schema's CHECK on runs.workflow_type refuses
what the rule refuses; a database made before custom arms (schema 4) is widened in place,
its rows kept."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from alems.catalog.arms import CUSTOM_ARM_MAX_CHARS, is_custom_arm, ordered_arms
from alems.store import db as store_db

SCHEMA = (Path(__file__).resolve().parents[1] / "src" / "alems" / "store" / "schema.sql")
GOOD = ["mypkg.agents:my_agent", "_arms:good", "a:b.c", "x" * 90 + ".y:z"]
# unsafe as text (or no module:callable at all): refused by the rule and by the schema
UNSAFE = ["my_agent", "mypkg.agents:", ":f", "a b:c", "a:b<script>", "a:b'c", "a:b\"c",
          "a:b,c", "a:b/c", "a;b:c", "é:f", "a:" + "f" * CUSTOM_ARM_MAX_CHARS, "a:b\nc",
          "a:b%{x}", "lineal", ""]
# safe text but no Python name: the rule refuses them (the schema checks characters only)
MALFORMED = ["a:b:c", "1a:f", "a..b:f"]


def _insert(conn, name) -> None:
    conn.execute("INSERT INTO runs (exp_id, workflow_type, run_number, status, started_at) "
                 "VALUES (1, ?, 1, 'ok', 't')", (name,))
    conn.execute("DELETE FROM runs")


def _db_with_a_run(path):
    conn = store_db.connect(path)
    conn.execute("INSERT INTO batch_sessions (group_id, created_at, settings_json) "
                 "VALUES ('g', 't', '{}')")
    conn.execute("INSERT INTO experiments (group_id, task_name, provider, workflows, "
                 "repetitions, created_at) VALUES ('g', 't', 'p', 'linear', 1, 't')")
    conn.commit()
    return conn


def test_the_rule_and_the_schema_check_agree(tmp_path):
    conn = _db_with_a_run(tmp_path / "x.db")
    for name in GOOD + ["linear", "agentic", "react"]:
        _insert(conn, name)
    for name in GOOD:
        assert is_custom_arm(name), name
    for name in UNSAFE + MALFORMED:
        assert not is_custom_arm(name), name
    for name in UNSAFE:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            _insert(conn, name)


def test_a_schema_4_database_is_widened_in_place_keeping_its_runs(tmp_path):
    path = tmp_path / "old.db"
    text = SCHEMA.read_text()
    old = re.sub(r"CHECK \(workflow_type IN \('linear', 'agentic', 'react'\) OR \(.*?\)\),",
                 "CHECK (workflow_type IN ('linear', 'agentic', 'react')),", text)
    assert old != text
    conn = sqlite3.connect(path)
    conn.executescript(old)
    conn.execute("INSERT INTO schema_info VALUES ('version', '4')")
    conn.execute("INSERT INTO batch_sessions (group_id, created_at, settings_json) "
                 "VALUES ('g', 't', '{}')")
    conn.execute("INSERT INTO experiments (group_id, task_name, provider, workflows, "
                 "repetitions, created_at) VALUES ('g', 't', 'p', 'linear', 1, 't')")
    conn.execute("INSERT INTO runs (exp_id, workflow_type, run_number, status, started_at) "
                 "VALUES (1, 'linear', 1, 'ok', 't')")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        _insert(conn, "mypkg:agent")
    conn.close()
    conn = store_db.connect(path)
    assert store_db.schema_version(conn) == store_db.SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT workflow_type FROM runs").fetchall() == [("linear",)]
    conn.execute("INSERT INTO runs (exp_id, workflow_type, run_number, status, started_at) "
                 "VALUES (1, 'mypkg:agent', 1, 'ok', 't')")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        _insert(conn, "a:b<script>")
    conn.close()
    conn = store_db.connect(path)   # the current version: nothing more to do
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)


def test_ordered_arms_puts_built_in_arms_first_then_custom_by_name():
    assert ordered_arms({"z:a", "react", "linear", "b:c"}) == ["linear", "react", "b:c", "z:a"]
