"""Full-rate samples of one run in one Parquet file, beside the SQLite index.

Layout (hive-style partitions, so ``pandas.read_parquet(<db dir>/samples)`` and
``polars.scan_parquet(..., hive_partitioning=True)`` see group_id/exp_id/run_id columns)::

    <db dir>/samples/group_id=<g>/exp_id=<e>/run_id=<r>.parquet

The file holds the sampler's table unchanged (one row per sample, ``t_ns`` first) and, in
the Parquet key-value metadata:

- the sampler's own metadata (sources, rate, host, units, …), keys as given;
- ``alems.phases``: JSON list of phase marks ``{seq, name, kind, parent_seq, start_ns,
  end_ns, duration_ns, energy_uj, detail}`` on the samples' clock;
- ``alems.run``: JSON with group_id, exp_id, run_id, workflow_type, run_number.

Writes are atomic: a temporary file in the same folder, fsync, rename, fsync of the folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from alems.atomic_io import write_parquet_atomic
from alems.errors import AlemsError
from alems.measure.names import PHASES_METADATA_KEY, RUN_METADATA_KEY

SAMPLES_DIRNAME = "samples"
PHASES_KEY = PHASES_METADATA_KEY.encode()
RUN_KEY = RUN_METADATA_KEY.encode()
TMP_SUFFIX = ".tmp"
_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def samples_root(db_path) -> Path:
    return Path(os.path.abspath(db_path)).parent / SAMPLES_DIRNAME


def check_group_id(group_id: str) -> None:
    """A group id names a folder: only letters, digits, '.', '_' and '-'."""
    if not _SAFE.match(str(group_id)):
        raise AlemsError(f"group id {group_id!r} may only hold letters, digits, '.', '_' "
                         "and '-'; pass another --group-id")


def group_dir(db_path, group_id: str) -> Path:
    """<db dir>/samples/group_id=<g>"""
    check_group_id(group_id)
    return samples_root(db_path) / f"group_id={group_id}"


def samples_path(db_path, group_id: str, exp_id: int, run_id: int) -> Path:
    """<db dir>/samples/group_id=<g>/exp_id=<e>/run_id=<r>.parquet"""
    return group_dir(db_path, group_id) / f"exp_id={int(exp_id)}" / f"run_id={int(run_id)}.parquet"


def relative_to_db(db_path, path: Path) -> str:
    return os.path.relpath(path, Path(os.path.abspath(db_path)).parent)


def write_samples(path: Path, table: pa.Table, *, metadata: dict | None = None,
                  phases: list[dict] | None = None, run: dict | None = None) -> int:
    """Write `table` (+ metadata, phases, run identity) atomically; returns the file size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[bytes, bytes] = dict(table.schema.metadata or {})
    for key, value in (metadata or {}).items():
        meta[str(key).encode()] = (value if isinstance(value, str)
                                   else json.dumps(value, default=str)).encode()
    meta[PHASES_KEY] = json.dumps(phases or [], default=str).encode()
    meta[RUN_KEY] = json.dumps(run or {}, default=str).encode()
    table = table.replace_schema_metadata(meta)
    return write_parquet_atomic(table, path, path.with_name(path.name + TMP_SUFFIX))


def read_phases(path) -> list[dict]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(PHASES_KEY, b"[]"))


def read_run_identity(path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(RUN_KEY, b"{}"))


def _run_id_of(path: Path) -> int | None:
    m = re.match(r"^run_id=(\d+)\.parquet(\.tmp)?$", path.name)
    return int(m.group(1)) if m else None


def remove_orphans(db_path, group_id: str, known_run_ids: Iterable[int]) -> list[Path]:
    """Delete files of `group_id` that no committed run row points at (a run killed between
    its Parquet write and its commit) and leftover temporary files. Returns what went."""
    root = group_dir(db_path, group_id)
    if not root.is_dir():
        return []
    known = set(int(r) for r in known_run_ids)
    removed = []
    for file in sorted(root.glob("exp_id=*/run_id=*")):
        run_id = _run_id_of(file)
        if file.name.endswith(TMP_SUFFIX) or (run_id is not None and run_id not in known):
            try:
                file.unlink()
                removed.append(file)
            except OSError:
                pass
    return removed
