"""Write a Parquet file so that a crash never leaves half a file under the final name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_atomic(table: pa.Table, path, tmp_path) -> int:
    """Write `table` to `tmp_path` (same folder), fsync, rename onto `path`, fsync the
    folder; remove the temporary on any failure. Returns the file size in bytes."""
    return write_atomic(path, tmp_path,
                        lambda fh: pq.write_table(table, fh, compression="zstd"))


def write_atomic(path, tmp_path, write: Callable[[BinaryIO], object]) -> int:
    """`write(fh)` into `tmp_path` (same folder), fsync, rename onto `path`, fsync the
    folder; remove the temporary on any failure. Returns the file size in bytes."""
    path, tmp_path = Path(path), Path(tmp_path)
    try:
        with open(tmp_path, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path.stat().st_size
