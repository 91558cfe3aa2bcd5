"""How raw C slots become a run's columns: wrap correction, units and the estimate, one
drained chunk at a time (a chunk costs the same at the end of a long run as at its start)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from alems.measure import estimate
from alems.measure.names import DOMAINS
from alems.measure.arrow import table_from_columns
from alems.measure.sources.base import Column


# ------------------------------------------------------------------ raw -> columns

def build_columns(t_ns: np.ndarray, raw: np.ndarray, columns: list[Column],
                  estimate_info: dict | None,
                  nulls: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """raw[:, i] belongs to columns[i]; return ({name: array}, {name: unit})."""
    builder = ColumnBuilder(columns, estimate_info)
    return builder.add(t_ns, raw, nulls), builder.units


class ColumnBuilder:
    """Raw C slots -> output columns, one drained chunk at a time. Wrap correction and
    the counters' origin carry over from chunk to chunk, so a chunk costs the same at
    the end of a day-long run as at its start. Units are known before any sample.

    A perf counter that has not run yet (the C record's `nulls` bit) is null, never 0: a
    counter column is a masked array there, cumulative from its first value. Only perf
    counters can be null (the power PMU's energy events are free-running, never
    multiplexed), so energy and temperature columns never are."""

    def __init__(self, columns: list[Column], estimate_info: dict | None):
        self.columns = list(columns)
        self.estimate_info = estimate_info
        # Counters: raw value at each column's first non-null sample (its origin).
        self._origin = np.zeros(len(self.columns), np.int64)
        self._has_origin = np.zeros(len(self.columns), bool)
        self._last: np.ndarray | None = None   # raw row of the latest sample
        self._acc = np.zeros(len(self.columns), np.int64)  # wrap-corrected raw increase
        self.units = self._units()

    def _units(self) -> dict[str, str]:
        units = {"t_ns": "ns (CLOCK_MONOTONIC)"}
        domains = {c.domain for c in self.columns if c.kind == "energy"}
        if self.estimate_info is not None:
            units["pkg_energy_uj"] = "uJ (estimate: CPU time x W/core)"
        for d in DOMAINS:
            if d in domains:
                units[f"{d}_energy_uj"] = "uJ"
        for d in DOMAINS:
            zones = [c for c in self.columns if c.kind == "energy" and c.domain == d]
            if len(zones) > 1:
                units.update({c.name: "uJ" for c in zones})
        for c in self.columns:
            if c.kind in ("counter", "gauge") and not (
                    self.estimate_info is not None and c.name in estimate.HIDDEN_COLUMNS):
                units[c.name] = ("ns" if c.name.endswith("_ns") else "us"
                                 if c.name.endswith("_us") else "count")
        if any(c.kind == "temp" for c in self.columns):
            units["package_temp_c"] = "degC (hottest package zone)"
        return units

    def schema(self) -> pa.Schema:
        """The output schema (same as every chunk's), without consuming any sample."""
        n = len(self.columns)
        saved = (self._origin.copy(), self._has_origin.copy(), self._last, self._acc.copy())
        cols = self.add(np.zeros(0, np.int64), np.zeros((0, n), np.int64))
        self._origin, self._has_origin, self._last, self._acc = saved
        return table_from_columns(cols).schema

    def _energy(self, i: int, r: np.ndarray, wrap: int | None) -> np.ndarray:
        prev = self._last[i] if self._last is not None else r[0]
        d = np.diff(r, prepend=prev)
        if wrap:
            d = np.where(d < 0, d + wrap, d)
        return self._acc[i] + np.cumsum(d)

    def _counter(self, i: int, r: np.ndarray, null: np.ndarray | None) -> np.ndarray:
        """Increase since the column's first non-null sample; masked where null."""
        if not self._has_origin[i]:
            valid = np.flatnonzero(~null) if null is not None else np.arange(min(len(r), 1))
            if valid.size:
                self._origin[i], self._has_origin[i] = r[valid[0]], True
        d = r - self._origin[i]
        return np.ma.masked_array(d, mask=null) if null is not None and null.any() else d

    def add(self, t_ns: np.ndarray, raw: np.ndarray,
            nulls: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """raw[:, i] belongs to columns[i]; nulls (optional, one uint64 per row, the C
        record's) has bit i set where slot i has no value. Returns this chunk's columns."""
        raw = np.asarray(raw, dtype=np.int64)
        n = len(raw)
        null_at = None
        if nulls is not None and np.any(nulls):
            bits = np.asarray(nulls, dtype=np.uint64)[:, None] >> np.arange(
                len(self.columns), dtype=np.uint64)
            null_at = (bits & np.uint64(1)).astype(bool)
        out: dict[str, np.ndarray] = {"t_ns": np.asarray(t_ns, np.int64)}
        energy: dict[str, list[tuple[Column, np.ndarray]]] = {}
        temps: list[np.ndarray] = []
        rest: dict[str, np.ndarray] = {}
        for i, col in enumerate(self.columns):
            r = raw[:, i]
            if col.kind == "energy":
                assert col.domain is not None, col.name  # every energy column has a domain
                cum = self._energy(i, r, col.wrap_raw) if n else r
                if n:
                    self._acc[i] = cum[-1]
                energy.setdefault(col.domain, []).append((col, cum.astype(np.float64) * col.scale))
            elif col.kind == "temp":
                temps.append(r * col.scale)
            elif col.kind == "counter":
                rest[col.name] = self._counter(i, r, None if null_at is None else null_at[:, i])
            elif null_at is not None and null_at[:, i].any():
                rest[col.name] = np.ma.masked_array(r.copy(), mask=null_at[:, i])
            else:
                rest[col.name] = r.copy()
        if n:
            self._last = raw[-1].copy()
        if self.estimate_info is not None:
            cpu_ns = estimate.cpu_ns_of(rest)
            out["pkg_energy_uj"] = estimate.energy_uj_from_cpu_ns(
                cpu_ns, self.estimate_info["w_per_core"])
        for d in DOMAINS:
            if d in energy:
                out[f"{d}_energy_uj"] = np.sum([a for _, a in energy[d]], axis=0)
        for d in DOMAINS:
            if d in energy and len(energy[d]) > 1:  # per-zone detail where a domain has several
                for col, a in energy[d]:
                    out[col.name] = a
        for name, arr in rest.items():
            out[name] = arr.astype(np.int64)
        if temps:
            out["package_temp_c"] = np.max(np.vstack(temps), axis=0).astype(np.float64)
        return out
