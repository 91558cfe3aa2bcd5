"""Energy estimate where no energy counter is readable: CPU time of the measured workload
× watts per busy core. Its provenance is 'estimate' everywhere it appears.

CPU time is read in nanoseconds, never the sampler's own threads, from the first that works:
- the perf task-clock counter (`task_clock_ns`, alems.measure.sources.perf): one counter
  per workload thread at the start, with inherit, so threads and processes they create later
  count too; read at every sample when it feeds the estimate;
- for this process (pid=None): the run time of each of its threads at the start, the first
  field of <proc root>/<pid>/task/<tid>/schedstat (ns; threads created later are missed);
- <proc root>/<pid>/stat utime+stime+cutime+cstime, in clock ticks (10 ms at USER_HZ 100): a
  command's process tree (its waited-for children are only there), or a kernel without
  schedstat. Runs of a few ms then read 0 or one tick: the label says so.

Other processes the sampler also covers (`also_pids`, a local model server) add their CPU
time: their threads' counters (task clock), else their <pid>/stat (every thread, born
later or exited too; clock ticks), summed with the workload's ns or ticks column
(`also_ticks_column`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from alems import config
from alems.measure._native import PERF_THREAD, ChannelSpec
from alems.errors import AlemsError
from alems.measure import threads
from alems.measure.sources.base import Column, Roots, try_probe

MODEL = "cpu_time_x_w_per_core"
CPU_TICKS_COLUMN = "_estimate_cpu_ticks"   # /proc/<pid>/stat, clock ticks
CPU_NS_COLUMN = "_estimate_cpu_ns"         # schedstat of the threads, ns
HIDDEN_COLUMNS = (CPU_TICKS_COLUMN, CPU_NS_COLUMN)   # inputs of pkg_energy_uj, not output
TASK_CLOCK_LABEL = "perf task-clock (workload threads, ns)"


def w_per_core(value: float | None = None) -> float:
    """Parameter, else ALEMS_ESTIMATE_W_PER_CORE, else config default; must be > 0."""
    if value is None:
        return config.estimate_w_per_core()
    if not (value > 0):
        raise AlemsError(f"estimate W per core must be > 0 (got {value}); e.g. 10")
    return float(value)


def _proc_dir(roots: Roots, pid: int) -> str:
    """<proc root>/<pid>: the configured proc root only, never the real /proc behind one
    that lacks the process (that would be another view, or another process)."""
    return roots.procf(str(pid))


def pid_stat_path(roots: Roots, pid: int) -> str:
    return os.path.join(_proc_dir(roots, pid), "stat")


def schedstat_column(roots: Roots, pid: int) -> Column | None:
    """One input per thread of `pid` now, minus the instrument's own (alems.measure.threads):
    the first field of its schedstat, ns on a CPU; None when no thread's file is readable."""
    task = os.path.join(_proc_dir(roots, pid), "task")
    try:
        tids = sorted(int(t) for t in os.listdir(task) if t.isdigit())
    except OSError:
        return None
    skip = threads.instrument_tids() if pid == os.getpid() else frozenset()
    specs = []
    for tid in tids:
        if tid in skip:
            continue
        spec = ChannelSpec("text", os.path.join(task, str(tid), "schedstat"),
                           perf_flags=PERF_THREAD)   # a thread that exits keeps its time
        if try_probe(spec)[1] is None:
            specs.append(spec)
    return Column(CPU_NS_COLUMN, specs, "counter", source="estimate") if specs else None


def cpu_time_column(roots: Roots, pid: int | None, have_task_clock: bool,
                    also_pids: Sequence[int] = ()) -> tuple[Column | None, str]:
    """The column that gives CPU time (None: `task_clock_ns`), and a label saying where it
    comes from (see the module docstring)."""
    also = f" + process(es) {', '.join(map(str, also_pids))}" if also_pids else ""
    if have_task_clock:
        return None, TASK_CLOCK_LABEL + also
    target = os.getpid() if pid is None else pid
    proc_dir = _proc_dir(roots, target)
    if pid is None:
        col = schedstat_column(roots, target)
        if col is not None:
            ticks = (f" + <pid>/stat utime+stime of process(es) "
                     f"{', '.join(map(str, also_pids))} (clock ticks; all their threads)"
                     if also_pids else "")
            return col, (f"{proc_dir}/task/*/schedstat run time (ns; {len(col.inputs)} "
                         f"thread(s) at the start, the sampler's excluded){ticks}")
    path = pid_stat_path(roots, target)
    spec = ChannelSpec("pidstat", path)
    _, exc = try_probe(spec)
    if exc is not None:
        raise AlemsError(f"no energy counter and no CPU time for the estimate ({path}: "
                         f"{exc.strerror}); run as root on a machine with RAPL")
    specs = [spec] + [ChannelSpec("pidstat", pid_stat_path(roots, p)) for p in also_pids]
    return (Column(CPU_TICKS_COLUMN, specs, "counter", source="estimate"),
            f"{path} utime+stime+cutime+cstime (clock ticks of "
            f"{1000 // os.sysconf('SC_CLK_TCK')} ms){also}")


def also_ticks_column(roots: Roots, cpu_col: Column | None,
                      also_pids: Sequence[int]) -> Column | None:
    """The <pid>/stat ticks of `also_pids` as their own column, when the workload's CPU
    time is the schedstat ns column (a ticks column already holds them; the task clock
    counts them itself); the estimate sums it with that column."""
    if cpu_col is None or cpu_col.name != CPU_NS_COLUMN or not also_pids:
        return None
    return Column(CPU_TICKS_COLUMN, [ChannelSpec("pidstat", pid_stat_path(roots, p))
                                     for p in also_pids], "counter", source="estimate")


def cpu_ns_of(rest: dict):
    """The estimate's CPU time (ns) from a chunk's counter columns, popping the hidden
    ones: schedstat ns + <pid>/stat ticks (either or both), else the task clock."""
    parts = []
    if CPU_NS_COLUMN in rest:
        parts.append(rest.pop(CPU_NS_COLUMN))
    if CPU_TICKS_COLUMN in rest:
        parts.append(ticks_to_ns(rest.pop(CPU_TICKS_COLUMN)))
    return sum(parts[1:], parts[0]) if parts else rest["task_clock_ns"]


def energy_uj_from_cpu_ns(cpu_ns: np.ndarray, watts_per_core: float) -> np.ndarray:
    """µJ = s × W × 1e6 = ns × W × 1e-3."""
    return np.asarray(cpu_ns, dtype=np.float64) * watts_per_core * 1e-3


def ticks_to_ns(ticks: np.ndarray) -> np.ndarray:
    return np.asarray(ticks, dtype=np.int64) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def power_ceilings_w(columns, estimate_info: dict | None,
                     cpus: int | None = None) -> dict[str, float]:
    """domain -> the most power its source can report (W): the estimate's W per core × the
    machine's CPUs (`cpus`, default os.cpu_count()), or the sum of the domain's zones' highest
    powercap limits where every zone states one; domains without a ceiling left out."""
    out: dict[str, float] = {}
    if estimate_info is not None:
        out["pkg"] = float(estimate_info["w_per_core"]) * (cpus or os.cpu_count() or 1)
    zones: dict[str, list] = {}
    for c in columns:
        if c.kind == "energy" and c.domain not in out:
            zones.setdefault(c.domain, []).append(c.max_power_w)
    for domain, limits in zones.items():
        if limits and all(w is not None and w > 0 for w in limits):
            out[domain] = float(sum(limits))
    return out
