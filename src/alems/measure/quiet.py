"""Background load: what else ran on the machine during a run, and waiting for quiet.

Recorded per run (`runs` columns):
- ``other_procs_running``: mean over the run of the runnable tasks machine-wide
  (/proc/stat ``procs_running``) minus this process's own runnable threads and the probe
  itself, polled every POLL_S;
- ``steal_fraction``: CPU time the hypervisor gave to other guests ÷ all CPU time over the
  run (/proc/stat ``steal``; NULL where the kernel reports none, i.e. the field is absent);
- ``load_1m``: the 1-minute load average at the start (context only; it includes our own).

*Quiet* has one meaning, `assess` (QUIET_RULE): other_procs_running ≤ MAX_OTHER_RUNNABLE
and steal_fraction ≤ MAX_STEAL_FRACTION over the span looked at. It judges each run (``quiet``
= 0 with ``not_quiet_reason`` when a threshold was crossed), each idle baseline (over its
windows; alems.experiment.baseline) and the waiting of batch --require-quiet
(`wait_for_quiet`: WAIT_WINDOW_S windows until one is quiet, up to a timeout). The
threshold is absolute, not per CPU: every other busy thread adds its power to the package
counter, however many CPUs the package has.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from alems import config
from alems.measure import threads as instrument_threads
from alems.measure.sources.base import read_text

POLL_S = 0.1
MAX_OTHER_RUNNABLE = 0.5      # mean runnable tasks beyond ours: half a CPU kept busy
MAX_STEAL_FRACTION = 0.02     # 2 % of CPU time stolen by other guests
WAIT_WINDOW_S = 1.0
QUIET_RULE = (f"at most {MAX_OTHER_RUNNABLE:g} other runnable tasks on average and at most "
              f"{MAX_STEAL_FRACTION:.0%} of CPU time stolen by the hypervisor")


def read_load_1m(proc_root: str | None = None) -> float | None:
    """The 1-minute load average from /proc/loadavg (None where it cannot be read)."""
    text = read_text(str(Path(proc_root or config.proc_root()) / "loadavg"))
    try:
        return float(text.split()[0]) if text else None
    except (ValueError, IndexError):  # not the kernel's format
        return None


def read_stat(proc_root: str | None = None) -> tuple[int | None, int | None, int | None]:
    """(procs_running, steal ticks or None, total ticks) from /proc/stat."""
    text = read_text(str(Path(proc_root or config.proc_root()) / "stat"))
    if text is None:
        return None, None, None
    running = steal = total = None
    try:
        for line in text.splitlines():
            if line.startswith("cpu "):
                vals = [int(v) for v in line.split()[1:]]
                total = sum(vals[:8]) if len(vals) >= 8 else sum(vals)
                steal = vals[7] if len(vals) >= 8 else None
            elif line.startswith("procs_running "):
                running = int(line.split()[1])
    except (ValueError, IndexError):  # not the kernel's format: unknown, never a crash
        return None, None, None
    return running, steal, total


def own_running(pid: int | None = None, proc_root: str | None = None) -> int:
    """Threads of this process in state R now."""
    target = os.getpid() if pid is None else pid
    tasks = Path(proc_root or config.proc_root()) / str(target) / "task"
    n = 0
    for tid in instrument_threads.workload_tids(target, proc_root) + sorted(
            instrument_threads.instrument_tids()):
        try:
            with open(tasks / str(tid) / "stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "R":
                    n += 1
        except (OSError, IndexError):
            pass
    return n


def assess(other: float | None, steal: float | None) -> tuple[int | None, str | None]:
    """(quiet 1/0 or None, reason when not quiet or unknown)."""
    if other is None:
        return None, "background load unknown (/proc/stat unreadable)"
    why = []
    if other > MAX_OTHER_RUNNABLE:
        why.append(f"{other:.2f} other runnable task(s) on average "
                   f"(quiet: <= {MAX_OTHER_RUNNABLE:g})")
    if steal is not None and steal > MAX_STEAL_FRACTION:
        why.append(f"{steal:.1%} of CPU time stolen by the hypervisor "
                   f"(quiet: <= {MAX_STEAL_FRACTION:.0%})")
    return (0, "; ".join(why)) if why else (1, None)


class LoadProbe:
    """Polls the background load from start() to stop() in an instrument thread."""

    def __init__(self, proc_root: str | None = None, poll_s: float = POLL_S):
        self.proc_root = proc_root
        self.poll_s = poll_s
        self._others: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        running, _, _ = read_stat(self.proc_root)
        if running is not None:  # the probe itself is running while it reads
            self._others.append(max(0, running - own_running(proc_root=self.proc_root)))

    def _loop(self) -> None:
        instrument_threads.register([threading.get_native_id()])
        try:
            while not self._stop.wait(self.poll_s):
                self._poll()
        finally:
            instrument_threads.unregister([threading.get_native_id()])

    def start(self) -> LoadProbe:
        self.load_1m = read_load_1m(self.proc_root)
        _, self._steal0, self._total0 = read_stat(self.proc_root)
        self._poll()
        self._thread = threading.Thread(target=self._loop, name="alems-load", daemon=True)
        # made by an uncounted thread: the probe inherits none of the workload's counters
        instrument_threads.run_outside_workload(self._thread.start)
        return self

    def stop(self) -> dict[str, tuple[object, str | None]]:
        """column -> (value, reason when None) for the `runs` row."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll()
        _, steal1, total1 = read_stat(self.proc_root)
        other = sum(self._others) / len(self._others) if self._others else None
        steal: float | None = None
        why_steal: str | None = "the kernel reports no steal time here"
        steal0, total0 = self._steal0, self._total0
        if steal0 is not None and steal1 is not None and total0 is not None \
                and total1 is not None:
            dt = total1 - total0
            steal = (steal1 - steal0) / dt if dt > 0 else None
            why_steal = "no CPU time passed" if steal is None else None
        quiet, reason = assess(other, steal)
        return {"other_procs_running": (other, "/proc/stat unreadable"),
                "steal_fraction": (steal, why_steal),
                "load_1m": (self.load_1m, "/proc/loadavg unreadable"),
                "quiet": (quiet, reason),
                "not_quiet_reason": (reason, "the run was quiet" if quiet else reason)}


def probe_window(window_s: float, *, proc_root: str | None = None,
                 sleep=time.sleep) -> tuple[int | None, str | None]:
    """(quiet 1/0/None, reason) of the machine over the next `window_s` seconds."""
    probe = LoadProbe(proc_root).start()
    sleep(window_s)
    quiet, reason = probe.stop()["quiet"]
    return (None if quiet is None else int(quiet)), reason  # type: ignore[call-overload]


def wait_for_quiet(timeout_s: float, *, proc_root: str | None = None,
                   window_s: float = WAIT_WINDOW_S, sleep=time.sleep, window=None,
                   clock=time.monotonic) -> tuple[bool, float, str | None]:
    """Look at windows of `window_s` until one is quiet or `timeout_s` passed:
    (quiet, seconds waited, the last reason it was not). `window(window_s)` → (quiet,
    reason) and `clock` are injectable (tests wait on no real machine)."""
    look = window or (lambda w: probe_window(w, proc_root=proc_root, sleep=sleep))
    t0 = clock()
    while True:
        quiet, reason = look(window_s)
        waited = clock() - t0
        if quiet == 1:
            return True, waited, None
        if waited >= timeout_s:
            return False, waited, reason
