"""Context switches of the measured workload, never of the instrument.

The instrument runs threads of its own (the C sampling thread wakes at `hz`, the drain
thread every 50 ms), so a process-wide count such as getrusage(RUSAGE_SELF) mostly counts
the sampler when the workload is this process. Two ways to count without them:

- `process_switches(exclude_tids)`: THIS process, every thread live or exited, minus the
  given threads (getrusage(RUSAGE_SELF) minus their /proc/self/task/<tid>/status counts).
  Take both snapshots while the excluded threads are alive (between Sampler.start() and
  stop()): a thread's counts are only subtractable while it exists.
- `SwitchTracker`: another process (or this one minus given threads), polled: every
  thread's counts last seen, so a thread that exits keeps what it had at the last poll;
  child processes too where the kernel lists them (/proc/<pid>/task/<tid>/children,
  CONFIG_PROC_CHILDREN).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path

from alems import config

from alems.measure.sources.base import read_text

VOLUNTARY = "voluntary_ctxt_switches"
INVOLUNTARY = "nonvoluntary_ctxt_switches"


@dataclass(frozen=True)
class Switches:
    voluntary: int
    involuntary: int

    def __sub__(self, other: Switches) -> Switches:
        return Switches(self.voluntary - other.voluntary, self.involuntary - other.involuntary)


def read_status_switches(path: str | os.PathLike) -> Switches | None:
    """(voluntary, involuntary) from a /proc/…/status file; None if it is gone."""
    text = read_text(str(path))
    if text is None:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith((VOLUNTARY, INVOLUNTARY)):
            k, v = line.split(":", 1)
            vals[k] = int(v)
    if len(vals) != 2:
        return None
    return Switches(vals[VOLUNTARY], vals[INVOLUNTARY])


def _proc(proc_root: str | None) -> Path:
    """The proc root every read goes through (default: the configured one, ALEMS_PROC_ROOT)."""
    return Path(proc_root or config.proc_root())


def thread_ids(pid: int | str = "self", proc_root: str | None = None) -> list[int]:
    try:
        return [int(t) for t in os.listdir(_proc(proc_root) / str(pid) / "task")]
    except OSError:
        return []


def process_switches(exclude_tids: Iterable[int] = (), proc_root: str | None = None) -> Switches:
    """Context switches of this process's threads (exited ones included), minus the
    threads in `exclude_tids` (e.g. Sampler.instrument_tids)."""
    excluded = Switches(0, 0)
    for tid in set(exclude_tids):
        sw = read_status_switches(_proc(proc_root) / "self" / "task" / str(tid) / "status")
        if sw is not None:
            excluded = Switches(excluded.voluntary + sw.voluntary,
                                excluded.involuntary + sw.involuntary)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Switches(int(ru.ru_nvcsw), int(ru.ru_nivcsw)) - excluded


def _children(pid: int, proc_root: str | None = None) -> list[int] | None:
    """Child pids of every thread of `pid`; None where the kernel does not list them."""
    out: list[int] = []
    task = _proc(proc_root) / str(pid) / "task"
    for tid in thread_ids(pid, proc_root):
        try:
            with open(task / str(tid) / "children") as fh:
                out += [int(c) for c in fh.read().split()]
        except FileNotFoundError:
            if not (task / str(tid)).exists():
                continue  # the thread exited meanwhile
            return None
        except OSError:
            continue
    return out


class SwitchTracker:
    """Context switches of process `pid`'s threads and descendants since the first poll,
    never counting `exclude_tids` (the instrument's threads when pid is this process)."""

    def __init__(self, pid: int, exclude_tids: Iterable[int] = (), proc_root: str | None = None):
        self.pid = int(pid)
        self.proc_root = proc_root
        self.exclude = set(exclude_tids)
        self._first: dict[tuple[int, int], Switches] = {}
        self._last: dict[tuple[int, int], Switches] = {}
        self._polled = False
        self.children_listed = True

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            kids = _children(p, self.proc_root)
            if kids is None:
                self.children_listed = False
                return [self.pid]
            todo += [k for k in kids if k not in pids]
        return pids

    def poll(self) -> None:
        seen: dict[tuple[int, int], Switches] = {}
        for p in self._tree():
            for tid in thread_ids(p, self.proc_root):
                if p == os.getpid() and tid in self.exclude:
                    continue
                sw = read_status_switches(_proc(self.proc_root) / str(p) / "task" / str(tid)
                                          / "status")
                if sw is not None:
                    seen[(p, tid)] = sw
        if not self._polled:
            self._first = dict(seen)
            self._polled = True
        self._last.update(seen)

    def totals(self) -> dict[str, int] | None:
        """{voluntary_ctxt_switches, nonvoluntary_ctxt_switches} since the first poll
        (threads born later count from 0); None if nothing was ever readable."""
        if not self._last:
            return None
        zero = Switches(0, 0)
        v = i = 0
        for key, sw in self._last.items():
            d = sw - self._first.get(key, zero)
            v += d.voluntary
            i += d.involuntary
        return {VOLUNTARY: v, INVOLUNTARY: i}

    def scope(self) -> str:
        what = "this process" if self.pid == os.getpid() else f"process {self.pid}"
        kids = ("and its child processes" if self.children_listed else
                "(child processes not counted: the kernel does not list them, "
                "CONFIG_PROC_CHILDREN)")
        extra = ", excluding the sampler's own threads" if self.pid == os.getpid() else ""
        return f"every thread of {what} {kids}{extra}"
