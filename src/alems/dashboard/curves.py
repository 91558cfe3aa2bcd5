"""Power curves for the browser: full-rate power from cumulative energy counters, then a
min/max envelope so that a one-hour 1 kHz trace (3.6 M samples) plots as a few thousand
points with every peak kept.

Power at each sample is the energy difference over a short centred window divided by its
time span (the counters update about once per millisecond, so a single-sample difference
is quantisation noise). The envelope (tsdownsample's MinMaxDownsampler) keeps the minimum
and the maximum of every bin, so no peak wider than the window is lost at any zoom.

What a page draws first is the smoothed curve: the mean power over consecutive windows
(energy difference ÷ window), the window a 1-2-5 step chosen so that ≤ TARGET_POINTS show
(`default_window_ms`) unless the reader picks another; the envelope is the raw view. Both
are clipped to the most power the source can report (`POWER_CEILING_METADATA_KEY` of the
samples file: the estimate's W per core × CPUs, or the zones' powercap limits), and the
number of clipped points is returned so the page can say so.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from alems.errors import AlemsError
from alems.measure.names import DOMAINS, POWER_CEILING_METADATA_KEY
from alems import arrowfile

SMOOTH_MS = 20.0           # same default window as alems.analysis.samples.power_curve_w
DEFAULT_POINTS = 4000      # points per curve sent to the browser (pixels × ~2)
# smoothed points a curve shows by default at most; the 1-2-5 window steps then give
# 400–1000 points (readable, where 86 000 raw samples are a solid band)
TARGET_POINTS = 1000
# smoothing windows offered (ms): a 1-2-5 series from 1 ms (the counters' update) to 10 min
WINDOW_STEPS_MS = tuple(m * 10.0 ** e for e in range(0, 6) for m in (1, 2, 5)
                        if m * 10.0 ** e <= 600_000)
PARTIAL_SUFFIX = ".partial"


def energy_column(domain: str) -> str:
    return f"{domain}_energy_uj"


def power_w(t_ns: np.ndarray, energy_uj: np.ndarray, smooth_ms: float = SMOOTH_MS
            ) -> tuple[np.ndarray, np.ndarray]:
    """(t s from the first sample, power W) at every sample, over a centred window of
    ~`smooth_ms` (the first and last half-window repeat their nearest full window)."""
    t_ns = np.asarray(t_ns, dtype=np.int64)
    e = np.asarray(energy_uj, dtype=np.float64)
    ok = np.isfinite(e)
    if not ok.all():
        t_ns, e = t_ns[ok], e[ok]
    n = t_ns.size
    if n < 2:
        return np.array([]), np.array([])
    period_ns = float(np.median(np.diff(t_ns[: min(n, 10_000)]))) or 1.0
    half = min(max(int(round(smooth_ms * 1e6 / period_ns / 2)), 1), (n - 1) // 2 or 1)
    # slices, not index arrays: one pass over memory per operand (3.6 M samples in ~50 ms)
    span_ns = (t_ns[2 * half:] - t_ns[: n - 2 * half]).astype(np.float64) if n > 2 * half \
        else np.array([float(t_ns[-1] - t_ns[0])])
    delta_uj = (e[2 * half:] - e[: n - 2 * half]) if n > 2 * half else np.array([e[-1] - e[0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        mid = delta_uj / span_ns * 1e3        # µJ/ns = 1e3 W
    watts = np.empty(n)
    watts[:half] = mid[0]
    watts[half: half + mid.size] = mid
    watts[half + mid.size:] = mid[-1]
    t_s = (t_ns - t_ns[0]) * 1e-9
    good = np.isfinite(watts)
    return (t_s, watts) if good.all() else (t_s[good], watts[good])


def default_window_ms(span_s: float, period_s: float = 0.0,
                      target_points: int = TARGET_POINTS) -> float:
    """The smallest WINDOW_STEPS_MS step that gives at most `target_points` windows over
    `span_s` and holds at least two sample periods."""
    want_ms = max(span_s / target_points, 2 * period_s) * 1e3
    return next((w for w in WINDOW_STEPS_MS if w >= want_ms), WINDOW_STEPS_MS[-1])


def window_mean_power(t_ns: np.ndarray, energy_uj: np.ndarray, window_ms: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(window centres s from the first sample, mean power W over each window): the
    energy at consecutive window edges (interpolated between samples) differenced ÷ the
    window; the last window ends at the last sample."""
    t_ns = np.asarray(t_ns, dtype=np.int64)
    e = np.asarray(energy_uj, dtype=np.float64)
    ok = np.isfinite(e)
    t_ns, e = (t_ns, e) if ok.all() else (t_ns[ok], e[ok])
    if t_ns.size < 2 or t_ns[-1] <= t_ns[0]:
        return np.array([]), np.array([])
    rel = (t_ns - t_ns[0]).astype(np.float64)
    edges = np.arange(0.0, rel[-1], window_ms * 1e6)
    edges = np.append(edges, rel[-1])
    e_edges = np.interp(edges, rel, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        watts = np.diff(e_edges) / np.diff(edges) * 1e3     # µJ/ns = 1e3 W
    mid_s = (edges[:-1] + edges[1:]) / 2e9
    good = np.isfinite(watts)
    return (mid_s, watts) if good.all() else (mid_s[good], watts[good])


def clip_to(w: np.ndarray, ceiling_w: float | None) -> tuple[np.ndarray, int]:
    """`w` with values above the source's ceiling drawn at it, and how many were."""
    if ceiling_w is None:
        return w, 0
    above = w > ceiling_w
    return (np.minimum(w, ceiling_w), int(above.sum())) if above.any() else (w, 0)


def envelope(x: np.ndarray, y: np.ndarray, n_out: int = DEFAULT_POINTS
             ) -> tuple[np.ndarray, np.ndarray]:
    """At most ~n_out points keeping each bin's minimum and maximum (x must increase)."""
    if x.size <= n_out:
        return x, y
    from tsdownsample import MinMaxDownsampler

    n_out += n_out % 2  # min and max per bin: an even count
    keep = MinMaxDownsampler().downsample(np.ascontiguousarray(x), np.ascontiguousarray(y),
                                          n_out=n_out)
    return x[keep], y[keep]


def curves_from_table(table, n_out: int = DEFAULT_POINTS, t0_ns: int | None = None,
                      window_ms: float | None = None,
                      ceilings_w: dict[str, float] | None = None) -> dict:
    """{domain: {"t_s", "w" (the envelope), "smooth_t_s", "smooth_w" (window means),
    "window_ms", "n_samples", "ceiling_w", "clipped" (points drawn at the ceiling)}} for
    every energy domain the table holds.

    `t0_ns` puts time zero elsewhere than the first sample (e.g. the run's start);
    `window_ms` None: `default_window_ms` of the table's span."""
    if "t_ns" not in table.column_names:
        return {}
    t_ns = table["t_ns"].to_numpy(zero_copy_only=False).astype(np.int64)
    if t_ns.size < 2:
        return {}
    if window_ms is None:
        period_s = float(np.median(np.diff(t_ns[: min(t_ns.size, 10_000)]))) / 1e9
        window_ms = default_window_ms((t_ns[-1] - t_ns[0]) / 1e9, period_s)
    shift_s = 0.0 if t0_ns is None else (t_ns[0] - t0_ns) / 1e9
    out = {}
    for domain in DOMAINS:
        col = energy_column(domain)
        if col not in table.column_names:
            continue
        e = table[col].to_numpy(zero_copy_only=False).astype(np.float64)
        t_s, w = power_w(t_ns, e)
        if not t_s.size:
            continue
        xs, ys = envelope(t_s + shift_s, w, n_out)
        sx, sy = window_mean_power(t_ns, e, window_ms)
        ceiling = (ceilings_w or {}).get(domain)
        ys, n_raw = clip_to(ys, ceiling)
        sy, n_smooth = clip_to(sy, ceiling)
        out[domain] = {"t_s": xs, "w": ys, "smooth_t_s": sx + shift_s, "smooth_w": sy,
                       "window_ms": float(window_ms), "n_samples": int(t_ns.size),
                       "ceiling_w": ceiling, "clipped": n_raw + n_smooth}
    return out


def ceilings_from_metadata(meta: dict | None, cpus: int | None = None) -> dict[str, float]:
    """A samples file's (or stream's) ceilings, domain -> W, from its schema metadata. A
    file written before they were stored: an estimate's W per core (its `estimate_model`)
    × `cpus` (the batch host's) when both are known; else none (nothing is clipped)."""
    import json

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0

    meta = meta or {}
    try:
        text = meta.get(POWER_CEILING_METADATA_KEY.encode())
        data = json.loads(text) if text is not None else None
        if data is None and b"estimate_model" in meta and number(cpus):
            w = json.loads(meta[b"estimate_model"]).get("w_per_core")
            data = {"pkg": w * cpus} if number(w) else None
    except (ValueError, AttributeError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if number(v)}


def read_power_ceilings(path: Path, cpus: int | None = None) -> dict[str, float]:
    """`ceilings_from_metadata` of a Parquet samples file ({} when it cannot be read:
    read_samples_table says why)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(arrowfile.source(path)).metadata
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        return {}
    return ceilings_from_metadata(meta, cpus)


def read_samples_table(path: Path, t_range_s: tuple[float, float] | None = None,
                       t0_ns: int | None = None):
    """The run's Parquet samples (time and energy columns only), optionally the slice
    [t_range_s] in seconds from `t0_ns` (default: the first sample)."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(arrowfile.source(path)).names
        cols = ["t_ns"] + [energy_column(d) for d in DOMAINS if energy_column(d) in names]
        table = pq.read_table(arrowfile.source(path), columns=cols)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise AlemsError(f"cannot read samples {path}: {exc}") from None
    return _slice(table, t_range_s, t0_ns)


def _slice(table, t_range_s, t0_ns=None):
    if t_range_s is None or "t_ns" not in table.column_names or table.num_rows == 0:
        return table
    t = table["t_ns"].to_numpy(zero_copy_only=False)
    base = int(t[0]) if t0_ns is None else int(t0_ns)
    lo_ns = base + int(t_range_s[0] * 1e9)
    hi_ns = base + int(t_range_s[1] * 1e9)
    i0 = max(int(np.searchsorted(t, lo_ns)) - 1, 0)
    i1 = min(int(np.searchsorted(t, hi_ns, side="right")) + 1, t.size)
    return table.slice(i0, max(i1 - i0, 0))


def read_partial(path: Path):
    """The samples so far of a run in progress: an Arrow IPC stream that a writer is still
    appending to. Every complete record batch is read; a batch cut off mid-write is not."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    batches = []
    try:
        with arrowfile.source(path) as source:
            reader = ipc.open_stream(source)
            schema = reader.schema
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):
                    break  # the writer is mid-batch: what came before is complete
    except (pa.ArrowInvalid, OSError):
        return None  # not even a schema yet, or the file went away (renamed to .parquet)
    return pa.Table.from_batches(batches, schema=schema)


def newest_partial(folder: Path) -> Path | None:
    """The most recently written `*.partial` samples stream under `folder`, if any."""
    if not folder.is_dir():
        return None
    best, best_mtime = None, -1.0
    for p in folder.rglob(f"*{PARTIAL_SUFFIX}"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # a FIFO would block the read for ever, a link may lead anywhere
        m = st.st_mtime
        if m > best_mtime:
            best, best_mtime = p, m
    return best
