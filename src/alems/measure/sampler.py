"""Sampler: start, stop, drain. The public sampling API is re-exported here too.

The C core (alems.measure._native) reads the inputs on absolute deadlines into a ring; a small
Python thread drains the ring in bulk every few tens of ms (so the ring stays small however
long the run), and `stop()` turns the raw slots into wrap-corrected, unit-converted,
cumulative-since-start columns in an Arrow table (alems.measure.result). What is sampled
is chosen by alems.measure.plan.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import platform
import socket
import threading
from typing import Sequence

import numpy as np

from alems import __version__, config
from alems.errors import AlemsError
from alems.measure._native import RECORD_DTYPE, NativeError, NativeSampler
from alems.measure import gpu_sampler
from alems.measure.ctxsw import SwitchTracker
from alems.measure.names import DOMAINS, MAX_HZ
from alems.measure.plan import check_source_names, plan_sources
from alems.measure.protocol import PhaseMarks
from alems.measure.result import (  # noqa: F401  (re-exported: the historic import path)
    Phase, SampleResult, build_columns, table_from_columns)
from alems.measure.sources import Roots
from alems.measure.spawn import spawn_gated  # noqa: F401  (re-exported)
from alems.measure import threads as instrument_threads
from alems.measure.gaps import check_rate, wrap_gaps

_DRAIN_INTERVAL_S = 0.05
_MAX_RING = 1 << 15


def _ring_capacity(hz: float) -> int:
    want = max(256, int(hz * 4))  # ~4 s of records between drains
    return min(_MAX_RING, 1 << (want - 1).bit_length())


def _ensure_fd_room(n_inputs: int) -> None:
    """Raise the soft open-file limit when the inputs would not fit under it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(os.listdir("/proc/self/fd")) + n_inputs + 64
    if soft != resource.RLIM_INFINITY and need > soft:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class Sampler(PhaseMarks):
    """Sample energy, counters and slow sources of a process tree at `hz`.

    sources: names among 'powercap', 'msr', 'perf-power', 'perf', 'slow'; None = auto
    (first energy source that works in the order powercap, perf-power, msr, else an
    estimate; plus perf counters and slow sources where readable).
    pid: the process whose tree perf counters follow (None = this process). A pid from
    spawn_gated() that is not yet released gets enable_on_exec counters.
    gpus: NVML indices of the GPUs to measure at gpu_hz (alems.measure.gpu_sampler);
    None = default (CUDA_VISIBLE_DEVICES, else all, none without NVML); [] = none.
    """

    def __init__(self, hz: float = config.DEFAULT_HZ, *, sources: Sequence[str] | None = None,
                 pid: int | None = None, slow_hz: float = config.DEFAULT_SLOW_HZ,
                 sysfs_root: str | None = None, proc_root: str | None = None,
                 msr_path: str | None = None, system_wide: bool = False,
                 estimate_w_per_core: float | None = None, rt_priority: int | None = None,
                 gpus: Sequence[int] | None = None, gpu_hz: float = config.DEFAULT_GPU_HZ):
        if rt_priority is None:
            rt_priority = config.rt_priority()
        if rt_priority < 0:
            raise AlemsError(f"rt_priority must be >= 0 (got {rt_priority}); 0 disables")
        self.rt_priority = int(rt_priority)
        for label, v in (("hz", hz), ("slow_hz", slow_hz), ("gpu_hz", gpu_hz)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or v <= 0:
                raise AlemsError(f"{label} must be a positive number (got {v!r}); e.g. 1000")
        if hz > MAX_HZ:
            raise AlemsError(f"hz {hz:g} is too high; the maximum is {MAX_HZ:g}")
        check_source_names(sources)
        if pid is not None and not os.path.exists(f"/proc/{int(pid)}"):
            raise AlemsError(f"process {pid} does not exist; give a running pid or none")
        self.hz = float(hz)
        self.slow_hz = float(min(slow_hz, hz))
        self.sources = list(dict.fromkeys(sources)) if sources is not None else None
        self.pid = None if pid is None else int(pid)
        self.system_wide = bool(system_wide)
        self.roots = Roots.resolve(sysfs_root, proc_root, msr_path)
        self._w_per_core = estimate_w_per_core
        self.gpus = None if gpus is None else [int(g) for g in gpus]
        self.gpu_hz = float(gpu_hz)
        self._gpu: gpu_sampler.GpuSampler | None = None
        self.energy_source: str = ""
        self.result: SampleResult | None = None
        self._native: NativeSampler | None = None
        self._tids: tuple[int, ...] = ()
        self._init_phases()

    @property
    def instrument_tids(self) -> tuple[int, ...]:
        """Thread ids of this sampler's own threads (the C sampling thread, the drain
        thread), from start() on: exclude them when counting the workload's threads
        (alems.measure.ctxsw)."""
        return self._tids

    # -------------------------------------------------------------- run
    def start(self) -> None:
        if self._native is not None:
            raise AlemsError("sampler already started; call stop() first")
        # Our threads are made by an uncounted thread, so they inherit no workload counter.
        instrument_threads.run_outside_workload(self._start)
        instrument_threads.register(self._tids)

    def _start(self) -> None:
        plan = plan_sources(self.sources, self.roots, pid=self.pid,
                            system_wide=self.system_wide, w_per_core=self._w_per_core)
        columns, used, est, notes = plan.columns, plan.used, plan.estimate, list(plan.notes)
        check_rate(self.hz, columns)  # refuse a rate at which a skipped sample hides a wrap
        self.energy_source = plan.energy_source
        inputs = [(spec, slot) for slot, col in enumerate(columns) for spec in col.inputs]
        period_ns = max(1, int(round(1e9 / self.hz)))
        slow_every = max(1, int(round(self.hz / self.slow_hz)))
        cap = _ring_capacity(self.hz)
        _ensure_fd_room(len(inputs))
        try:
            native = NativeSampler(inputs, period_ns, slow_every, cap,
                                   rt_priority=self.rt_priority)
        except NativeError as exc:
            raise AlemsError(f"cannot set up the sampler: {exc.strerror}") from None
        try:  # GPUs first: their reads bracket the C sampler's records
            self._gpu = gpu_sampler.start(self.gpus, self.gpu_hz, notes)
        except BaseException:
            native.close()
            raise
        try:
            native.start()
        except NativeError as exc:
            native.close()
            if self._gpu is not None:
                self._gpu.stop()
                self._gpu = None
            raise AlemsError(f"sampler could not start: {exc.strerror}; "
                             "run `alems doctor` to see what is readable") from None
        if native.note:  # perf counters read one by one: the kernel refused to group them
            notes.append(native.note)
        self._columns, self._used, self._est, self._notes = columns, used, est, notes
        self._inputs = inputs
        self._slow_every = slow_every
        self._buf = np.empty(cap, dtype=RECORD_DTYPE)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._drain_lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._native = native
        self.result = None
        self._drainer = threading.Thread(target=self._drain_loop, name="alems-drain", daemon=True)
        self._tids = (native.thread_tid,)
        # The workload's context switches: its threads, never ours (C thread, drainer).
        self._ctx = SwitchTracker(os.getpid() if self.pid is None else self.pid, self._tids)
        self._ctx.poll()
        self._drainer.start()
        self._tids = (native.thread_tid, self._drainer.native_id)
        if self._gpu is not None:
            self._tids += (self._gpu.native_id,)
        self._ctx.exclude.update(self._tids)

    def _drain_once(self) -> None:
        with self._drain_lock:
            nslots = len(self._columns)
            while True:
                n = self._native.drain(self._buf)
                if n:
                    recs = self._buf[:n]
                    self._chunks.append((recs["t_ns"].copy(), recs["values"][:, :nslots].copy()))
                if n < len(self._buf):
                    break

    def _drain_loop(self) -> None:
        while not self._stop_evt.wait(_DRAIN_INTERVAL_S):
            self._drain_once()
            self._ctx.poll()

    def stop(self) -> SampleResult:
        if self._native is None:
            if self.result is not None:
                return self.result
            raise AlemsError("sampler was not started; call start() first")
        native = self._native
        try:
            self._ctx.poll()
            native.stop()  # joins the C thread after its final record
        finally:
            self._stop_evt.set()
            self._drainer.join()  # never free the ring under a running drain
            instrument_threads.unregister(self._tids)
        gpu_trace = self._gpu.stop() if self._gpu is not None else None
        self._gpu = None
        try:
            self._drain_once()
            stats = native.stats()
        finally:
            native.close()
            self._native = None
        self.result = self._result(stats, gpu_trace)
        self._chunks = []
        self._buf = None
        return self.result

    def __enter__(self) -> "Sampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._native is not None:
            self.stop()

    # -------------------------------------------------------------- result
    def _result(self, stats: dict, gpu_trace=None) -> SampleResult:
        nslots = len(self._columns)
        if self._chunks:
            t = np.concatenate([c[0] for c in self._chunks])
            raw = np.concatenate([c[1] for c in self._chunks])
        else:
            t, raw = np.zeros(0, np.int64), np.zeros((0, nslots), np.int64)
        cols, units = build_columns(t, raw, self._columns, self._est)
        extra: dict = {"sources": list(self._used), "source_notes": list(self._notes),
                       "slow_hz": self.hz / self._slow_every,
                       "wrap_gaps": wrap_gaps(t, self._columns, {
                           d: cols[f"{d}_energy_uj"] for d in DOMAINS
                           if f"{d}_energy_uj" in cols})}
        gpu_meta: dict = {}
        gpu_sampler.merge(gpu_trace, cols, units, extra, gpu_meta, extra["sources"])
        table = table_from_columns(cols)
        if self._est is not None:
            extra["estimate_model"] = dict(self._est)
            extra["estimate_w_per_core"] = self._est["w_per_core"]
        if stats.get("error_errno"):
            idx = stats["error_input"]
            label = self._inputs[idx][0].path if 0 <= idx < len(self._inputs) else "?"
            extra["read_error"] = f"{label}: {os.strerror(stats['error_errno'])}"
        extra["realtime"] = bool(self.rt_priority) and not stats.get("rt_errno")
        if self.rt_priority and stats.get("rt_errno"):
            extra["source_notes"].append(
                f"sampler thread: SCHED_FIFO refused ({os.strerror(stats['rt_errno'])}); "
                "normal scheduling (run as root or grant CAP_SYS_NICE for steadier timing)")
        process = self._ctx.totals()
        if process is not None:
            extra["process"] = process
            extra["process_scope"] = self._ctx.scope()
        meta = {
            "alems_version": __version__,
            "sources": json.dumps(extra["sources"]),
            "energy_source": self.energy_source,
            "rate_hz": repr(self.hz),
            "slow_hz": repr(self.hz / self._slow_every),
            "host": socket.gethostname(),
            "kernel": platform.release(),
            "clock": "CLOCK_MONOTONIC",
            "units": json.dumps(units),
            "roots": json.dumps(self.roots.as_dict()),
            "pid": "" if self.pid is None else str(self.pid),
            "zones": json.dumps({c.name: c.zone for c in self._columns if c.kind == "energy"}),
        }
        if self._est is not None:
            meta["estimate_model"] = json.dumps(self._est)
        meta.update(gpu_meta)
        return SampleResult(table, self._phases, self.energy_source, self.hz, stats, meta, extra)
