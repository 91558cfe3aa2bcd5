"""Energy estimate where no energy counter is readable: CPU time of the measured process
tree × watts per busy core. Its provenance is 'estimate' everywhere it appears.

CPU time comes from the perf task-clock counter (inherit=1, follows the whole tree) when
it opened, else from /proc/<pid>/stat utime+stime+cutime+cstime (clock ticks). For this
process (pid=None) /proc/<pid>/stat is preferred: a perf counter opened now would miss
threads that already exist, while /proc/<pid>/stat covers every thread.
"""

from __future__ import annotations

import os

import numpy as np

from alems import config
from alems.measure._native import ChannelSpec
from alems.errors import AlemsError
from alems.measure.sources.base import Column, Roots, try_probe

MODEL = "cpu_time_x_w_per_core"
CPU_TICKS_COLUMN = "_estimate_cpu_ticks"


def w_per_core(value: float | None = None) -> float:
    """Parameter, else ALEMS_ESTIMATE_W_PER_CORE, else config default; must be > 0."""
    if value is None:
        return config.estimate_w_per_core()
    if not (value > 0):
        raise AlemsError(f"estimate W per core must be > 0 (got {value}); e.g. 10")
    return float(value)


def pid_stat_path(roots: Roots, pid: int) -> str:
    """<proc root>/<pid>/stat, or the real /proc when a fake proc root lacks processes."""
    path = roots.procf(str(pid), "stat")
    return path if os.path.exists(path) else f"/proc/{pid}/stat"


def cpu_time_column(roots: Roots, pid: int | None, have_task_clock: bool) -> tuple[Column | None, str]:
    """The column that gives CPU time, and a label saying where it comes from."""
    if have_task_clock and pid is not None:
        return None, "perf task-clock (process tree)"
    target = os.getpid() if pid is None else pid
    spec = ChannelSpec("pidstat", pid_stat_path(roots, target))
    _, exc = try_probe(spec)
    if exc is not None:
        if have_task_clock:
            return None, "perf task-clock (process tree)"
        raise AlemsError(f"no energy counter and no CPU time for the estimate: {exc.strerror}; "
                         "run as root on a machine with RAPL")
    return (Column(CPU_TICKS_COLUMN, [spec], "counter", source="estimate"),
            f"/proc/{'self' if pid is None else target}/stat utime+stime+cutime+cstime")


def energy_uj_from_cpu_ns(cpu_ns: np.ndarray, watts_per_core: float) -> np.ndarray:
    """µJ = s × W × 1e6 = ns × W × 1e-3."""
    return np.asarray(cpu_ns, dtype=np.float64) * watts_per_core * 1e-3


def ticks_to_ns(ticks: np.ndarray) -> np.ndarray:
    return np.asarray(ticks, dtype=np.int64) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
