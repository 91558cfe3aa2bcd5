"""Does an energy counter actually count?

Some virtual machines expose an energy counter that opens and reads fine but never
moves (seen on a Firecracker guest: the perf `power` PMU's energy-psys read 0 J under
full load). Reporting that as a measurement would print 0 J as fact, so automatic
source selection and `alems doctor` first watch the counter for a short window.
A package's RAPL counter updates about every millisecond and never stops, even idle.
"""

from __future__ import annotations

import time

import numpy as np

from alems.measure._native import RECORD_DTYPE, NativeError, NativeSampler
from alems.measure.sources.base import Availability, Column

WINDOW_S = 0.1
_PERIOD_NS = 1_000_000  # 1 kHz, as fast as RAPL updates

# Process-wide memo: the answer does not change between runs of one batch.
_cache: dict[tuple, Availability] = {}


def check_energy_advances(columns: list[Column], window_s: float = WINDOW_S) -> Availability:
    """ok when at least one energy input changes within `window_s`."""
    inputs = [(spec, slot) for slot, col in enumerate(c for c in columns if c.kind == "energy")
              for spec in col.inputs]
    if not inputs:
        return Availability(False, "no energy counters")
    key = (tuple(s for s, _ in inputs), window_s)
    if key not in _cache:
        _cache[key] = _watch(inputs, window_s)
    return _cache[key]


def _watch(inputs, window_s: float) -> Availability:
    n_ticks = int(window_s * 1e9 / _PERIOD_NS) + 16
    cap = 1 << max(4, (n_ticks - 1).bit_length())
    try:
        sampler = NativeSampler(inputs, _PERIOD_NS, 1, cap)
        sampler.start()
    except NativeError as exc:
        return Availability(False, f"cannot read the energy counters: {exc.strerror}")
    try:
        time.sleep(window_s)
    finally:
        sampler.stop()
    buf = np.empty(cap, dtype=RECORD_DTYPE)
    n = sampler.drain(buf)
    sampler.close()
    nslots = max(slot for _, slot in inputs) + 1
    values = buf["values"][:n, :nslots]
    if n >= 2 and bool((values != values[0]).any()):
        return Availability(True, f"advanced within {window_s:g} s")
    return Availability(
        False,
        f"the counter opens but did not advance in {window_s:g} s "
        "(a virtualised or disabled energy counter): it would report 0 J, not a measurement",
        "measure on bare metal or a host that passes RAPL through; "
        "force it anyway with --sources <name>",
    )
