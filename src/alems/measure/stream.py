"""Samples streamed to disk while they are taken, so a run of any length fits in bounded
memory and a kill loses at most the last drain interval.

While a run goes on, its samples are in `<final path>.partial`: an Arrow IPC stream
(`pyarrow.ipc.open_stream` reads it at any moment, after a kill too) with the columns of
the final file and the sampler's static metadata in its schema. The writer holds an
exclusive flock on it for as long as it writes, so a partial file nobody holds belongs to
a run that died (`is_live`). At a normal end `stream_to_parquet` converts the stream batch
by batch into the Parquet file (temporary file, fsync, atomic rename) and removes the
stream; after a kill `recover` does the same and marks the file as recovered.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import stat
from pathlib import Path
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from alems.atomic_io import write_atomic
from alems.flock import held_elsewhere
from alems.errors import AlemsError
from alems.measure.names import PARTIAL_SUFFIX, RECOVERED_METADATA_KEY
from alems.measure.arrow import numpy_to_arrow
from alems import arrowfile

# A Parquet row group holds about this many seconds of samples, within the row bounds
# (the conversion buffers one group; large groups made the peak RSS grow with the run at
# 20 kHz, measured: +21 MB for 3 min vs 10 s with 2**18 rows, <= 5 MB with 2**14).
ROW_GROUP_S = 8.0
ROW_GROUP_ROWS = (4096, 1 << 14)


def _row_group_rows(meta: dict[bytes, bytes]) -> int:
    try:
        hz = float(meta.get(b"rate_hz", b"1000"))
    except ValueError:
        hz = 1000.0
    if not math.isfinite(hz) or hz <= 0:  # damaged metadata ("nan"): only sizes the groups
        hz = 1000.0
    return int(min(max(hz * ROW_GROUP_S, ROW_GROUP_ROWS[0]), ROW_GROUP_ROWS[1]))


def partial_path_of(final) -> Path:
    """`run.parquet` -> `run.parquet.partial` (same folder)."""
    final = Path(final)
    return final.with_name(final.name + PARTIAL_SUFFIX)


def check_no_partial(final) -> Path:
    """The stream a run writing `final` will use; a leftover one (a killed run) is never
    overwritten. Returns its path."""
    partial = partial_path_of(final)
    if is_live(partial):
        raise AlemsError(f"{partial} is being written by another running sampler; "
                         "choose another output")
    if partial.exists():
        raise AlemsError(f"{partial} holds the samples of a run that was killed; keep them "
                         f"with `alems sample --recover {final}`, or delete that file")
    return partial


def is_live(partial) -> bool:
    """True while a writer holds `partial` (its flock); False for a dead run's file."""
    return held_elsewhere(partial) is True


class PartialWriter:
    """Appends record batches to a new `<final>.partial` Arrow IPC stream, each written
    through to the OS at once (a kill loses nothing already written)."""

    def __init__(self, path, schema: pa.Schema, metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.schema = schema.with_metadata(
            {str(k): str(v) for k, v in (metadata or {}).items()})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise AlemsError(f"{self.path} already exists (samples of another run); "
                             "recover or delete it first") from None
        except OSError as exc:
            raise AlemsError(f"cannot create {self.path}: {exc.strerror or exc}; "
                             "choose a writable location") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        # Arrow's own file: each batch goes to the OS at once, without Python in between.
        self._fh = arrowfile.sink(self.path)
        self._writer = ipc.new_stream(self._fh, self.schema)
        self.samples = 0
        # The first write error (a full disk): later samples are dropped, not written
        # after a hole; close() reports it. What was written before stays readable.
        self.error: OSError | None = None
        self.dropped = 0

    def write(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["t_ns"])
        if not n:
            return
        if self.error is not None:
            self.dropped += n
            return
        batch = pa.RecordBatch.from_arrays([numpy_to_arrow(cols[f.name]) for f in self.schema],
                                           schema=self.schema)
        try:
            self._writer.write_batch(batch)
        except OSError as exc:  # runs in the drain thread: never let it die with a traceback
            self.error = exc
            self.dropped += n
            return
        self.samples += n

    def close(self) -> None:
        """End-of-stream marker, close, release the lock (the file stays). AlemsError when
        a write failed: the samples before it are in the stream (`--recover`)."""
        if self._fh is None:
            return
        try:
            self._writer.close()
        except OSError as exc:
            self.error = self.error or exc
        finally:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
            os.close(self._lock_fd)
        if self.error is not None:
            why = getattr(self.error, "strerror", None) or str(self.error)
            raise AlemsError(f"writing the samples stream {self.path} failed after "
                             f"{self.samples:,} samples ({why}); {self.dropped:,} later samples "
                             "were lost. The ones before are kept: free space, then run "
                             f"`alems sample --recover {_final_of(self.path)}`")


def _final_of(partial: Path) -> Path:
    return partial.with_name(partial.name[:-len(PARTIAL_SUFFIX)])


def read_batches(partial) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The stream's schema and its complete batches; a batch cut off by a kill ends the
    iteration instead of failing. Reads from a plain file: no mapping stays resident."""
    try:
        mode = os.stat(partial).st_mode
    except OSError as exc:
        raise AlemsError(f"cannot read {partial}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):  # a directory fails to open, a FIFO would block for ever
        raise AlemsError(f"{partial} is not a regular file, so not a samples stream; "
                         "nothing to recover")
    src = arrowfile.reader(partial)
    try:
        reader = ipc.open_stream(src)
    except (pa.ArrowInvalid, OSError) as exc:
        src.close()
        raise AlemsError(f"{partial} holds no samples stream ({exc}); nothing to recover") \
            from None
    t_field = reader.schema.field("t_ns") if "t_ns" in reader.schema.names else None
    if t_field is None or not pa.types.is_integer(t_field.type):
        src.close()
        got = "no t_ns column" if t_field is None else f"t_ns of type {t_field.type}"
        raise AlemsError(f"{partial} is not a samples stream of A-LEMS ({got}, not integer "
                         "nanoseconds); nothing to recover")

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, OSError):
                    return  # cut off mid-batch by a kill: what came before is complete
        finally:
            src.close()

    return reader.schema, batches()


def _t_span(batch: pa.RecordBatch, partial) -> tuple[int, int]:
    """First and last t_ns of a non-empty batch; a null t_ns is a damaged stream."""
    t = batch.column(batch.schema.get_field_index("t_ns"))
    if t.null_count:
        raise AlemsError(f"{partial}: {t.null_count:,} samples without a time (null t_ns); "
                         "the stream is damaged, nothing recovered")
    return t[0].as_py(), t[-1].as_py()


def read_partial(partial) -> pa.Table:
    """Every complete batch of the stream as one table."""
    schema, batches = read_batches(partial)
    return pa.Table.from_batches(list(batches), schema=schema)


def stream_to_parquet(partial, final, metadata: dict[str, str] | None = None) -> dict:
    """Convert the stream into the Parquet file `final` (its schema metadata plus
    `metadata`), atomically, then remove the stream. Memory: one row group at a time.
    Returns {samples, duration_s} of what was converted."""
    partial, final = Path(partial), Path(final)
    schema, batches = read_batches(partial)
    meta = {**(schema.metadata or {}),
            **{str(k).encode(): str(v).encode() for k, v in (metadata or {}).items()}}
    schema = schema.with_metadata(meta)
    group = _row_group_rows(meta)
    seen: dict[str, int] = {"samples": 0}

    def write(fh) -> None:
        with pq.ParquetWriter(fh, schema, compression="zstd", use_dictionary=False) as writer:
            pending, rows = [], 0
            for batch in batches:
                if not batch.num_rows:
                    continue
                first, last = _t_span(batch, partial)
                seen.setdefault("t0", first)
                seen["t1"] = last
                seen["samples"] += batch.num_rows
                pending.append(batch)
                rows += batch.num_rows
                if rows >= group:
                    writer.write_table(pa.Table.from_batches(pending, schema=schema),
                                       row_group_size=group)
                    pending, rows = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema=schema),
                                   row_group_size=group)

    write_atomic(final, write)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    duration = (seen["t1"] - seen["t0"]) / 1e9 if seen["samples"] >= 2 else 0.0
    return {"samples": seen["samples"], "duration_s": duration}


def recover(final) -> dict:
    """After a kill: turn `<final>.partial` into `final`, marked recovered in its metadata
    (key RECOVERED_METADATA_KEY: samples, seconds, when). Returns {samples, duration_s}."""
    final = Path(final)
    partial = partial_path_of(final)
    if not partial.exists():
        raise AlemsError(f"nothing to recover: {partial} does not exist")
    if is_live(partial):
        raise AlemsError(f"{partial} is still being written by a running sampler; "
                         "recover it after that run ends")
    counted = count(partial)
    mark = {**counted, "recovered_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "from": partial.name}
    return stream_to_parquet(partial, final, {RECOVERED_METADATA_KEY: json.dumps(mark)})


def count(partial) -> dict:
    """{samples, duration_s} held by a stream, reading only its t_ns column batch by batch."""
    _, batches = read_batches(partial)
    n, t0, t1 = 0, 0, 0
    for batch in batches:
        if batch.num_rows:
            first, last = _t_span(batch, partial)
            t0 = t0 if n else first
            t1 = last
            n += batch.num_rows
    return {"samples": n, "duration_s": (t1 - t0) / 1e9 if n >= 2 else 0.0}
