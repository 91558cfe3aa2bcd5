"""What one sampling run produced: SampleResult (samples as an Arrow table, phases,
summary, file metadata), and how raw C slots become its columns (wrap correction, units).

numpy <-> Arrow conversion works on the buffers directly: pyarrow's own to_numpy() and
pa.array() import pandas (~1 s).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from alems.atomic_io import write_parquet_atomic
from alems.errors import AlemsError
from alems.measure import estimate
from alems.measure.gaps import gap_reason, gaps_within
from alems.measure.names import DOMAINS, PHASES_METADATA_KEY
from alems.measure.sources.base import Column

# Instantaneous columns: not summed as counters in the summary.
GAUGES = ("procs_running", "package_temp_c")


@dataclass
class Phase:
    name: str
    kind: str
    start_ns: int
    end_ns: int | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ numpy <-> arrow

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
    a = np.ascontiguousarray(values)
    typ = _ARROW_OF.get(a.dtype)
    if typ is None:
        return pa.array(a)
    return pa.Array.from_buffers(typ, len(a), [None, pa.py_buffer(a)])


def table_from_columns(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.Table.from_arrays([numpy_to_arrow(v) for v in cols.values()], names=list(cols))


# ------------------------------------------------------------------ result

def _interp(t: np.ndarray, y: np.ndarray, at: int) -> float:
    return float(np.interp(float(at), t.astype(np.float64), y.astype(np.float64)))


class SampleResult:
    """Samples (Arrow table), phases, summary and file metadata of one sampling run."""

    def __init__(self, table: pa.Table, phases: list[Phase], energy_source: str,
                 requested_hz: float, stats: dict | None = None,
                 metadata: dict[str, str] | None = None, extra_summary: dict | None = None):
        self.table = table
        self.phases = [Phase(**p.to_dict()) for p in phases]
        self.energy_source = energy_source
        self.domains = [d for d in DOMAINS if f"{d}_energy_uj" in table.column_names]
        self.requested_hz = float(requested_hz)
        self._t = arrow_to_numpy(table.column("t_ns")) if table.num_rows else np.zeros(0, np.int64)
        self.t_start_ns = int(self._t[0]) if len(self._t) else 0
        self.t_end_ns = int(self._t[-1]) if len(self._t) else 0
        # Gaps that could hide a whole counter wrap (alems.measure.gaps), from the sampler.
        self.wrap_gaps = list((extra_summary or {}).get("wrap_gaps") or [])
        self.summary = self._summarize(stats or {}, extra_summary or {})
        self.metadata = dict(metadata or {})
        self.metadata["energy_source"] = energy_source
        self.metadata["summary"] = json.dumps(self.summary, default=str, sort_keys=True)

    # -------------------------------------------------------------- queries
    def _col(self, name: str) -> np.ndarray | None:
        if name not in self.table.column_names:
            return None
        return arrow_to_numpy(self.table.column(name))

    def _bounds(self, t0_ns, t1_ns) -> tuple[int, int]:
        t0 = self.t_start_ns if t0_ns is None else int(t0_ns)
        t1 = self.t_end_ns if t1_ns is None else int(t1_ns)
        return t0, t1

    def energy_uj(self, t0_ns: int | None = None,
                  t1_ns: int | None = None) -> dict[str, float | None]:
        """Energy per canonical domain between t0 and t1, interpolated at the bounds; None
        (see `energy_null_reason`) with fewer than 2 samples or across a gap that could
        hide a whole counter wrap."""
        t0, t1 = self._bounds(t0_ns, t1_ns)
        out: dict[str, float | None] = {}
        for d in self.domains:
            if self.energy_null_reason(d, t0, t1) is not None:
                out[d] = None
                continue
            y = self._col(f"{d}_energy_uj")
            out[d] = _interp(self._t, y, t1) - _interp(self._t, y, t0)
        return out

    def energy_null_reason(self, domain: str, t0_ns: int | None = None,
                           t1_ns: int | None = None) -> str | None:
        """Why the energy of `domain` between t0 and t1 is unknown (None: it is known)."""
        if len(self._t) < 2:
            return (f"only {len(self._t)} sample(s): energy needs two (the run was shorter "
                    "than one sampling period, or the sampler failed)")
        t0, t1 = self._bounds(t0_ns, t1_ns)
        hit = gaps_within(self.wrap_gaps, domain, t0, t1)
        return gap_reason(max(hit, key=lambda g: g["gap_s"])) if hit else None

    def counter_delta(self, name: str, t0_ns: int | None = None, t1_ns: int | None = None):
        """Increase of a cumulative counter column between t0 and t1 (None if absent)."""
        y = self._col(name)
        if y is None or len(y) == 0:
            return None
        if t0_ns is None and t1_ns is None:
            return (y[-1] - y[0]).item()
        t0, t1 = self._bounds(t0_ns, t1_ns)
        return _interp(self._t, y, t1) - _interp(self._t, y, t0)

    # -------------------------------------------------------------- summary
    def counter_columns(self) -> list[str]:
        names = []
        for f in self.table.schema:
            if f.name == "t_ns" or f.name.endswith("_energy_uj") or f.name in GAUGES:
                continue
            if pa.types.is_integer(f.type):
                names.append(f.name)
        return names

    def _summarize(self, stats: dict, extra: dict) -> dict:
        n = len(self._t)
        duration_s = (self.t_end_ns - self.t_start_ns) / 1e9 if n >= 2 else 0.0
        energy_j: dict[str, float | None] = {}
        warnings: list[str] = []
        for d in self.domains:
            why = self.energy_null_reason(d)
            y = self._col(f"{d}_energy_uj")
            energy_j[d] = None if why else float(y[-1] - y[0]) / 1e6
            if why:
                warnings.append(f"energy_j.{d} is null: {why}")
        gaps = np.diff(self._t) if n >= 2 else np.zeros(0, np.int64)
        summary = {
            "duration_s": duration_s,
            "samples": n,
            "requested_hz": self.requested_hz,
            "achieved_hz": (n - 1) / duration_s if duration_s > 0 else 0.0,
            "late_samples": int(stats.get("late", 0)),
            "max_lateness_ns": int(stats.get("max_lateness_ns", 0)),
            "dropped_samples": int(stats.get("dropped", 0)),
            "skipped_deadlines": int(stats.get("skipped", 0)),
            "energy_source": self.energy_source,
            "energy_j": energy_j,
            "avg_power_w": {d: (e / duration_s if duration_s > 0 and e is not None else None)
                            for d, e in energy_j.items()},
            "max_gap_ns": int(gaps.max()) if len(gaps) else None,
            "warnings": warnings,
            "counters": {c: self.counter_delta(c) for c in self.counter_columns()},
        }
        if "thread_cpu_ns" in stats:
            summary["sampler_cpu_s"] = stats["thread_cpu_ns"] / 1e9
            summary["read_ns_per_sample"] = (stats["read_ns_total"] / stats["samples"]
                                             if stats.get("samples") else None)
        summary.update(extra)
        return summary

    # -------------------------------------------------------------- output
    def file_metadata(self) -> dict[str, str]:
        meta = dict(self.metadata)
        meta[PHASES_METADATA_KEY] = json.dumps([p.to_dict() for p in self.phases], default=str)
        return meta

    def write_parquet(self, path) -> None:
        """Atomic: write a temporary file in the same folder, fsync, rename."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise AlemsError(f"cannot write {path}: folder {folder} does not exist; create it")
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        meta = {**(self.table.schema.metadata or {}),
                **{k.encode(): str(v).encode() for k, v in self.file_metadata().items()}}
        table = self.table.replace_schema_metadata(meta)
        try:
            write_parquet_atomic(table, path, tmp)
        except OSError as exc:
            raise AlemsError(f"cannot write {path}: {exc.strerror or exc}; "
                             "choose a writable location") from None


# ------------------------------------------------------------------ raw -> columns

def wrap_corrected(raw: np.ndarray, wrap: int | None) -> np.ndarray:
    """Cumulative increase since the first sample, adding `wrap` to every negative step."""
    raw = np.asarray(raw, dtype=np.int64)
    if len(raw) == 0:
        return np.zeros(0, np.float64)
    d = np.diff(raw)
    if wrap:
        d = np.where(d < 0, d + wrap, d)
    return np.concatenate([[0], np.cumsum(d)]).astype(np.float64)


def build_columns(t_ns: np.ndarray, raw: np.ndarray, columns: list[Column],
                  estimate_info: dict | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """raw[:, i] belongs to columns[i]; return ({name: array}, {name: unit})."""
    out: dict[str, np.ndarray] = {"t_ns": np.asarray(t_ns, np.int64)}
    units: dict[str, str] = {"t_ns": "ns (CLOCK_MONOTONIC)"}
    energy: dict[str, list[tuple[Column, np.ndarray]]] = {}
    temps: list[np.ndarray] = []
    rest: dict[str, np.ndarray] = {}
    for i, col in enumerate(columns):
        r = raw[:, i]
        if col.kind == "energy":
            energy.setdefault(col.domain, []).append((col, wrap_corrected(r, col.wrap_raw) * col.scale))
        elif col.kind == "temp":
            temps.append(r * col.scale)
        elif col.kind == "counter":
            rest[col.name] = (r - r[0]) if len(r) else r
        else:
            rest[col.name] = r.copy()
    if estimate_info is not None:
        if estimate.CPU_TICKS_COLUMN in rest:
            cpu_ns = estimate.ticks_to_ns(rest.pop(estimate.CPU_TICKS_COLUMN))
        else:
            cpu_ns = rest["task_clock_ns"]
        out["pkg_energy_uj"] = estimate.energy_uj_from_cpu_ns(cpu_ns, estimate_info["w_per_core"])
        units["pkg_energy_uj"] = "uJ (estimate: CPU time x W/core)"
    for d in DOMAINS:
        if d in energy:
            out[f"{d}_energy_uj"] = np.sum([a for _, a in energy[d]], axis=0)
            units[f"{d}_energy_uj"] = "uJ"
    for d in DOMAINS:
        if d in energy and len(energy[d]) > 1:  # per-zone detail where a domain has several
            for col, a in energy[d]:
                out[col.name] = a
                units[col.name] = "uJ"
    for name, arr in rest.items():
        out[name] = arr.astype(np.int64)
        units[name] = ("ns" if name.endswith("_ns") else "us" if name.endswith("_us")
                       else "count")
    if temps:
        out["package_temp_c"] = np.max(np.vstack(temps), axis=0).astype(np.float64)
        units["package_temp_c"] = "degC (hottest package zone)"
    return out, units
