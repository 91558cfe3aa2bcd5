"""GPU sampling thread: NVML reads at their own rate on the samples' clock.

Why a separate Python thread, not the C sampling thread: one NVML call takes tens of µs to
milliseconds on real drivers (it goes through an ioctl into the kernel driver and may wait
on the GPU's management controller), so reading it in the 1 kHz RAPL loop would make that
loop late. The driver's energy counter does not move faster than ~100 Hz, which a Python
thread with absolute deadlines keeps easily; ctypes releases the GIL inside each call.
Every read is stamped with CLOCK_MONOTONIC (time.monotonic_ns, the clock of the C core),
the midpoint of the call.

`merge()` puts each GPU's cumulative energy onto the sample table's own `t_ns` by linear
interpolation of the cumulative curve (exact alignment, since both use one clock): one
timeline, so a phase's GPU energy is read the same way as its RAPL energy. After a GPU is
lost mid-run its column is NaN from its last good read on, and its energy is NULL.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np

from alems import config
from alems.errors import AlemsError
from alems.measure.nvml import NvmlError, NvmlMissing
from alems.measure.sources import gpu as gpu_source

SOURCE = gpu_source.NAME
FROZEN_MIN_S = 1.0   # a counter flat over a run at least this long is not a measurement


class GpuTrace:
    """What the thread read: times (ns) and per-GPU cumulative energy (µJ, float, NaN
    after a loss), plus per-GPU errors."""

    def __init__(self, devices, t_ns, energy_uj, errors, hz):
        self.devices = devices
        self.t_ns = t_ns
        self.energy_uj = energy_uj      # {index: np.ndarray}
        self.errors = errors            # {index: str}
        self.hz = hz


class GpuSampler:
    """Reads `devices` at `hz` on a daemon thread between start() and stop()."""

    def __init__(self, nvml, devices, hz: float = config.DEFAULT_GPU_HZ):
        self.nvml, self.devices, self.hz = nvml, list(devices), float(hz)
        self._t: list[int] = []
        self._raw: dict[int, list[float]] = {d.index: [] for d in self.devices}
        self._errors: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alems-gpu", daemon=True)

    @property
    def native_id(self) -> int | None:
        return self._thread.native_id

    def _read_all(self) -> None:
        t0 = time.monotonic_ns()
        row = []
        for dev in self.devices:
            value = float("nan")
            if dev.index not in self._errors:
                try:
                    value = float(gpu_source._reading(self.nvml, dev))
                except NvmlError as exc:
                    self._errors[dev.index] = f"{exc.call}: {exc.message} (NVML error {exc.code})"
            row.append(value)
        t1 = time.monotonic_ns()
        self._t.append((t0 + t1) // 2)
        for dev, value in zip(self.devices, row, strict=True):
            self._raw[dev.index].append(value)

    def _loop(self) -> None:
        period = int(round(1e9 / self.hz))
        nxt = time.monotonic_ns() + period
        while not self._stop.is_set():
            wait = (nxt - time.monotonic_ns()) / 1e9
            if wait > 0 and self._stop.wait(wait):
                break
            self._read_all()
            nxt += period
            now = time.monotonic_ns()
            if nxt < now:  # fell behind (the machine is loaded): skip, don't burst
                nxt = now + period

    def start(self) -> None:
        self._read_all()  # the first read happens before the C sampler's first record
        self._thread.start()

    def stop(self) -> GpuTrace:
        self._stop.set()
        self._thread.join()
        self._read_all()  # … and the last one after its last record
        self.nvml.close()
        t = np.asarray(self._t, np.int64)
        energy = {}
        for dev in self.devices:
            raw = np.asarray(self._raw[dev.index], np.float64)
            energy[dev.index] = _cumulative_uj(dev.method, t, raw)
        return GpuTrace(self.devices, t, energy, dict(self._errors), self.hz)


def _cumulative_uj(method: str, t_ns: np.ndarray, raw: np.ndarray) -> np.ndarray:
    if len(raw) == 0:
        return raw
    if method == gpu_source.ENERGY:
        return (raw - raw[0]) * 1000.0  # mJ -> µJ since the first read
    # power (mW) integrated by trapezoids: mW × ns = 1e-12 J = 1e-6 µJ
    steps = (raw[1:] + raw[:-1]) / 2.0 * np.diff(t_ns).astype(np.float64) * 1e-6
    return np.concatenate([[0.0], np.cumsum(steps)])


def start(gpus: list[int] | None, hz: float, notes: list[str]) -> GpuSampler | None:
    """A started GpuSampler for the requested GPUs (None = default selection; [] = none),
    or None (with a note) where none can be measured. Explicit GPUs that cannot be
    measured raise one AlemsError."""
    if gpus is not None and len(gpus) == 0:
        return None
    try:
        nvml = gpu_source.open_nvml()
    except (NvmlMissing, NvmlError) as exc:
        reason, fix = gpu_source.unavailable_reason(exc)
        if gpus is not None:
            raise AlemsError(f"--gpus: {reason}; fix: {fix or 'see `alems doctor`'}") from None
        if not isinstance(exc, NvmlMissing):  # no driver at all is the normal CPU-only case
            notes.append(f"gpu: {reason}")
        return None
    try:
        devices = gpu_source.discover(nvml, gpus, notes)
    except NvmlError as exc:
        nvml.close()
        if gpus is not None:
            raise AlemsError(f"--gpus: NVML: {exc}") from None
        notes.append(f"gpu: NVML: {exc}")
        return None
    except BaseException:
        nvml.close()
        raise
    if not devices:
        nvml.close()
        return None
    sampler = GpuSampler(nvml, devices, hz)
    sampler.start()
    return sampler


def merge(trace: GpuTrace | None, cols: dict, units: dict, extra: dict, meta: dict,
          used: list[str]) -> None:
    """Add gpu<i>_energy_uj columns (on cols['t_ns']) and the GPU summary to a result."""
    if trace is None:
        return
    t = cols["t_ns"]
    gpus: list[dict] = []
    energy_j: dict[str, float | None] = {}
    for dev in trace.devices:
        y = trace.energy_uj[dev.index]
        good = ~np.isnan(y)
        col = dev.column()
        if len(t) and good.any():
            tg, yg = trace.t_ns[good], y[good]
            v = np.interp(t.astype(np.float64), tg.astype(np.float64), yg)
            if dev.index in trace.errors:
                v[t > tg[-1]] = np.nan
            cols[col] = v - v[0]
        else:
            cols[col] = np.full(len(t), np.nan)
        units[col] = ("uJ (NVML energy counter" if dev.method == gpu_source.ENERGY
                      else "uJ (NVML power integrated on the GPU sample clock") + \
            f", read at {trace.hz:g} Hz, interpolated onto t_ns)"
        info = dev.as_dict()
        if dev.index in trace.errors:
            info["error"] = trace.errors[dev.index]
            energy_j[col] = None
        else:
            total = float(cols[col][-1]) / 1e6 if len(t) else 0.0
            duration_s = (t[-1] - t[0]) / 1e9 if len(t) >= 2 else 0.0
            if total == 0.0 and duration_s >= FROZEN_MIN_S:
                info["error"] = (f"the GPU reading did not change over {duration_s:.1f} s: "
                                 "not a measurement")
                energy_j[col] = None
            else:
                energy_j[col] = total
        gpus.append(info)
    extra["gpus"] = gpus
    extra["gpu_energy_j"] = energy_j
    extra["gpu_hz"] = trace.hz
    extra["gpu_reads"] = int(len(trace.t_ns))
    for info in gpus:
        if info.get("error"):
            extra.setdefault("source_notes", []).append(f"gpu{info['index']}: {info['error']}")
    meta["gpus"] = json.dumps(gpus)
    used.append(SOURCE)


def energy_uj(result, t0_ns: int, t1_ns: int) -> tuple[float | None, str | None, list[dict]]:
    """(GPU energy summed over the measured GPUs between t0 and t1, why it is None, the
    GPUs) of a SampleResult."""
    gpus = list((getattr(result, "summary", None) or {}).get("gpus") or [])
    if not gpus:
        return None, "no GPU was measured (NVML missing, no GPU, or --gpus none)", gpus
    bad = [g for g in gpus if g.get("error")]
    if bad:
        return None, "; ".join(f"gpu{g['index']}: {g['error']}" for g in bad), gpus
    total = 0.0
    for g in gpus:
        d = result.counter_delta(g["column"], t0_ns, t1_ns)
        if d is None or d != d:
            return None, f"gpu{g['index']}: no samples in the span", gpus
        total += float(d)
    return total, None, gpus
