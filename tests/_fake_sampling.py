"""Known-truth samples for the store/metrics/baseline/batch tests, on the shipped classes.

The tests know the numbers exactly because the tables are synthetic (constant power per
domain); everything that turns a table into energies, counter deltas and phases is the
shipped code: results are `SampleResult`s, samplers are `ReplaySampler`s.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pyarrow as pa

from alems.measure import replay
from alems.measure.replay import ReplaySampler
from alems.measure.result import Phase, SampleResult


def synthetic_table(*, n: int = 1001, hz: float = 1000.0, t0_ns: int = 10_000_000_000,
                    pkg_w: float | None = 20.0, core_w: float | None = 12.0,
                    extra: dict | None = None) -> pa.Table:
    """n samples at `hz` from `t0_ns`; energy columns grow at exactly pkg_w / core_w watts."""
    t = t0_ns + np.round(np.arange(n) * (1e9 / hz)).astype(np.int64)
    secs = (t - t0_ns) / 1e9
    cols = {"t_ns": pa.array(t, pa.int64())}
    if pkg_w is not None:
        cols["pkg_energy_uj"] = pa.array(secs * pkg_w * 1e6, pa.float64())
    if core_w is not None:
        cols["core_energy_uj"] = pa.array(secs * core_w * 1e6, pa.float64())
    for name, values in (extra or {}).items():
        cols[name] = values if isinstance(values, pa.Array) else pa.array(values)
    return pa.table(cols)


def sample_result(table: pa.Table, *, phases=(), energy_source: str = "powercap",
                  hz: float = 1000.0, summary: dict | None = None) -> SampleResult:
    """The sampler's own result class over `table`. `summary` replaces the one it computes
    (e.g. {} for a sampler that reported none)."""
    result = SampleResult(table, list(phases), energy_source, hz)
    if summary is not None:
        result.summary = dict(summary)
    return result


@functools.lru_cache(maxsize=None)
def _idle_table(pkg_w: float, core_w: float | None, hz: float) -> pa.Table:
    # Longer than any test's run or baseline window (ReplaySampler keeps rows up to stop()).
    power = {"pkg": pkg_w} if core_w is None else {"pkg": pkg_w, "core": core_w}
    return replay.synthetic_table(duration_s=120.0, hz=hz, power_w=power)


def idle_sampler(pkg_w: float, core_w: float | None = None, *, hz: float = 1000.0,
                 energy_source: str = "powercap") -> ReplaySampler:
    """A ReplaySampler whose machine draws a constant pkg_w (and core_w) watts."""
    return ReplaySampler(_idle_table(pkg_w, core_w, hz), energy_source=energy_source)


class BusyReplaySampler(ReplaySampler):
    """A ReplaySampler at a constant `pkg_w`, plus `busy_w` more package power while an
    `llm` phase is open (a model call works the CPU; the rest of a run is near idle).

    stop() returns the shipped SampleResult over the replayed rows, with the busy phases'
    energy added to the cumulative package column: busy_w × time inside `llm` phases."""

    def __init__(self, pkg_w: float = 5.0, core_w: float | None = 2.0, hz: float = 200.0,
                 energy_source: str = "powercap", busy_w: float = 0.0):
        super().__init__(_idle_table(pkg_w, core_w, hz), energy_source=energy_source)
        self.busy_w = busy_w
        self._period_ns = int(round(1e9 / hz))
        self._started_ns = 0

    def start(self) -> None:
        super().start()
        self._started_ns = time.monotonic_ns()

    def stop(self) -> SampleResult:
        # The real Sampler always records a sample at start and one at stop; a replay keeps
        # the table's rows up to stop(), so a run shorter than one period (a provider that
        # fails at once) waits for the second row instead of ending with a single sample.
        left_ns = self._started_ns + self._period_ns - time.monotonic_ns()
        if left_ns > 0:
            time.sleep(left_ns / 1e9)
        idle = super().stop()
        if not self.busy_w:
            return idle
        table = idle.table
        t = table.column("t_ns").to_numpy()
        busy_s = np.zeros(len(t))
        for ph in idle.phases:
            if ph.kind == "llm":
                end = ph.end_ns if ph.end_ns is not None else int(t[-1])
                busy_s += np.clip(t - ph.start_ns, 0, end - ph.start_ns) / 1e9
        pkg = table.column("pkg_energy_uj").to_numpy() + busy_s * self.busy_w * 1e6
        table = table.set_column(table.column_names.index("pkg_energy_uj"), "pkg_energy_uj",
                                 pa.array(pkg, pa.float64()))
        self.result = SampleResult(table, idle.phases, idle.energy_source, idle.requested_hz,
                                   metadata=idle.metadata)
        return self.result


__all__ = ["Phase", "SampleResult", "ReplaySampler", "synthetic_table", "sample_result",
           "idle_sampler", "BusyReplaySampler"]
