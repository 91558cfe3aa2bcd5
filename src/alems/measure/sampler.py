"""Public sampling API: Sampler, SampleResult, Phase, spawn_gated.

The C core (alems.measure._native) reads the inputs on absolute deadlines into a ring; a small
Python thread drains the ring in bulk every few tens of ms (so the ring stays small however
long the run), and `stop()` turns the raw slots into wrap-corrected, unit-converted,
cumulative-since-start columns in an Arrow table.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from alems import __version__, config

from alems.measure import estimate
from alems.atomic_io import write_parquet_atomic
from alems.measure._native import MAX_CHANNELS, RECORD_DTYPE, NativeError, NativeSampler
from alems.errors import AlemsError
from alems.measure.sources import ENERGY_ORDER, SOURCES, Roots, SourceUnavailable
from alems.measure.sources.liveness import check_energy_advances
from alems.measure.sources.base import Column

from alems.measure.names import DOMAINS, MAX_HZ, PHASES_METADATA_KEY
GAUGES = ("procs_running", "package_temp_c")
# Names the caller may pass in `sources`.
SOURCE_NAMES = tuple(SOURCES)
# energy_source labels (contract): the perf power PMU is reported as 'perf'.
_ENERGY_LABEL = {"powercap": "powercap", "msr": "msr", "perf-power": "perf"}
_DRAIN_INTERVAL_S = 0.05
# The C thread asks for SCHED_FIFO at this priority (best effort; 0 = normal scheduling):
# it sleeps >99 % of the time, and under load normal scheduling wakes it milliseconds late.
DEFAULT_RT_PRIORITY = 10
_MAX_RING = 1 << 15


@dataclass
class Phase:
    name: str
    kind: str
    start_ns: int
    end_ns: int | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ gated spawn

_GATED: set[int] = set()
_GATE = (
    "import os,sys\n"
    "fd=int(sys.argv[1])\n"
    "go=os.read(fd,1)\n"
    "os.close(fd)\n"
    "if not go: sys.exit(125)\n"
    "try: os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as e: sys.stderr.write(f'alems: cannot execute {sys.argv[2]}: {e.strerror}\\n'); sys.exit(127 if e.errno==2 else 126)\n"
)


def _check_command(argv: Sequence[str]) -> None:
    if not argv:
        raise AlemsError("no command given; pass the command and its arguments")
    name = argv[0]
    if os.sep in name:
        ok = os.path.isfile(name) and os.access(name, os.X_OK)
    else:
        ok = shutil.which(name) is not None
    if not ok:
        raise AlemsError(f"command not found: {name}; check the name or PATH")


def spawn_gated(argv: Sequence[str], **popen_kwargs) -> tuple[subprocess.Popen, "callable"]:
    """Start `argv` held just before its exec; return (Popen, release).

    Start a Sampler with pid=popen.pid first: its counters are opened disabled with
    enable_on_exec and follow children, so they count from the command's first
    instruction. Then call release() to let the command exec. If the caller never
    releases, closing the gate (release(cancel=True)) makes the helper exit with 125.
    """
    argv = [str(a) for a in argv]
    _check_command(argv)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GATE, str(r), *argv],
                                pass_fds=(r,), **popen_kwargs)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    _GATED.add(proc.pid)
    done = []

    def release(cancel: bool = False) -> None:
        if done:
            return
        done.append(True)
        _GATED.discard(proc.pid)
        try:
            if not cancel:
                os.write(w, b"x")
        except BrokenPipeError:
            pass  # the helper is already gone (killed); nothing to release
        finally:
            os.close(w)

    return proc, release


# ------------------------------------------------------------------ phases

class _PhaseMarks:
    """Phase markers on the samples' clock (CLOCK_MONOTONIC)."""

    def _init_phases(self) -> None:
        self._phases: list[Phase] = []

    @staticmethod
    def now_ns() -> int:
        """CLOCK_MONOTONIC ns, the samples' clock."""
        return time.monotonic_ns()

    @contextlib.contextmanager
    def phase(self, name: str, kind: str | None = None, **detail) -> Iterator[Phase]:
        ph = Phase(str(name), kind or str(name), time.monotonic_ns(), None, dict(detail))
        self._phases.append(ph)
        try:
            yield ph
        finally:
            ph.end_ns = time.monotonic_ns()

    def mark(self, name: str, start_ns: int, end_ns: int, kind: str | None = None, **detail) -> Phase:
        """Record a phase whose bounds were measured elsewhere (same clock)."""
        ph = Phase(str(name), kind or str(name), int(start_ns), int(end_ns), dict(detail))
        self._phases.append(ph)
        return ph


# ------------------------------------------------------------------ numpy <-> arrow
# Direct buffer conversion: pyarrow's own to_numpy()/pa.array() import pandas (~1 s).

_NUMPY_OF = {pa.int64(): np.int64, pa.float64(): np.float64, pa.int32(): np.int32,
             pa.uint64(): np.uint64, pa.uint32(): np.uint32, pa.float32(): np.float32}
_ARROW_OF = {np.dtype(v): k for k, v in _NUMPY_OF.items()}


def arrow_to_numpy(col) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    dt = _NUMPY_OF.get(arr.type)
    if dt is None or arr.null_count:
        return arr.to_numpy(zero_copy_only=False)
    if len(arr) == 0:
        return np.zeros(0, dt)
    return np.frombuffer(arr.buffers()[1], dtype=dt, count=len(arr),
                         offset=arr.offset * np.dtype(dt).itemsize)


def numpy_to_arrow(values) -> pa.Array:
    a = np.ascontiguousarray(values)
    typ = _ARROW_OF.get(a.dtype)
    if typ is None:
        return pa.array(a)
    return pa.Array.from_buffers(typ, len(a), [None, pa.py_buffer(a)])


def table_from_columns(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.Table.from_arrays([numpy_to_arrow(v) for v in cols.values()], names=list(cols))


# ------------------------------------------------------------------ result

def _interp(t: np.ndarray, y: np.ndarray, at: int) -> float:
    return float(np.interp(float(at), t.astype(np.float64), y.astype(np.float64)))


class SampleResult:
    """Samples (Arrow table), phases, summary and file metadata of one sampling run."""

    def __init__(self, table: pa.Table, phases: list[Phase], energy_source: str,
                 requested_hz: float, stats: dict | None = None,
                 metadata: dict[str, str] | None = None, extra_summary: dict | None = None):
        self.table = table
        self.phases = [Phase(**p.to_dict()) for p in phases]
        self.energy_source = energy_source
        self.domains = [d for d in DOMAINS if f"{d}_energy_uj" in table.column_names]
        self.requested_hz = float(requested_hz)
        self._t = arrow_to_numpy(table.column("t_ns")) if table.num_rows else np.zeros(0, np.int64)
        self.t_start_ns = int(self._t[0]) if len(self._t) else 0
        self.t_end_ns = int(self._t[-1]) if len(self._t) else 0
        self.summary = self._summarize(stats or {}, extra_summary or {})
        self.metadata = dict(metadata or {})
        self.metadata["energy_source"] = energy_source
        self.metadata["summary"] = json.dumps(self.summary, default=str, sort_keys=True)

    # -------------------------------------------------------------- queries
    def _col(self, name: str) -> np.ndarray | None:
        if name not in self.table.column_names:
            return None
        return arrow_to_numpy(self.table.column(name))

    def _bounds(self, t0_ns, t1_ns) -> tuple[int, int]:
        t0 = self.t_start_ns if t0_ns is None else int(t0_ns)
        t1 = self.t_end_ns if t1_ns is None else int(t1_ns)
        return t0, t1

    def energy_uj(self, t0_ns: int | None = None, t1_ns: int | None = None) -> dict[str, float]:
        """Energy per canonical domain between t0 and t1, interpolated at the bounds."""
        if len(self._t) == 0:
            return {d: 0.0 for d in self.domains}
        t0, t1 = self._bounds(t0_ns, t1_ns)
        out = {}
        for d in self.domains:
            y = self._col(f"{d}_energy_uj")
            out[d] = _interp(self._t, y, t1) - _interp(self._t, y, t0)
        return out

    def counter_delta(self, name: str, t0_ns: int | None = None, t1_ns: int | None = None):
        """Increase of a cumulative counter column between t0 and t1 (None if absent)."""
        y = self._col(name)
        if y is None or len(y) == 0:
            return None
        if t0_ns is None and t1_ns is None:
            return (y[-1] - y[0]).item()
        t0, t1 = self._bounds(t0_ns, t1_ns)
        return _interp(self._t, y, t1) - _interp(self._t, y, t0)

    # -------------------------------------------------------------- summary
    def counter_columns(self) -> list[str]:
        names = []
        for f in self.table.schema:
            if f.name == "t_ns" or f.name.endswith("_energy_uj") or f.name in GAUGES:
                continue
            if pa.types.is_integer(f.type):
                names.append(f.name)
        return names

    def _summarize(self, stats: dict, extra: dict) -> dict:
        n = len(self._t)
        duration_s = (self.t_end_ns - self.t_start_ns) / 1e9 if n >= 2 else 0.0
        energy_j = {}
        for d in self.domains:
            y = self._col(f"{d}_energy_uj")
            energy_j[d] = float(y[-1] - y[0]) / 1e6 if n else 0.0
        summary = {
            "duration_s": duration_s,
            "samples": n,
            "requested_hz": self.requested_hz,
            "achieved_hz": (n - 1) / duration_s if duration_s > 0 else 0.0,
            "late_samples": int(stats.get("late", 0)),
            "max_lateness_ns": int(stats.get("max_lateness_ns", 0)),
            "dropped_samples": int(stats.get("dropped", 0)),
            "skipped_deadlines": int(stats.get("skipped", 0)),
            "energy_source": self.energy_source,
            "energy_j": energy_j,
            "avg_power_w": {d: (e / duration_s if duration_s > 0 else None)
                            for d, e in energy_j.items()},
            "counters": {c: self.counter_delta(c) for c in self.counter_columns()},
        }
        if "thread_cpu_ns" in stats:
            summary["sampler_cpu_s"] = stats["thread_cpu_ns"] / 1e9
            summary["read_ns_per_sample"] = (stats["read_ns_total"] / stats["samples"]
                                             if stats.get("samples") else None)
        summary.update(extra)
        return summary

    # -------------------------------------------------------------- output
    def to_batches(self) -> list[pa.RecordBatch]:
        return self.table.to_batches()

    def file_metadata(self) -> dict[str, str]:
        meta = dict(self.metadata)
        meta[PHASES_METADATA_KEY] = json.dumps([p.to_dict() for p in self.phases], default=str)
        return meta

    def write_parquet(self, path) -> None:
        """Atomic: write a temporary file in the same folder, fsync, rename."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise AlemsError(f"cannot write {path}: folder {folder} does not exist; create it")
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        meta = {**(self.table.schema.metadata or {}),
                **{k.encode(): str(v).encode() for k, v in self.file_metadata().items()}}
        table = self.table.replace_schema_metadata(meta)
        try:
            write_parquet_atomic(table, path, tmp)
        except OSError as exc:
            raise AlemsError(f"cannot write {path}: {exc.strerror or exc}; "
                             "choose a writable location") from None


# ------------------------------------------------------------------ raw -> columns

def wrap_corrected(raw: np.ndarray, wrap: int | None) -> np.ndarray:
    """Cumulative increase since the first sample, adding `wrap` to every negative step."""
    raw = np.asarray(raw, dtype=np.int64)
    if len(raw) == 0:
        return np.zeros(0, np.float64)
    d = np.diff(raw)
    if wrap:
        d = np.where(d < 0, d + wrap, d)
    return np.concatenate([[0], np.cumsum(d)]).astype(np.float64)


def build_columns(t_ns: np.ndarray, raw: np.ndarray, columns: list[Column],
                  estimate_info: dict | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """raw[:, i] belongs to columns[i]; return ({name: array}, {name: unit})."""
    out: dict[str, np.ndarray] = {"t_ns": np.asarray(t_ns, np.int64)}
    units: dict[str, str] = {"t_ns": "ns (CLOCK_MONOTONIC)"}
    energy: dict[str, list[tuple[Column, np.ndarray]]] = {}
    temps: list[np.ndarray] = []
    rest: dict[str, np.ndarray] = {}
    for i, col in enumerate(columns):
        r = raw[:, i]
        if col.kind == "energy":
            energy.setdefault(col.domain, []).append((col, wrap_corrected(r, col.wrap_raw) * col.scale))
        elif col.kind == "temp":
            temps.append(r * col.scale)
        elif col.kind == "counter":
            rest[col.name] = (r - r[0]) if len(r) else r
        else:
            rest[col.name] = r.copy()
    if estimate_info is not None:
        if estimate.CPU_TICKS_COLUMN in rest:
            cpu_ns = estimate.ticks_to_ns(rest.pop(estimate.CPU_TICKS_COLUMN))
        else:
            cpu_ns = rest["task_clock_ns"]
        out["pkg_energy_uj"] = estimate.energy_uj_from_cpu_ns(cpu_ns, estimate_info["w_per_core"])
        units["pkg_energy_uj"] = "uJ (estimate: CPU time x W/core)"
    for d in DOMAINS:
        if d in energy:
            out[f"{d}_energy_uj"] = np.sum([a for _, a in energy[d]], axis=0)
            units[f"{d}_energy_uj"] = "uJ"
    for d in DOMAINS:
        if d in energy and len(energy[d]) > 1:  # per-zone detail where a domain has several
            for col, a in energy[d]:
                out[col.name] = a
                units[col.name] = "uJ"
    for name, arr in rest.items():
        out[name] = arr.astype(np.int64)
        units[name] = ("ns" if name.endswith("_ns") else "us" if name.endswith("_us")
                       else "count")
    if temps:
        out["package_temp_c"] = np.max(np.vstack(temps), axis=0).astype(np.float64)
        units["package_temp_c"] = "degC (hottest package zone)"
    return out, units


# ------------------------------------------------------------------ sampler

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


def _read_ctx_switches(pid: int) -> dict | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            k, v = line.split(":", 1)
            vals[k] = int(v)
    return vals or None


class Sampler(_PhaseMarks):
    """Sample energy, counters and slow sources of a process tree at `hz`.

    sources: names among 'powercap', 'msr', 'perf-power', 'perf', 'slow'; None = auto
    (first energy source that works in the order powercap, perf-power, msr, else an
    estimate; plus perf counters and slow sources where readable).
    pid: the process whose tree perf counters follow (None = this process). A pid from
    spawn_gated() that is not yet released gets enable_on_exec counters.
    """

    def __init__(self, hz: float = config.DEFAULT_HZ, *, sources: Sequence[str] | None = None,
                 pid: int | None = None, slow_hz: float = config.DEFAULT_SLOW_HZ,
                 sysfs_root: str | None = None, proc_root: str | None = None,
                 msr_path: str | None = None, system_wide: bool = False,
                 estimate_w_per_core: float | None = None, rt_priority: int | None = None):
        if rt_priority is None:
            try:
                rt_priority = int(os.environ.get("ALEMS_RT_PRIORITY", DEFAULT_RT_PRIORITY))
            except ValueError:
                raise AlemsError("ALEMS_RT_PRIORITY must be an integer (0 disables)") from None
        if rt_priority < 0:
            raise AlemsError(f"rt_priority must be >= 0 (got {rt_priority}); 0 disables")
        self.rt_priority = int(rt_priority)
        for label, v in (("hz", hz), ("slow_hz", slow_hz)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or v <= 0:
                raise AlemsError(f"{label} must be a positive number (got {v!r}); e.g. 1000")
        if hz > MAX_HZ:
            raise AlemsError(f"hz {hz:g} is too high; the maximum is {MAX_HZ:g}")
        if sources is not None:
            unknown = [s for s in sources if s not in SOURCES]
            if unknown:
                raise AlemsError(f"unknown source(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(SOURCES)}")
            energy = [s for s in sources if SOURCES[s].energy]
            if len(energy) > 1:
                raise AlemsError(f"choose one energy source, not {', '.join(energy)}")
        if pid is not None and not os.path.exists(f"/proc/{int(pid)}"):
            raise AlemsError(f"process {pid} does not exist; give a running pid or none")
        self.hz = float(hz)
        self.slow_hz = float(min(slow_hz, hz))
        self.sources = list(dict.fromkeys(sources)) if sources is not None else None
        self.pid = None if pid is None else int(pid)
        self.system_wide = bool(system_wide)
        self.roots = Roots.resolve(sysfs_root, proc_root, msr_path)
        self._w_per_core = estimate_w_per_core
        self.energy_source: str = ""
        self.result: SampleResult | None = None
        self._native: NativeSampler | None = None
        self._init_phases()

    # -------------------------------------------------------------- planning
    def _discover(self, name: str, explicit: bool, ctx: dict, notes: list[str]):
        try:
            return SOURCES[name].discover(self.roots, **ctx)
        except SourceUnavailable as exc:
            av = exc.availability
            if explicit:
                fix = f"; fix: {av.fix}" if av.fix else ""
                raise AlemsError(f"source '{name}' is not readable here: {av.reason}{fix}") from None
            notes.append(f"{name}: {av.reason}")
            return None

    def _plan(self) -> tuple[list[Column], list[str], dict | None, list[str]]:
        ctx = {"pid": self.pid, "gated": self.pid in _GATED, "system_wide": self.system_wide}
        requested = self.sources
        notes: list[str] = []
        columns: list[Column] = []
        used: list[str] = []
        energy_names = ([s for s in requested if SOURCES[s].energy] if requested is not None
                        else list(ENERGY_ORDER))
        self.energy_source = "estimate"
        for name in energy_names:
            disc = self._discover(name, requested is not None, ctx, notes)
            if disc is not None and requested is None:
                live = check_energy_advances(disc.columns)
                if not live.ok:
                    notes.append(f"{name}: not used: {live.reason}")
                    continue
            if disc is not None:
                columns += disc.columns
                notes += [f"{name}: skipped {i}: {a.reason}" for i, a in disc.skipped]
                used.append(name)
                self.energy_source = _ENERGY_LABEL[name]
                break
        for name in ("perf", "slow"):
            if requested is None or name in requested:
                disc = self._discover(name, requested is not None, ctx, notes)
                if disc is not None:
                    columns += disc.columns
                    notes += [f"{name}: skipped {i}: {a.reason}" for i, a in disc.skipped]
                    notes += disc.info.get("notes", [])
                    used.append(name)
        est = None
        if self.energy_source == "estimate":
            w = estimate.w_per_core(self._w_per_core)
            have_tc = any(c.name == "task_clock_ns" for c in columns)
            col, label = estimate.cpu_time_column(self.roots, self.pid, have_tc)
            if col is not None:
                columns.append(col)
            est = {"model": estimate.MODEL, "w_per_core": w, "cpu_time_source": label}
            used.append("estimate")
        # Slots are limited: drop slow extras first, say so.
        while len(columns) > MAX_CHANNELS:
            victim = next((c for c in reversed(columns) if c.slow), None)
            if victim is None:
                raise AlemsError(f"{len(columns)} columns exceed the sampler's {MAX_CHANNELS} "
                                 "slots; choose fewer sources with --sources")
            columns.remove(victim)
            notes.append(f"{victim.name}: dropped (more than {MAX_CHANNELS} columns)")
        return columns, used, est, notes

    # -------------------------------------------------------------- run
    def start(self) -> None:
        if self._native is not None:
            raise AlemsError("sampler already started; call stop() first")
        columns, used, est, notes = self._plan()
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
        try:
            native.start()
        except NativeError as exc:
            native.close()
            raise AlemsError(f"sampler could not start: {exc.strerror}; "
                             "run `alems doctor` to see what is readable") from None
        if native.note:  # perf counters read one by one: grouping refused by the kernel
            notes.append(native.note)
        self._columns, self._used, self._est, self._notes = columns, used, est, notes
        self._inputs = inputs
        self._slow_every = slow_every
        self._buf = np.empty(cap, dtype=RECORD_DTYPE)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._drain_lock = threading.Lock()
        self._ctx_pid = os.getpid() if self.pid is None else self.pid
        self._ctx_first = _read_ctx_switches(self._ctx_pid)
        self._ctx_last = self._ctx_first
        self._stop_evt = threading.Event()
        self._native = native
        self.result = None
        self._drainer = threading.Thread(target=self._drain_loop, name="alems-drain", daemon=True)
        self._drainer.start()

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
            ctx = _read_ctx_switches(self._ctx_pid)
            if ctx is not None:
                self._ctx_last = ctx

    def stop(self) -> SampleResult:
        if self._native is None:
            if self.result is not None:
                return self.result
            raise AlemsError("sampler was not started; call start() first")
        native = self._native
        try:
            ctx = _read_ctx_switches(self._ctx_pid)
            if ctx is not None:
                self._ctx_last = ctx
            native.stop()  # joins the C thread after its final record
        finally:
            self._stop_evt.set()
            self._drainer.join()  # never free the ring under a running drain
        try:
            self._drain_once()
            stats = native.stats()
        finally:
            native.close()
            self._native = None
        self.result = self._result(stats)
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
    def _result(self, stats: dict) -> SampleResult:
        nslots = len(self._columns)
        if self._chunks:
            t = np.concatenate([c[0] for c in self._chunks])
            raw = np.concatenate([c[1] for c in self._chunks])
        else:
            t, raw = np.zeros(0, np.int64), np.zeros((0, nslots), np.int64)
        cols, units = build_columns(t, raw, self._columns, self._est)
        table = table_from_columns(cols)
        extra: dict = {"sources": list(self._used), "source_notes": list(self._notes),
                       "slow_hz": self.hz / self._slow_every}
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
        if self._ctx_first and self._ctx_last:
            extra["process"] = {k: self._ctx_last[k] - self._ctx_first.get(k, 0)
                                for k in self._ctx_last}
        meta = {
            "alems_version": __version__,
            "sources": json.dumps(self._used),
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
        return SampleResult(table, self._phases, self.energy_source, self.hz, stats, meta, extra)
