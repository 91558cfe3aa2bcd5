"""Reading a run's full-rate samples (Parquet) for power curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alems.errors import AlemsError
from alems import arrowfile
from alems.store import samples as store_samples


def samples_file(db_path: str | Path, samples_path: str | None) -> Path | None:
    """Absolute path of a run's Parquet file (runs.samples_path is relative to the db);
    one outside the samples folder is refused (store.samples.stored_file)."""
    return store_samples.stored_file(db_path, samples_path)


def load_energy(db_path: str | Path, samples_path: str | None,
                column: str = "pkg_energy_uj") -> tuple[np.ndarray, np.ndarray] | None:
    """(t_ns, cumulative energy µJ) of one run, or None when the file/column is missing."""
    import pyarrow.parquet as pq

    path = samples_file(db_path, samples_path)
    if path is None or not path.is_file():
        return None
    try:
        names = pq.read_schema(arrowfile.source(path)).names
        if "t_ns" not in names or column not in names:
            return None
        table = pq.read_table(arrowfile.source(path), columns=["t_ns", column])
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise AlemsError(f"cannot read samples {path}: {exc}") from None
    t = table["t_ns"].to_numpy(zero_copy_only=False).astype(np.int64)
    e = table[column].to_numpy(zero_copy_only=False).astype(float)
    ok = np.isfinite(e)
    return t[ok], e[ok]


def power_curve_w(t_ns: np.ndarray, energy_uj: np.ndarray, smooth_ms: float = 20.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(time s from start, power W): d(energy)/dt averaged over `smooth_ms` windows.

    The derivative is taken over the window (E(t+w/2) − E(t−w/2)) / w on a regular grid,
    which is both the smoothing and robust to RAPL's ~1 ms update steps.
    """
    if t_ns.size < 2:
        return np.array([]), np.array([])
    t_s = (t_ns - t_ns[0]) / 1e9
    window_s = smooth_ms / 1e3
    span = t_s[-1]
    if span <= window_s:
        return np.array([span / 2]), np.array([(energy_uj[-1] - energy_uj[0]) / 1e6 / span])
    step = max(window_s / 4, span / 2000)
    grid = np.arange(window_s / 2, span - window_s / 2 + 1e-12, step)
    e_hi = np.interp(grid + window_s / 2, t_s, energy_uj)
    e_lo = np.interp(grid - window_s / 2, t_s, energy_uj)
    return grid, (e_hi - e_lo) / 1e6 / window_s
