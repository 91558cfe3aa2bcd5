"""`alems merge OUT.db IN.db…`: join databases (e.g. the shards of one batch) and their
sample folders into one (see `alems.store.merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alems.cli._common import handle_errors


def merge_command(
    out: Annotated[Path, typer.Argument(help="Database to merge into (created if absent); "
                                        "samples go to <its folder>/samples/.")],
    inputs: Annotated[list[Path], typer.Argument(help="Databases to merge (their samples "
                                                 "folders beside them).")],
) -> None:
    """Merge A-LEMS databases and their Parquet samples into OUT, refusing duplicate runs."""
    from alems.analysis.stored_summary import store_groups
    from alems.store.db import connect
    from alems.store.merge import merge

    counts = merge(out, inputs)
    for c in counts:
        print(c.line())
    print(f"{out}: {sum(c.runs for c in counts)} run(s) merged from {len(counts)} database(s)")
    groups = [g for c in counts for g in c.sessions]
    if groups:  # what the dashboard and `alems summary` read back (analysis.stored_summary)
        conn = connect(out)
        try:
            kept = store_groups(conn, out, groups)
        finally:
            conn.close()
        if kept:
            print(f"{out}: summary kept for {kept} batch(es)")


def register(app) -> None:
    app.command("merge", help="Merge databases (e.g. `alems batch --shard K/N` shards) and "
                "their sample folders into one; duplicate runs are refused.")(
        handle_errors(merge_command))
