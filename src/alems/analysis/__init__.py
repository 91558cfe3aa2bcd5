"""From recorded runs to results: statistics (stats), `alems summary` (summary),
`alems plan-reps` (plan_reps), `alems export` (export), `alems report` (report, figures),
`alems status` (status). `groups.open_db` / `groups.resolve_group` pick the database and
batch every command works on; `frames` and `samples` read rows and Parquet samples."""

from alems.analysis.groups import LATEST, Group, open_db, resolve_group

__all__ = ["LATEST", "Group", "open_db", "resolve_group"]
