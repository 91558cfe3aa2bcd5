"""Sampler: start, stop, drain.

The C core (alems.measure._native) reads the inputs on absolute deadlines into a ring; a small
Python thread drains the ring in bulk twice a second and turns each chunk at once into
wrap-corrected, unit-converted, cumulative-since-start columns (alems.measure.columns'
ColumnBuilder), keeping the summary's ends as it goes. The chunks go to memory (an Arrow
table at stop), or with `stream_to(path)` to an Arrow IPC stream on disk (bounded memory
for runs of any length; alems.measure.stream), or nowhere (`keep_samples=False`: summary
only). What is sampled is chosen by alems.measure.plan; the process tree's perf counters
(cumulative) are read at the slow rate unless `counters_full_rate` (or the energy estimate
is made of `task_clock_ns`: then at every sample).
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
import time
from dataclasses import replace
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from alems import atomic_io, config
from alems._version import __version__
from alems.errors import AlemsError
from alems.measure._native import RECORD_DTYPE, NativeError, NativeSampler
from alems.measure import estimate, gpu_sampler
from alems.measure.ctxsw import SwitchTracker
from alems.measure.names import MAX_HZ, POWER_CEILING_METADATA_KEY
from alems.measure.plan import check_source_names, plan_sources
from alems.measure.protocol import PhaseMarks
from alems.measure.arrow import arrow_to_masked, table_from_columns
from alems.measure.result import Ends, SampleResult
from alems.measure.columns import ColumnBuilder
from alems.measure.sources import Roots
from alems.measure import threads as instrument_threads
from alems.measure.attach import comm_of
from alems.measure.gaps import check_rate, min_gap_floor_ns, wrap_gaps_from_ends

# Drains (and stream flushes) at most this far apart (so >= 1 flush a second); each costs
# ~0.5 ms of Python whatever its size, so rarely. The ring holds >= 4 intervals.
_DRAIN_INTERVAL_S = 0.9
# The workload's context switches are polled more often: a thread that exits keeps only
# what it had at the last poll (alems.measure.ctxsw).
_CTX_POLL_S = 0.05
_MAX_RING = 1 << 15
_DRAIN_CHUNK = 4096  # records copied out per drain call (bounds the copy buffer)


def _ring_capacity(hz: float) -> int:
    want = max(256, int(hz * 4))  # ~4 s of records between drains
    return min(_MAX_RING, 1 << (want - 1).bit_length())


def _drain_interval_s(hz: float, cap: int) -> float:
    return min(_DRAIN_INTERVAL_S, cap / hz / 4)


def _ensure_fd_room(n_inputs: int, roots: Roots) -> None:
    """Raise the soft open-file limit when the inputs would not fit under it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir(roots.procf("self", "fd")))
    except OSError:  # a proc root without this process: assume every slot may be taken
        open_now = 0 if soft == resource.RLIM_INFINITY else soft
    need = open_now + n_inputs + 64
    if soft != resource.RLIM_INFINITY and need > soft:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _not_kept() -> pa.Table:
    raise AlemsError("this sampler ran with keep_samples=False: only its summary was kept")


class Sampler(PhaseMarks):
    """Sample energy, counters and slow sources of a process tree at `hz`.

    sources: names among 'powercap', 'msr', 'perf-power', 'perf', 'slow'; None = auto
    (first energy source that works in the order powercap, perf-power, msr, else an
    estimate; plus perf counters and slow sources where readable).
    pid: the process whose tree perf counters follow (None = this process). A pid from
    spawn_gated() that is not yet released gets enable_on_exec counters.
    gpus: NVML indices of the GPUs to measure at gpu_hz (alems.measure.gpu_sampler);
    None = default (CUDA_VISIBLE_DEVICES, else all, none without NVML); [] = none.
    also_pids: other running processes (a local model server) whose threads the perf
    counters, the CPU-time estimate and the context switches also cover, like the
    workload's; one that is gone when the sampler starts is left out
    (`also_processes` lists those counted).
    """

    def __init__(self, hz: float = config.DEFAULT_HZ, *, sources: Sequence[str] | None = None,
                 pid: int | None = None, slow_hz: float = config.DEFAULT_SLOW_HZ,
                 sysfs_root: str | None = None, proc_root: str | None = None,
                 msr_path: str | None = None, system_wide: bool = False,
                 estimate_w_per_core: float | None = None, rt_priority: int | None = None,
                 gpus: Sequence[int] | None = None, gpu_hz: float = config.DEFAULT_GPU_HZ,
                 counters_full_rate: bool = False, keep_samples: bool = True,
                 switch_poll_s: float | None = _CTX_POLL_S, also_pids: Sequence[int] = ()):
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
        self.roots = Roots.resolve(sysfs_root, proc_root, msr_path)
        if pid is not None and not atomic_io.pid_alive(int(pid)):
            raise AlemsError(f"process {pid} does not exist; give a running pid or none")
        self.hz = float(hz)
        self.slow_hz = float(min(slow_hz, hz))
        self.sources = list(dict.fromkeys(sources)) if sources is not None else None
        self.pid = None if pid is None else int(pid)
        self.system_wide = bool(system_wide)
        self._w_per_core = estimate_w_per_core
        self.gpus = None if gpus is None else [int(g) for g in gpus]
        self.gpu_hz = float(gpu_hz)
        self._gpu: gpu_sampler.GpuSampler | None = None
        self.counters_full_rate = bool(counters_full_rate)
        self.keep_samples = bool(keep_samples)
        # None: poll the workload's context switches only at each drain (a caller that
        # gets exact totals another way, e.g. `alems sample` from its child's rusage).
        self.switch_poll_s = switch_poll_s
        self._stream_path: str | None = None
        self.energy_source: str = ""
        self.result: SampleResult | None = None
        self._native: NativeSampler | None = None
        self._tids: tuple[int, ...] = ()
        own = os.getpid() if self.pid is None else self.pid
        self.also_pids = [p for p in dict.fromkeys(int(p) for p in also_pids) if p != own]
        self.also_processes: list[dict] = []
        self._init_phases()

    @property
    def instrument_tids(self) -> tuple[int, ...]:
        """Thread ids of this sampler's own threads (the C sampling thread, the drain
        thread), from start() on: exclude them when counting the workload's threads
        (alems.measure.ctxsw)."""
        return self._tids

    def stream_to(self, partial_path) -> None:
        """Before start(): stream the samples to this new Arrow IPC file (see
        alems.measure.stream) instead of keeping them in memory."""
        if self._native is not None:
            raise AlemsError("stream_to() must come before start()")
        self._stream_path = None if partial_path is None else os.fspath(partial_path)

    def _spec(self, col, spec, est: dict | None):
        """The process tree's perf counters are cumulative: read at the slow rate unless
        asked otherwise (a cross-CPU read of a busy target is the sample's dearest), or
        unless the energy estimate is made of it (its energy is integrated per sample)."""
        feeds_estimate = est is not None and est.get("cpu_time_column") == col.name
        if (col.source == "perf" and col.kind == "counter" and not self.counters_full_rate
                and not feeds_estimate):
            return replace(spec, slow=True)
        return spec

    # -------------------------------------------------------------- run
    def start(self) -> None:
        if self._native is not None:
            raise AlemsError("sampler already started; call stop() first")
        # Our threads are made by an uncounted thread, so they inherit no workload counter.
        instrument_threads.run_outside_workload(self._start)
        instrument_threads.register(self._tids)

    def _start(self) -> None:
        # The extra processes still running now (a gone one has no threads to count).
        also = [p for p in self.also_pids if instrument_threads.workload_tids(p, self.roots.proc)]
        self.also_processes = [{"pid": p, "comm": comm_of(p, self.roots.proc)} for p in also]
        plan = plan_sources(self.sources, self.roots, pid=self.pid,
                            system_wide=self.system_wide, w_per_core=self._w_per_core,
                            also_pids=also)
        columns, used, est, notes = plan.columns, plan.used, plan.estimate, list(plan.notes)
        check_rate(self.hz, columns)  # refuse a rate at which a skipped sample hides a wrap
        self.energy_source = plan.energy_source
        inputs = [(self._spec(col, spec, est), slot) for slot, col in enumerate(columns)
                  for spec in col.inputs]
        period_ns = max(1, int(round(1e9 / self.hz)))
        slow_every = max(1, int(round(self.hz / self.slow_hz)))
        cap = _ring_capacity(self.hz)
        _ensure_fd_room(len(inputs), self.roots)
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
        self._builder = ColumnBuilder(columns, est)
        schema = self._builder.schema()
        self._ends = Ends(schema, gap_floor_ns=min_gap_floor_ns(columns))
        self._meta = self._static_metadata()
        self._sink = None
        # With GPUs the samples stay in memory: their columns are interpolated onto the
        # sample clock from the GPU thread's trace when the run ends.
        if self._stream_path is not None and self._gpu is not None:
            self.keep_samples = True
        if self._stream_path is not None and self._gpu is None:
            from alems.measure.stream import PartialWriter

            try:
                self._sink = PartialWriter(self._stream_path, schema, self._meta)
            except AlemsError:
                native.close()
                raise
        self._buf = np.empty(min(cap, _DRAIN_CHUNK), dtype=RECORD_DTYPE)
        self._batches: list[pa.RecordBatch] = []
        self._drain_s = _drain_interval_s(self.hz, cap)
        self._drain_lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._native = native
        self.result = None
        self._drainer = threading.Thread(target=self._drain_loop, name="alems-drain", daemon=True)
        self._tids = (native.thread_tid,)
        # The workload's context switches: its threads, never ours (C thread, drainer).
        self._ctx = SwitchTracker(os.getpid() if self.pid is None else self.pid, self._tids,
                                  self.roots.proc)
        self._also_ctx = [SwitchTracker(p, (), self.roots.proc) for p in also]
        self._poll_switches()
        self._drainer.start()
        started = (self._drainer.native_id, None if self._gpu is None else self._gpu.native_id)
        self._tids = (native.thread_tid, *(t for t in started if t is not None))
        self._ctx.exclude.update(self._tids)

    def _poll_switches(self) -> None:
        for tracker in (self._ctx, *self._also_ctx):
            tracker.poll()

    def _drain_once(self) -> None:
        native = self._native
        if native is None:  # closed: nothing left to drain
            return
        with self._drain_lock:
            nslots = len(self._columns)
            while True:
                n = native.drain(self._buf)
                if n:
                    recs = self._buf[:n]
                    cols = self._builder.add(recs["t_ns"], recs["values"][:, :nslots],
                                             recs["nulls"])
                    self._ends.update(cols)
                    if self._sink is not None:
                        self._sink.write(cols)
                    elif self.keep_samples:
                        self._batches.append(table_from_columns(cols).to_batches()[0])
                if n < len(self._buf):
                    break

    def _drain_loop(self) -> None:
        next_drain = time.monotonic() + self._drain_s
        while not self._stop_evt.wait(min(self.switch_poll_s or self._drain_s, self._drain_s)):
            self._poll_switches()
            if time.monotonic() >= next_drain:
                self._drain_once()
                next_drain = time.monotonic() + self._drain_s

    def stop(self) -> SampleResult:
        if self._native is None:
            if self.result is not None:
                return self.result
            raise AlemsError("sampler was not started; call start() first")
        native = self._native
        try:
            self._poll_switches()
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
            if self._sink is not None:
                self._sink.close()
        self.result = self._result(stats, gpu_trace)
        self._batches = []
        self._buf = np.empty(0, dtype=RECORD_DTYPE)  # the drain buffer is freed
        return self.result

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._native is not None:
            self.stop()

    # -------------------------------------------------------------- result
    def _static_metadata(self) -> dict[str, str]:
        """File metadata known at start (also the stream's, so a recovered file has it)."""
        meta = {
            "alems_version": __version__,
            "sources": json.dumps(self._used),
            "energy_source": self.energy_source,
            "rate_hz": repr(self.hz),
            "slow_hz": repr(self.hz / self._slow_every),
            "counter_hz": repr(self.hz if self.counters_full_rate else
                               self.hz / self._slow_every),
            "host": socket.gethostname(),
            "kernel": platform.release(),
            "clock": "CLOCK_MONOTONIC",
            "units": json.dumps(self._builder.units),
            "roots": json.dumps(self.roots.as_dict()),
            "pid": "" if self.pid is None else str(self.pid),
            "also_pids": json.dumps(self.also_processes),
            "zones": json.dumps({c.name: c.zone for c in self._columns if c.kind == "energy"}),
        }
        if self._est is not None:
            meta["estimate_model"] = json.dumps(self._est)
        meta[POWER_CEILING_METADATA_KEY] = json.dumps(
            estimate.power_ceilings_w(self._columns, self._est))
        return meta

    def _result(self, stats: dict, gpu_trace=None) -> SampleResult:
        schema = self._ends.schema
        if self._sink is not None:
            from alems.measure.stream import read_partial

            path = self._stream_path
            table, partial = (lambda: read_partial(path)), path
        elif not self.keep_samples:
            table, partial = _not_kept, None
        else:
            table = pa.Table.from_batches(self._batches, schema=schema)
            partial = None
        extra: dict = {"sources": list(self._used), "source_notes": list(self._notes),
                       "slow_hz": self.hz / self._slow_every,
                       "counter_hz": float(self._meta["counter_hz"])}
        # Gaps that could hide a whole counter wrap, from the gaps kept while draining.
        extra["wrap_gaps"] = wrap_gaps_from_ends(self._ends, self._columns)
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
        if self.also_processes:
            extra["server_processes"] = list(self.also_processes)
            totals = [t for t in (c.totals() for c in self._also_ctx) if t is not None]
            if totals:  # their context switches, beside the workload's
                extra["server_process"] = {k: sum(t[k] for t in totals) for k in totals[0]}
        meta = dict(self._meta)
        if gpu_trace is not None:
            units = json.loads(meta["units"])
            if isinstance(table, pa.Table):  # GPU columns join the samples on their clock
                cols = {n: arrow_to_masked(table.column(n)) for n in table.column_names}
                gpu_sampler.merge(gpu_trace, cols, units, extra, meta, extra["sources"])
                table = table_from_columns(cols)
                self._ends = Ends.of_table(table, gap_floor_ns=self._ends.gap_floor_ns)
            else:  # samples not kept: the run's GPU energies from the trace alone
                ends_t = np.array([self._ends.first.get("t_ns", 0),
                                   self._ends.last.get("t_ns", 0)], dtype=np.int64)
                gpu_sampler.merge(gpu_trace, {"t_ns": ends_t}, units, extra, meta,
                                  extra["sources"])
            meta["units"] = json.dumps(units)
        phases = self._phases_until(self._ends.last.get("t_ns"))
        marks = self.recorder.mark_stats()
        if any(marks.values()):
            extra["marks"] = marks
        return SampleResult(table, phases, self.energy_source, self.hz, stats,
                            meta, extra, ends=self._ends, partial_path=partial)
