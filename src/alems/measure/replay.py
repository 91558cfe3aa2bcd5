"""ReplaySampler: the Sampler interface over a recorded (or synthesised) sample table.

Its samples come from a pyarrow Table or Parquet file, time-shifted so the first row is
at start(); stop() keeps the rows up to now (all of them if the run outlasts the table).
Phases work as with Sampler, so orchestration code can be tested deterministically.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alems.errors import AlemsError
from alems.measure.names import PHASES_METADATA_KEY
from alems.measure.protocol import PhaseMarks
from alems.measure.result import SampleResult
from alems.measure.arrow import arrow_to_numpy, numpy_to_arrow, table_from_columns
from alems import arrowfile


def synthetic_table(duration_s: float = 2.0, hz: float = 1000.0,
                    power_w: Mapping[str, float] | None = None,
                    counters_per_s: Mapping[str, float] | None = None,
                    energy_source: str = "powercap") -> pa.Table:
    """A table with constant power per domain and constant counter rates."""
    power_w = {"pkg": 20.0} if power_w is None else dict(power_w)
    counters_per_s = {} if counters_per_s is None else dict(counters_per_s)
    n = max(2, int(round(duration_s * hz)) + 1)
    t_ns = (np.arange(n, dtype=np.int64) * int(round(1e9 / hz)))
    t_s = t_ns / 1e9
    cols: dict[str, np.ndarray] = {"t_ns": t_ns}
    for dom, w in power_w.items():
        cols[f"{dom}_energy_uj"] = t_s * w * 1e6
    for name, rate in counters_per_s.items():
        cols[name] = np.floor(t_s * rate).astype(np.int64)
    meta = {b"energy_source": energy_source.encode(), b"rate_hz": repr(float(hz)).encode()}
    return table_from_columns(cols).replace_schema_metadata(meta)


class ReplaySampler(PhaseMarks):
    def __init__(self, table: pa.Table | str | os.PathLike, *, energy_source: str | None = None,
                 hz: float | None = None):
        if not isinstance(table, pa.Table):
            try:
                table = pq.read_table(arrowfile.source(table))
            except (OSError, pa.ArrowInvalid) as exc:
                raise AlemsError(f"cannot read samples from {table}: {exc}; "
                                 "give a Parquet file written by alems") from None
        if "t_ns" not in table.column_names or table.num_rows < 1:
            raise AlemsError("replay table needs a t_ns column and at least one row")
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        self._meta = {k: v for k, v in meta.items() if k not in (PHASES_METADATA_KEY, "summary")}
        self._table = table.replace_schema_metadata(None)
        self._t = arrow_to_numpy(table.column("t_ns")).astype(np.int64)
        self.energy_source = energy_source or meta.get("energy_source", "replay")
        if hz is None:
            hz = float(meta["rate_hz"]) if "rate_hz" in meta else (
                1e9 / float(np.median(np.diff(self._t))) if len(self._t) > 1 else 1.0)
        self.hz = float(hz)
        self.result: SampleResult | None = None
        self._shift: int | None = None
        self._init_phases()

    def start(self) -> None:
        if self._shift is not None:
            raise AlemsError("sampler already started; call stop() first")
        self._shift = time.monotonic_ns() - int(self._t[0])
        self.result = None

    def stop(self) -> SampleResult:
        if self._shift is None:
            if self.result is not None:
                return self.result
            raise AlemsError("sampler was not started; call start() first")
        now = time.monotonic_ns()
        shifted = self._t + self._shift
        n = max(1, int(np.searchsorted(shifted, now, side="right")))
        table = self._table.slice(0, n).set_column(
            0 if self._table.column_names[0] == "t_ns" else self._table.column_names.index("t_ns"),
            "t_ns", numpy_to_arrow(shifted[:n].astype(np.int64)))
        meta = dict(self._meta)
        meta["replay"] = "true"
        extra = {"sources": ["replay"], "replay": True}
        if "estimate_model" in meta:
            with contextlib.suppress(ValueError):
                extra["estimate_model"] = json.loads(meta["estimate_model"])
        self.result = SampleResult(table, self._phases_until(int(shifted[n - 1])),
                                   self.energy_source, self.hz, {}, meta, extra)
        self._shift = None
        return self.result

    def __enter__(self) -> ReplaySampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._shift is not None:
            self.stop()
