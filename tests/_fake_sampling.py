"""Small stand-ins for the sampler's results, for the store/metrics/baseline/batch tests.

`FakeResult` has the documented SampleResult interface (table, phases, energy_source,
summary, metadata, t_start_ns/t_end_ns, energy_uj, counter_delta) over a synthetic table
whose numbers the tests know exactly: package power `pkg_w` W, core power `core_w` W.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

DOMAIN_COLUMNS = {"pkg": "pkg_energy_uj", "core": "core_energy_uj", "uncore": "uncore_energy_uj",
                  "dram": "dram_energy_uj", "psys": "psys_energy_uj"}


@dataclass
class FakePhase:
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    detail: dict = field(default_factory=dict)


class FakeResult:
    def __init__(self, table: pa.Table, *, phases=None, energy_source="powercap",
                 t_start_ns=None, t_end_ns=None, summary=None):
        self.table = table
        self.phases = list(phases or [])
        self.energy_source = energy_source
        t = table.column("t_ns").to_numpy()
        self.t_start_ns = int(t[0]) if t_start_ns is None else t_start_ns
        self.t_end_ns = int(t[-1]) if t_end_ns is None else t_end_ns
        self.domains = [d for d, c in DOMAIN_COLUMNS.items() if c in table.column_names]
        self.summary = summary if summary is not None else {
            "requested_hz": 1000.0, "late_samples": 0, "dropped_samples": 0}
        self.metadata = {"alems.energy_source": energy_source, "alems.requested_hz": "1000"}

    def _interp(self, column: str, t_ns: int) -> float:
        t = self.table.column("t_ns").to_numpy().astype(float)
        v = self.table.column(column).to_numpy().astype(float)
        return float(np.interp(t_ns, t, v))

    def energy_uj(self, t0_ns=None, t1_ns=None) -> dict:
        t0 = self.t_start_ns if t0_ns is None else t0_ns
        t1 = self.t_end_ns if t1_ns is None else t1_ns
        return {d: self._interp(c, t1) - self._interp(c, t0) for d, c in DOMAIN_COLUMNS.items()
                if c in self.table.column_names}

    def counter_delta(self, name, t0_ns=None, t1_ns=None):
        if name not in self.table.column_names:
            return None
        t0 = self.t_start_ns if t0_ns is None else t0_ns
        t1 = self.t_end_ns if t1_ns is None else t1_ns
        return self._interp(name, t1) - self._interp(name, t0)


def synthetic_table(*, n: int = 1001, hz: float = 1000.0, t0_ns: int = 10_000_000_000,
                    pkg_w: float | None = 20.0, core_w: float | None = 12.0,
                    extra: dict | None = None) -> pa.Table:
    """n samples at `hz`; energy columns grow at exactly pkg_w / core_w watts."""
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


class FakeSampler:
    """Start/stop around real wall time; energy grows at `pkg_w` W (as a real source would
    report an idle or busy machine). Phases are recorded like the real Sampler's."""

    def __init__(self, pkg_w: float = 5.0, core_w: float | None = 2.0, hz: float = 200.0,
                 energy_source: str = "powercap", busy_w: float = 0.0):
        self.pkg_w, self.core_w, self.hz = pkg_w, core_w, hz
        self.busy_w = busy_w      # extra package power while inside an `llm` phase
        self.energy_source = energy_source
        self._phases: list[FakePhase] = []
        self.result = None

    @staticmethod
    def now_ns() -> int:
        return time.monotonic_ns()

    def start(self) -> None:
        self._t0 = self.now_ns()

    def stop(self) -> FakeResult:
        t1 = self.now_ns()
        n = max(2, int((t1 - self._t0) / 1e9 * self.hz) + 1)
        t = np.linspace(self._t0, t1, n).astype(np.int64)
        secs = (t - self._t0) / 1e9
        busy_s = np.zeros(n)
        for ph in self._phases:
            if ph.kind == "llm":
                end = ph.end_ns if ph.end_ns is not None else t1
                busy_s += np.clip(t - ph.start_ns, 0, end - ph.start_ns) / 1e9
        pkg = (secs * self.pkg_w + busy_s * self.busy_w) * 1e6
        cols = {"t_ns": pa.array(t, pa.int64()),
                "pkg_energy_uj": pa.array(pkg, pa.float64())}
        if self.core_w is not None:
            cols["core_energy_uj"] = pa.array(secs * self.core_w * 1e6, pa.float64())
        self.result = FakeResult(pa.table(cols), phases=self._phases,
                                 energy_source=self.energy_source, t_start_ns=self._t0,
                                 t_end_ns=t1)
        return self.result

    @contextlib.contextmanager
    def phase(self, name: str, kind: str | None = None, **detail):
        ph = FakePhase(name, kind or name, self.now_ns(), None, dict(detail))
        self._phases.append(ph)
        try:
            yield ph
        finally:
            ph.end_ns = self.now_ns()
