"""Issue 8 item 1: perf counters count every thread of the workload, also threads that
existed before the sampler started (a model's worker pool from an earlier run), and never
the sampler's own threads."""

from __future__ import annotations

import hashlib
import os
import resource
import sqlite3
import threading
import time

import pytest

from alems.experiment.batch import BatchRunner
from alems.experiment.plan import BatchConfig
from alems.experiment.providers.scripted import ScriptedProvider
from alems.measure import threads as instrument_threads
from alems.measure.sampler import Sampler

_DATA = b"x" * (4 << 20)


def _thread_cpu_ns(tid: int) -> int:
    """CPU time of one thread of this process in ns (schedstat: exact, not ticks)."""
    with open(f"/proc/self/task/{tid}/schedstat") as fh:
        return int(fh.read().split()[0])


def workload_cpu_ns() -> int:
    """CPU time of this process (every thread, exited ones too: getrusage) minus the
    instrument's threads (alive over the measured span)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    total = int(round((ru.ru_utime + ru.ru_stime) * 1e9))
    for tid in instrument_threads.instrument_tids():
        try:
            total -= _thread_cpu_ns(tid)
        except OSError:
            pass
    return total


class Pool:
    """Worker threads created once, before any sampler: like llama.cpp's threads."""

    def __init__(self, n: int = 2):
        self.jobs = [threading.Event() for _ in range(n)]
        self.done = [threading.Event() for _ in range(n)]
        self.quit = False
        self.work = 0
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _loop(self, i: int) -> None:
        while True:
            self.jobs[i].wait()
            self.jobs[i].clear()
            if self.quit:
                return
            for _ in range(self.work):  # a fixed amount of CPU work, however loaded
                hashlib.sha256(_DATA).digest()  # releases the GIL: both threads run
            self.done[i].set()

    def run(self, hashes: int) -> None:
        self.work = hashes
        for e in self.jobs:
            e.set()
        for e in self.done:
            e.wait()
            e.clear()

    def close(self) -> None:
        self.quit = True
        for e in self.jobs:
            e.set()


def _perf_or_skip() -> None:
    try:
        with Sampler(hz=50, sources=["perf"]) as s:
            pass
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no perf counters here: {exc}")
    if s.result.summary["counters"].get("task_clock_ns") is None:
        pytest.skip("no task_clock counter here")


def test_sampler_counts_threads_created_before_it_started():
    _perf_or_skip()
    pool = Pool(2)
    try:
        s = Sampler(hz=100, sources=["perf"])
        s.start()
        c0 = workload_cpu_ns()
        pool.run(60)
        c1 = workload_cpu_ns()
        res = s.stop()
    finally:
        pool.close()
    counted = res.summary["counters"]["task_clock_ns"]
    assert counted == pytest.approx(c1 - c0, rel=0.10)
    assert c1 - c0 > 0.05e9  # the pool did work (little on a loaded machine)


class _Measured:
    """A real sampler that also records the workload's CPU time over its span."""

    spans: list[tuple[int, int]] = []

    def __init__(self):
        self.s = Sampler(hz=100, sources=["perf"])

    def __getattr__(self, name):
        return getattr(self.s, name)

    def start(self):
        t0 = time.thread_time_ns()
        self.s.start()
        self.c0 = workload_cpu_ns()
        self.own_ns = time.thread_time_ns() - t0

    def stop(self):
        span = workload_cpu_ns() - self.c0
        t0 = time.thread_time_ns()
        result = self.s.stop()
        # (span, this thread's CPU in start() and stop(): counted too, and on a loaded
        # machine no longer negligible beside the span)
        _Measured.spans.append((span, self.own_ns + time.thread_time_ns() - t0))
        return result


class _NoProbe:
    """The background-load probe's thread is not the subject here."""

    def start(self):
        return self

    def stop(self):
        return {}


def test_every_batch_run_counts_the_models_threads(tmp_path, monkeypatch):
    _perf_or_skip()
    import alems.experiment.execute as execute_mod  # where a run is measured

    monkeypatch.setattr(execute_mod, "LoadProbe", _NoProbe)
    pool = Pool(2)

    class Provider(ScriptedProvider):
        def generate(self, prompt, settings, *, system=None):
            pool.run(30)
            return super().generate(prompt, settings, system=system)

    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], repetitions=2, seed=1,
                      hz=100.0, sources=["perf"], db_path=tmp_path / "e.db",
                      baseline_duration_s=0.02, baseline_reps=1, group_id="g-perf")
    _Measured.spans = []
    runner = BatchRunner(cfg, sampler_factory=_Measured,
                         provider_factory=lambda name: Provider(delay_s=0.0),
                         log=lambda m: None)
    try:
        runner.run()
    finally:
        pool.close()
    conn = sqlite3.connect(tmp_path / "e.db")
    clocks = [r[0] for r in conn.execute(
        "SELECT task_clock_ns FROM runs ORDER BY order_index")]
    assert len(clocks) == 4
    runs_cpu = _Measured.spans[-4:]  # the last four samplers measured the runs
    for counted, (cpu, own) in zip(clocks, runs_cpu):
        assert 0.9 * cpu <= counted <= 1.1 * (cpu + own), (counted, cpu, own)
