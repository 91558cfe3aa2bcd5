"""A plain-Python reference sampler: the baseline the C core must beat.

It does what a careful pure-Python implementation would do: open every file once, then a
background thread wakes on absolute deadlines (``time.sleep`` to the next multiple of the
period), ``os.pread``s each energy file, ``os.read``s each perf software counter (opened
with ``perf_event_open`` through ctypes, attached to the measured process tree) and
appends one tuple per sample. It counts late wake-ups (later than half a period, as
the C core does), skips missed deadlines rather than bursting, and measures its own
thread CPU time with ``time.thread_time_ns``, so the benchmark compares like with like.

Only the standard library is used, on purpose.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import threading
import time
from dataclasses import dataclass, field

# perf_event_open(2): PERF_TYPE_SOFTWARE configs.
PERF_TYPE_SOFTWARE = 1
SOFTWARE_EVENTS = {
    "task_clock_ns": 1,  # PERF_COUNT_SW_TASK_CLOCK
    "page_faults": 2,  # PERF_COUNT_SW_PAGE_FAULTS
    "context_switches": 3,  # PERF_COUNT_SW_CONTEXT_SWITCHES
    "cpu_migrations": 4,  # PERF_COUNT_SW_CPU_MIGRATIONS
}
_PERF_ATTR_SIZE_VER0 = 64
_FLAG_INHERIT = 1 << 1
_SYSCALL_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}

_libc = ctypes.CDLL(None, use_errno=True)


def perf_software_open(config: int, pid: int) -> int:
    """Open one software counter on `pid` (and its future children); return the fd."""
    nr = _SYSCALL_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise OSError(f"perf_event_open syscall number unknown for {platform.machine()}")
    attr = bytearray(_PERF_ATTR_SIZE_VER0)
    # u32 type, u32 size, u64 config at offset 0; the flag bitfield is the u64 at offset 40.
    struct.pack_into("=IIQ", attr, 0, PERF_TYPE_SOFTWARE, _PERF_ATTR_SIZE_VER0, config)
    struct.pack_into("=Q", attr, 40, _FLAG_INHERIT)
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    _libc.syscall.restype = ctypes.c_long
    fd = _libc.syscall(
        ctypes.c_long(nr), buf, ctypes.c_int(pid), ctypes.c_int(-1), ctypes.c_int(-1),
        ctypes.c_ulong(0),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open(config={config}, pid={pid}): {os.strerror(err)}")
    return int(fd)


@dataclass
class PyRun:
    """What one run of the reference sampler produced."""

    rows: list = field(default_factory=list)  # (t_ns, energy_uj..., counters...)
    columns: list = field(default_factory=list)
    requested_hz: float = 0.0
    duration_s: float = 0.0
    late_samples: int = 0
    thread_cpu_ns: int = 0

    @property
    def samples(self) -> int:
        return len(self.rows)

    @property
    def achieved_hz(self) -> float:
        if len(self.rows) < 2:
            return 0.0
        span_ns = self.rows[-1][0] - self.rows[0][0]
        return (len(self.rows) - 1) / (span_ns / 1e9) if span_ns > 0 else 0.0


class PySampler:
    """Samples `energy_paths` (µJ text files) and software perf counters of `pid`."""

    def __init__(self, hz: float, energy_paths: list[str], pid: int | None = None,
                 counters: tuple[str, ...] = tuple(SOFTWARE_EVENTS)):
        if hz <= 0:
            raise ValueError("hz must be > 0")
        self.period_ns = int(round(1e9 / hz))
        self.hz = hz
        self.energy_paths = list(energy_paths)
        self.pid = pid
        self.counter_names = list(counters) if pid is not None else []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run = PyRun(requested_hz=hz)
        self._energy_fds: list[int] = []
        self._perf_fds: list[int] = []

    def start(self) -> None:
        self._energy_fds = [os.open(p, os.O_RDONLY) for p in self.energy_paths]
        self._perf_fds = [perf_software_open(SOFTWARE_EVENTS[n], self.pid)
                          for n in self.counter_names]
        self._run.columns = (["t_ns"] + [f"energy_{i}_uj" for i in range(len(self._energy_fds))]
                             + self.counter_names)
        self._thread = threading.Thread(target=self._loop, name="pysampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        cpu0 = time.thread_time_ns()
        period = self.period_ns
        rows = self._run.rows
        energy_fds, perf_fds = self._energy_fds, self._perf_fds
        late = 0
        t_start = time.monotonic_ns()
        deadline = t_start
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now < deadline:
                time.sleep((deadline - now) / 1e9)
                now = time.monotonic_ns()
            lateness = now - deadline
            if lateness > period // 2:  # same threshold as the C core's default
                late += 1
            if lateness >= period:  # missed whole periods: skip forward, never burst
                deadline += (lateness // period) * period
            row = [now]
            for fd in energy_fds:
                row.append(int(os.pread(fd, 32, 0)))
            for fd in perf_fds:
                row.append(int.from_bytes(os.read(fd, 8), "little"))
            rows.append(tuple(row))
            deadline += period
        self._run.late_samples = late
        self._run.duration_s = (time.monotonic_ns() - t_start) / 1e9
        self._run.thread_cpu_ns = time.thread_time_ns() - cpu0

    def stop(self) -> PyRun:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for fd in self._energy_fds + self._perf_fds:
            os.close(fd)
        self._energy_fds, self._perf_fds = [], []
        return self._run
