"""`alems tag GROUP [TAG…] [--note TEXT] [--remove TAG]`: label a batch (the dashboard
shows the labels; it never writes)."""

from __future__ import annotations

from typing import Annotated

import typer

from alems.cli._common import handle_errors
from alems.cli.analysis_cmds import DbOpt, _default_db


def tag_command(
    group_id: Annotated[str, typer.Argument(help="Batch session id, or 'latest'.")],
    tags: Annotated[list[str] | None, typer.Argument(
        help="Tags to add (one word each, e.g. new-kernel).")] = None,
    note: Annotated[str | None, typer.Option("--note", help="A note to add.")] = None,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", help="A tag to remove (repeatable).")] = None,
    db: DbOpt = None,  # type: ignore[assignment]
) -> None:
    """Tag and annotate a batch; `alems dashboard` shows its tags and notes."""
    from alems.analysis.groups import open_db, resolve_group
    from alems.store import db as store_db
    from alems.store.labels import label_group

    path = db or _default_db()
    ro = open_db(path)           # a clear error for a missing or foreign file
    try:
        group = resolve_group(ro, group_id)
    finally:
        ro.close()
    conn = store_db.connect(path, create=False)
    store_db.init_schema(conn)   # an older database gains the labels table
    try:
        done = label_group(conn, group.group_id, tags or [], note, remove or [])
    finally:
        conn.close()
    parts = [f"tagged {', '.join(done['added'])}" if done["added"] else "",
             f"untagged {', '.join(done['removed'])}" if done["removed"] else "",
             "note added" if done["note"] is not None else ""]
    print(f"{group.group_id}: " + ("; ".join(p for p in parts if p) or "nothing changed"))


def register(app) -> None:
    app.command("tag", help="Tag and annotate a batch (shown by `alems dashboard`).")(
        handle_errors(tag_command))
