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

While a run is measured its samples stream to ``run_id=<r>.parquet.partial`` beside where
its file will be (Arrow IPC, alems.measure.stream; the dashboard's live view reads the
newest one), <r> being the id the run expects; the store converts it into the Parquet
file. A partial file nobody writes any more belongs to a run that was killed: the next
start of the session discards it (the run is redone), never storing it as a run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from alems.atomic_io import write_parquet_atomic
from alems.errors import AlemsError
from alems.atomic_io import remove_dead_tmps
from alems.measure import stream
from alems.measure.names import PARTIAL_SUFFIX, PHASES_METADATA_KEY, RUN_METADATA_KEY
from alems import arrowfile

SAMPLES_DIRNAME = "samples"
PHASES_KEY = PHASES_METADATA_KEY.encode()
RUN_KEY = RUN_METADATA_KEY.encode()
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


def stored_file(db_path, samples_path: str | None) -> Path | None:
    """The file a run's `runs.samples_path` names (relative to the database's folder),
    refused unless it lies inside the samples folder: the column is data, and a database
    from elsewhere must not make A-LEMS read (or export) any other file."""
    if not samples_path:
        return None
    db_dir = Path(os.path.abspath(db_path)).parent
    path = Path(os.path.realpath(db_dir / samples_path))
    root = Path(os.path.realpath(samples_root(db_path)))
    if root not in path.parents:
        raise AlemsError(f"runs.samples_path {samples_path!r} points outside the samples folder "
                         f"{root}; refusing to read it (the database was edited or comes from "
                         "elsewhere)")
    return path


def relative_to_db(db_path, path: Path) -> str:
    return os.path.relpath(path, Path(os.path.abspath(db_path)).parent)


def _file_metadata(metadata: dict | None, phases: list[dict] | None,
                   run: dict | None) -> dict[bytes, bytes]:
    meta: dict[bytes, bytes] = {}
    for key, value in (metadata or {}).items():
        meta[str(key).encode()] = (value if isinstance(value, str)
                                   else json.dumps(value, default=str)).encode()
    meta[PHASES_KEY] = json.dumps(phases or [], default=str).encode()
    meta[RUN_KEY] = json.dumps(run or {}, default=str).encode()
    return meta


def write_samples(path: Path, table: pa.Table, *, metadata: dict | None = None,
                  phases: list[dict] | None = None, run: dict | None = None) -> int:
    """Write `table` (+ metadata, phases, run identity) atomically; returns the file size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**(table.schema.metadata or {}), **_file_metadata(metadata, phases, run)}
    table = table.replace_schema_metadata(meta)
    return write_parquet_atomic(table, path)


def write_streamed_samples(path: Path, partial, *, metadata: dict | None = None,
                           phases: list[dict] | None = None, run: dict | None = None) -> int:
    """Convert a run's samples stream into its Parquet file (as write_samples), batch by
    batch, and remove the stream; returns the file size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k.decode(): v.decode() for k, v in _file_metadata(metadata, phases, run).items()}
    stream.stream_to_parquet(partial, path, meta)
    return path.stat().st_size


def new_partial_path(db_path, group_id: str, exp_id: int, run_id: int) -> Path:
    """Where a run that expects id `run_id` streams its samples: `<its samples path>.partial`
    (the next free id's name if another run streams there already)."""
    while True:
        partial = stream.partial_path_of(samples_path(db_path, group_id, exp_id, run_id))
        if not partial.exists():
            partial.parent.mkdir(parents=True, exist_ok=True)
            return partial
        run_id += 1


def discard_dead_partials(db_path, group_id: str) -> list[tuple[Path, dict]]:
    """Delete the samples streams of `group_id`'s runs that were killed (no writer holds
    them); returns each with {samples, duration_s} it held. Live streams stay."""
    root = group_dir(db_path, group_id)
    if not root.is_dir():
        return []
    gone = []
    for partial in sorted(root.glob(f"exp_id=*/run_id=*{PARTIAL_SUFFIX}")):
        if stream.is_live(partial):
            continue
        try:
            held = stream.count(partial)
        except AlemsError:
            held = {"samples": 0, "duration_s": 0.0}
        try:
            partial.unlink()
        except OSError:
            continue
        gone.append((partial, held))
    return gone


def read_phases(path) -> list[dict]:
    meta = pq.read_schema(arrowfile.source(path)).metadata or {}
    return json.loads(meta.get(PHASES_KEY, b"[]"))


def read_run_identity(path) -> dict:
    meta = pq.read_schema(arrowfile.source(path)).metadata or {}
    return json.loads(meta.get(RUN_KEY, b"{}"))


def _run_id_of(path: Path) -> int | None:
    m = re.match(r"^run_id=(\d+)\.parquet$", path.name)
    return int(m.group(1)) if m else None


def remove_orphans(db_path, group_id: str, known_run_ids: Iterable[int]) -> list[Path]:
    """Delete files of `group_id` that no committed run row points at (a run killed between
    its Parquet write and its commit) and leftover temporary files. Returns what went."""
    root = group_dir(db_path, group_id)
    if not root.is_dir():
        return []
    known = set(int(r) for r in known_run_ids)
    removed = []
    for folder in sorted(root.glob("exp_id=*")):
        removed += remove_dead_tmps(folder)
    for file in sorted(root.glob("exp_id=*/run_id=*")):
        run_id = _run_id_of(file)
        if run_id is not None and run_id not in known:
            try:
                file.unlink()
                removed.append(file)
            except OSError:
                pass
    return removed
