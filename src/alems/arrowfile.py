"""Arrow/Parquet files opened by path bytes, so that any path the OS accepts works.

pyarrow encodes `str` paths as UTF-8, which fails on a folder name holding a byte that is not
UTF-8 (Python keeps it as a lone surrogate); `os.fsencode` gives the OS's own bytes, which
pyarrow's native files accept. Every pyarrow read or write by path goes through here."""

from __future__ import annotations

import os

import pyarrow as pa


def source(path: str | os.PathLike) -> pa.MemoryMappedFile:
    """A memory-mapped, read-only file for `pq.read_table`, `pq.ParquetFile`, `ipc.open_*`."""
    return pa.memory_map(os.fsencode(path), "r")


def reader(path: str | os.PathLike) -> pa.OSFile:
    """A plain read-only file: for a file that may still grow (a `.partial` stream)."""
    return pa.OSFile(os.fsencode(path), "rb")


def sink(path: str | os.PathLike) -> pa.OSFile:
    """A new file to write (truncating), e.g. for `pq.write_table` or `ipc.new_stream`."""
    return pa.OSFile(os.fsencode(path), "w")
