"""Metrics derived from the sample table's hardware and OS counters for one run's `runs`
row: perf counters, package power peak, thermal, C-states, run queue, interrupts and the
sampling quality. `alems.experiment.metrics.run_metrics` calls these; each sets its columns
on the `RunMetrics` with a reason for every one it cannot supply.

Definitions (see docs/DEFINITIONS.md):

- ``package_power_max_w`` = the highest package power over any window of `POWER_WINDOW_NS`
  (single 1 ms steps are counter noise).
- Perf counters are deltas over the span; ``ipc`` only when instructions and cycles were
  both measured; ``cache_miss_rate`` = cache_misses ÷ cache_references (a fraction).
- Thermal from ``package_temp_c``: mean (``package_temp_celsius``), first (start), max,
  delta = max − start, gradient = least-squares slope in °C/s.
- C-states: ``cstate_<STATE>_time_us`` deltas summed by class of the cpuidle state name —
  C2* → c2, C3* → c3, C4*/C5*/C6* (C6, C6S, C6-SKX …) → c6, C7* and deeper (C7s, C8, C9,
  C10) → c7. POLL and C1/C1E are shallow states with no column. Seconds, summed over CPUs.
- Scheduler: ``thread_migrations`` from the ``cpu_migrations`` perf counter;
  ``run_queue_length`` = mean of /proc/stat ``procs_running``; ``interrupt_rate`` =
  /proc/stat ``intr`` delta ÷ duration (per second, whole machine).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alems.experiment.run_metrics import RunMetrics

PERF_COUNTERS = ("instructions", "cycles", "cache_references", "cache_misses",
                 "branch_misses", "page_faults", "task_clock_ns")
POWER_WINDOW_NS = 10_000_000  # 10 ms
CSTATE_BUCKETS = ("c2", "c3", "c6", "c7")


# ---------------------------------------------------------------- table helpers

def float_column(table: pa.Table, name: str) -> np.ndarray | None:
    """A column as float64 (None if the table has no such column)."""
    if name not in table.column_names:
        return None
    col = pc.cast(table.column(name), pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)


def span_mask(t: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Rows whose t_ns lies within the run span [t0, t1]."""
    return (t >= t0) & (t <= t1)


def cumulative_delta(t: np.ndarray, values: np.ndarray | None, t0: int, t1: int) -> float | None:
    """Last minus first non-NaN value of a cumulative column inside the span (None if < 2)."""
    if values is None:
        return None
    v = values[span_mask(t, t0, t1)]
    v = v[~np.isnan(v)]
    if v.size < 2:
        return None
    return float(v[-1] - v[0])


def cstate_bucket(state: str) -> str | None:
    """Map a cpuidle state name (C1E, C6, C6S, C7s, C10, C3_ACPI, POLL …) to c2/c3/c6/c7."""
    m = re.match(r"^C(\d+)", state.strip().upper())
    if not m:
        return None
    n = int(m.group(1))
    if n == 2:
        return "c2"
    if n == 3:
        return "c3"
    if 4 <= n <= 6:
        return "c6"
    if n >= 7:
        return "c7"
    return None


def sample_times(table: pa.Table) -> np.ndarray:
    """t_ns as float64 (empty if the table has no t_ns)."""
    t = float_column(table, "t_ns")
    return np.zeros(0) if t is None else t


# ---------------------------------------------------------------- metric groups

def peak_power(t: np.ndarray, pkg: np.ndarray | None, t0: int, t1: int):
    """(highest package power in W over any POWER_WINDOW_NS window, None) or (None, why)."""
    if pkg is None:
        return None, "no package energy column in the samples"
    mask = span_mask(t, t0, t1) & ~np.isnan(pkg)
    tt, ee = t[mask], pkg[mask]
    if tt.size < 2 or tt[-1] - tt[0] < POWER_WINDOW_NS:
        return None, f"run shorter than the {POWER_WINDOW_NS / 1e6:g} ms power window"
    ends = np.searchsorted(tt, tt + POWER_WINDOW_NS, side="left")
    ok = ends < tt.size
    starts = np.nonzero(ok)[0]
    ends = ends[ok]
    dt = tt[ends] - tt[starts]
    power = (ee[ends] - ee[starts]) / dt * 1e3  # µJ/ns -> W
    return float(power.max()), None


def perf_metrics(m: RunMetrics, result, t: np.ndarray, t0: int, t1: int) -> dict:
    """Perf counter deltas, ipc and cache_miss_rate; returns the raw deltas (None where
    unmeasured) including ``cpu_migrations`` for `scheduler_metrics`."""
    table: pa.Table = result.table
    counters: dict[str, float | None] = {}
    for name in PERF_COUNTERS + ("cpu_migrations",):
        if name not in table.column_names:
            counters[name] = None
            continue
        try:  # None from the result is an answer (e.g. a counter that never ran)
            value = result.counter_delta(name, t0, t1)
        except Exception:  # noqa: BLE001 - fall back to the table
            value = cumulative_delta(t, float_column(table, name), t0, t1)
        counters[name] = value
    for name in PERF_COUNTERS:
        value = counters[name]
        m.set(name, None if value is None else int(round(value)),
              _no_counter_reason(name, table, t, t0, t1))
    ins, cyc = m.columns["instructions"], m.columns["cycles"]
    if ins is not None and cyc:
        m.set("ipc", ins / cyc)
    else:
        m.set("ipc", None, "needs both instructions and cycles measured"
              + ("" if cyc is None or ins is None else " (cycles = 0)"))
    refs, misses = m.columns["cache_references"], m.columns["cache_misses"]
    if refs and misses is not None:
        m.set("cache_miss_rate", misses / refs)
    else:
        m.set("cache_miss_rate", None, "needs cache_references (> 0) and cache_misses measured")
    return counters


def _no_counter_reason(name: str, table: pa.Table, t: np.ndarray, t0: int, t1: int) -> str:
    """Why perf counter `name` has no value for the span."""
    if name not in table.column_names:
        return (f"perf counter {name} not measured (no '{name}' column: hardware/software "
                "perf events unavailable here; see `alems doctor`)")
    v = float_column(table, name)
    v = v[span_mask(t, t0, t1)] if v is not None else np.zeros(0)
    if v.size and np.isnan(v[-1]):
        return (f"perf counter {name} has no value at the run's end: it never ran "
                "(time_running = 0: no free hardware counter for it); unknown, not 0")
    return f"perf counter {name}: fewer than 2 reads inside the run"


def thermal_metrics(m: RunMetrics, t: np.ndarray, table: pa.Table, t0: int, t1: int) -> None:
    """Package temperature: mean, start, max, delta and gradient over the span."""
    temp = float_column(table, "package_temp_c")
    names = ("package_temp_celsius", "start_temp_c", "max_temp_c", "thermal_delta_c",
             "thermal_gradient")
    if temp is None:
        for name in names:
            m.set(name, None, "no package temperature sensor readable (thermal zones / "
                              "coretemp hwmon absent)")
        return
    mask = span_mask(t, t0, t1) & ~np.isnan(temp)
    tt, vv = t[mask], temp[mask]
    if vv.size == 0:
        for name in names:
            m.set(name, None, "no temperature read inside the run")
        return
    m.set("package_temp_celsius", float(vv.mean()))
    m.set("start_temp_c", float(vv[0]))
    m.set("max_temp_c", float(vv.max()))
    m.set("thermal_delta_c", float(vv.max() - vv[0]))
    if vv.size >= 2 and tt[-1] > tt[0]:
        x = (tt - tt[0]) / 1e9
        slope = float(np.polyfit(x, vv, 1)[0])
        m.set("thermal_gradient", slope)
    else:
        m.set("thermal_gradient", None, "fewer than 2 temperature reads in the run")


def cstate_metrics(m: RunMetrics, t: np.ndarray, table: pa.Table, t0: int, t1: int) -> None:
    """Idle residency per C-state class (see the module docstring)."""
    states = {}
    for name in table.column_names:
        if name.startswith("cstate_") and name.endswith("_time_us"):
            states[name[len("cstate_"):-len("_time_us")]] = name
    if not states:
        for b in CSTATE_BUCKETS:
            m.set(f"{b}_time_seconds", None, "cpuidle residency not available "
                                             "(no cpuidle states in sysfs)")
        return
    sums: dict[str, float] = {}
    seen: dict[str, bool] = {}
    for state, col in states.items():
        bucket = cstate_bucket(state)
        if bucket is None:
            continue
        seen[bucket] = True
        delta = cumulative_delta(t, float_column(table, col), t0, t1)
        if delta is not None:
            sums[bucket] = sums.get(bucket, 0.0) + delta / 1e6
    listed = ", ".join(sorted(states))
    for b in CSTATE_BUCKETS:
        if b in sums:
            m.set(f"{b}_time_seconds", sums[b])
        elif seen.get(b):
            m.set(f"{b}_time_seconds", None, "fewer than 2 cpuidle reads inside the run")
        else:
            m.set(f"{b}_time_seconds", None,
                  f"this CPU has no {b.upper()}-class idle state (states: {listed})")


def scheduler_metrics(m: RunMetrics, t: np.ndarray, table: pa.Table, counters: dict,
                      t0: int, t1: int) -> None:
    """thread_migrations (perf), run_queue_length and interrupt_rate (/proc/stat)."""
    duration_s = max(t1 - t0, 0) / 1e9
    mig = counters.get("cpu_migrations")
    m.set("thread_migrations", None if mig is None else int(round(mig)),
          _no_counter_reason("cpu_migrations", table, t, t0, t1))
    procs = float_column(table, "procs_running")
    if procs is not None:
        v = procs[span_mask(t, t0, t1)]
        v = v[~np.isnan(v)]
        m.set("run_queue_length", float(v.mean()) if v.size else None,
              "no procs_running sample inside the run")
    else:
        m.set("run_queue_length", None, "/proc/stat procs_running not sampled")
    intr = cumulative_delta(t, float_column(table, "interrupts"), t0, t1)
    if intr is not None and duration_s > 0:
        m.set("interrupt_rate", intr / duration_s)
    else:
        m.set("interrupt_rate", None, "/proc/stat intr not sampled (or fewer than 2 reads)")


def sampling_metrics(m: RunMetrics, result, t: np.ndarray, t0: int, t1: int) -> None:
    """sample_count, requested/achieved rate, late and dropped samples."""
    table: pa.Table = result.table
    summary = getattr(result, "summary", None) or {}
    m.set("sample_count", int(table.num_rows))
    m.set("requested_hz", summary.get("requested_hz"), "sampler summary has no requested_hz")
    span_t = t[span_mask(t, t0, t1)] if t.size else t
    if span_t.size >= 2 and span_t[-1] > span_t[0]:
        m.set("achieved_hz", (span_t.size - 1) / ((span_t[-1] - span_t[0]) / 1e9))
    else:
        m.set("achieved_hz", summary.get("achieved_hz"), "fewer than 2 samples")
    for name in ("late_samples", "dropped_samples"):
        m.set(name, summary.get(name), f"sampler summary has no {name}")
