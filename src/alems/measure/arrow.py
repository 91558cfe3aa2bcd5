"""numpy <-> Arrow conversion on the buffers directly: pyarrow's own to_numpy() and
pa.array() import pandas (~1 s). Shared by the result, the samples stream and replay."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_OF = {pa.int64(): np.int64, pa.float64(): np.float64, pa.int32(): np.int32,
             pa.uint64(): np.uint64, pa.uint32(): np.uint32, pa.float32(): np.float32}
_ARROW_OF = {np.dtype(v): k for k, v in _NUMPY_OF.items()}


def arrow_to_numpy(col) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    dt = _NUMPY_OF.get(arr.type)
    if dt is None or arr.null_count:
        return arr.to_numpy(zero_copy_only=False)
    if len(arr) == 0:
        return np.zeros(0, dt)
    return np.frombuffer(arr.buffers()[1], dtype=dt, count=len(arr),
                         offset=arr.offset * np.dtype(dt).itemsize)


def numpy_to_arrow(values) -> pa.Array:
    """A numpy array as an Arrow array; a masked array's masked values become nulls."""
    mask = np.ma.getmask(values)
    a = np.ascontiguousarray(np.ma.getdata(values))
    nulls = mask is not np.ma.nomask and bool(mask.any())
    typ = _ARROW_OF.get(a.dtype)
    if typ is None:
        return pa.array(a, mask=mask if nulls else None)
    validity = pa.py_buffer(np.packbits(~mask, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(typ, len(a), [validity, pa.py_buffer(a)])


def arrow_to_masked(col) -> np.ndarray:
    """Like arrow_to_numpy, but an integer column with nulls becomes a masked array (its
    type kept) rather than floats with NaN."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (arr.null_count and pa.types.is_integer(arr.type)):
        return arrow_to_numpy(arr)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return np.ma.masked_array(arrow_to_numpy(arr.fill_null(0)), mask=null)


def table_from_columns(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.Table.from_arrays([numpy_to_arrow(v) for v in cols.values()], names=list(cols))
