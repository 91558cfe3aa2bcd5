"""`alems sample --pid PID [--duration S]`: sample a process that is already running (a
model server, a notebook kernel), like `perf stat -p`: every thread it has, and threads
those create later (inherited counters), until Ctrl-C (or SIGTERM/SIGHUP), the duration,
or the process's exit, whichever comes first. The process is never signalled."""

from __future__ import annotations

import contextlib
import math
import os
import select
import sys
import time
from pathlib import Path

from alems.measure.attach import has_exited
from alems.errors import UsageError
from alems.interrupts import signals_as_interrupt

ENDED_DURATION = "duration reached"
ENDED_INTERRUPTED = "interrupted"
ENDED_EXITED = "process exited"


def check_attach_args(pid: int | None, argv: list[str], duration_s: float | None) -> float | None:
    """--pid or a command, never both; --duration only with --pid, > 0. Returns it."""
    if pid is not None and argv:
        raise UsageError("--pid attaches to a running process; give either --pid or a "
                         "command, not both")
    if duration_s is not None and pid is None:
        raise UsageError("--duration needs --pid (a command is sampled until it exits)")
    if duration_s is None:
        return None
    if not (duration_s > 0) or math.isinf(duration_s):  # also rejects NaN
        raise UsageError(f"--duration must be a positive number of seconds (got "
                         f"{duration_s:g}); e.g. --duration 60")
    return float(duration_s)


def _wait_exit(pidfd: int | None, pid: int, deadline: float | None) -> bool:
    """Block until the process exits (True) or the deadline passes (False)."""
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if poller.poll(None if left is None else max(1, int(left * 1000))):
                return True
            continue
        if has_exited(pid):   # no pidfd (kernel < 5.3): look every 100 ms
            return True
        time.sleep(0.1 if left is None else min(0.1, left))


def run_attached(pid: int, *, duration_s: float | None, hz: float, sources, slow_hz: float,
                 roots: dict, stream=None, full_rate_counters: bool = False, gpus=None):
    """Sample running process `pid`; return (result, how it ended, {pid, comm})."""
    from alems.measure.attach import check_attachable
    from alems.measure.sampler import Sampler

    target = check_attachable(pid, roots.get("proc_root"), flag="--pid")
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):  # no pidfd: polled instead
        pidfd = os.pidfd_open(pid)
    try:
        sampler = Sampler(hz, sources=sources, pid=pid, slow_hz=slow_hz,
                          counters_full_rate=full_rate_counters, keep_samples=False,
                          gpus=gpus, **roots)
        if stream is not None:
            sampler.stream_to(stream)
        with signals_as_interrupt():
            sampler.start()
            until = "" if duration_s is None else f", at most {duration_s:g} s"
            print(f"alems: sampling process {pid} ({target['comm'] or '?'}), all its "
                  f"threads; Ctrl-C to stop{until}", file=sys.stderr, flush=True)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            try:
                ended = ENDED_EXITED if _wait_exit(pidfd, pid, deadline) else ENDED_DURATION
            except KeyboardInterrupt:   # Ctrl-C, or SIGTERM/SIGHUP (Terminated)
                ended = ENDED_INTERRUPTED
            finally:
                result = sampler.stop()
    finally:
        if pidfd is not None:
            os.close(pidfd)
    result.update_summary(attached_pid=pid, attached_comm=target["comm"], ended=ended)
    return result, ended, target


def sample_attached(pid: int, duration: float | None, output: Path | None,
                     summary_json: Path | None, quiet: bool, stream, **sampling) -> None:
    """`alems sample --pid`: the same Parquet file and summary as for a command."""
    from alems.cli.sample_summary import (data_warnings, print_summary, summary_for_output,
                                          write_summary_json)

    result, ended, target = run_attached(pid, duration_s=duration, stream=stream, **sampling)
    if output is not None:
        result.write_parquet(output)
    summary = summary_for_output(result, [], None, output)
    summary["command"] = None
    summary["warnings"] = data_warnings(summary)
    if summary_json is not None:
        write_summary_json(summary_json, summary)
    if not quiet:
        print_summary(summary)
    for warning in summary["warnings"]:
        print(f"alems: warning: {warning}", file=sys.stderr)
    if ended == ENDED_EXITED:
        print(f"alems: process {pid} ({target['comm'] or '?'}) exited during sampling; "
              "the samples up to its exit were kept", file=sys.stderr)
