"""Context switches count the measured workload's threads, never the instrument's."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import pytest

from alems.experiment.metrics import ProcessCounters
from alems.measure.ctxsw import SwitchTracker, process_switches, thread_ids
from alems.measure.sampler import Sampler
from alems.measure.spawn import spawn_gated


@pytest.fixture
def live_roots(fake_roots):
    """Fake sysfs, the real /proc: these tests count switches of live processes, which
    only the real proc root shows (every /proc read goes through the configured root)."""
    return {**fake_roots, "proc_root": "/proc"}

# A workload whose switches are all in threads other than its main one: 4 threads that
# each sleep 150 times (one voluntary switch per sleep); the main thread only joins.
THREADED = (
    "import threading, time\n"
    "def work():\n"
    "    for _ in range(150): time.sleep(0.001)\n"
    "ts = [threading.Thread(target=work) for _ in range(4)]\n"
    "[t.start() for t in ts]\n"
    "[t.join() for t in ts]\n"
)


def test_sampler_exposes_its_own_threads(live_roots):
    with Sampler(1000, sources=["slow"], **live_roots) as s:
        tids = s.instrument_tids
        assert len(tids) == 2 and set(tids) <= set(thread_ids())
        c_tid = tids[0]
        assert Path(f"/proc/self/task/{c_tid}/comm").read_text().strip() == "alems-sampler"


def test_process_counters_leave_out_the_samplers_1khz_thread(live_roots):
    """getrusage(RUSAGE_SELF) counts the sampler's wake-ups (hundreds in 0.5 s at 1 kHz);
    ProcessCounters with the sampler's tids sees only this idle process (~0)."""
    s = Sampler(1000, sources=["slow"], **live_roots)
    s.start()
    try:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        before = ProcessCounters.now(s.instrument_tids)
        time.sleep(0.5)
        after = ProcessCounters.now(s.instrument_tids)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        s.stop()
    assert ru1.ru_nvcsw - ru0.ru_nvcsw >= 200  # what the runs table used to store
    assert after.voluntary - before.voluntary <= 20
    assert 0 <= after.involuntary - before.involuntary <= 20


def test_process_switches_keep_threads_that_exited():
    """Unlike a sum over live threads, a worker that exits between the snapshots still
    counts (RUSAGE_SELF minus only the excluded threads)."""
    import threading

    before = process_switches()
    t = threading.Thread(target=lambda: [time.sleep(0.001) for _ in range(100)])
    t.start()
    t.join()
    assert (process_switches() - before).voluntary >= 90


def test_sample_summary_counts_every_thread_of_the_workload(live_roots):
    """The summary's `process` switches sum the workload's threads (it used to read the
    main thread's /proc/<pid>/status only: a handful here)."""
    proc, release = spawn_gated([sys.executable, "-c", THREADED])
    s = Sampler(200, pid=proc.pid, sources=["slow"], **live_roots)
    s.start()
    release()
    assert proc.wait() == 0
    result = s.stop()
    # Polled every 50 ms: a thread that exits keeps what it had at the last poll, so up to
    # one interval of its switches can be missed; the main thread alone had a handful.
    assert result.summary["process"]["voluntary_ctxt_switches"] >= 4 * 150 * 0.5
    assert "thread" in result.summary["process_scope"]


def test_tracker_on_this_process_excludes_the_given_threads(live_roots):
    with Sampler(1000, sources=["slow"], **live_roots) as s:
        tracker = SwitchTracker(os.getpid(), s.instrument_tids)
        tracker.poll()
        time.sleep(0.3)
        tracker.poll()
    assert tracker.totals()["voluntary_ctxt_switches"] <= 20
    assert s.result.summary["process"]["voluntary_ctxt_switches"] <= 40
