"""Write a Parquet file so that a crash never leaves half a file under the final name,
and never replace a device node, FIFO or socket with a regular file (see alems.outputs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from alems.outputs import atomic_target


def write_parquet_atomic(table: pa.Table, path) -> int:
    """Write `table` as Parquet through `write_atomic`."""
    return write_atomic(path, lambda fh: pq.write_table(table, fh, compression="zstd"))


def write_atomic(path, write: Callable[[BinaryIO], object]) -> int:
    """`write(fh)` into a temporary file in the same folder (alems.outputs' naming rule),
    fsync, rename onto `path`, fsync the folder; remove the temporary on any failure. A
    character device or FIFO target is written in place. Returns the bytes
    written (the file size for a regular file)."""
    path = Path(path)
    with atomic_target(path) as target, open(target, "wb") as fh:
        write(fh)
        fh.flush()
        written = fh.tell() if fh.seekable() else None
        if target != path:
            os.fsync(fh.fileno())
    return written if written is not None else 0
