"""Issue 18 item 8: the CPU-time estimate reads CPU time in nanoseconds (perf task-clock,
else each thread's schedstat), never the sampler's own threads, so a run of a few ms gets
a non-zero estimate proportional to its CPU time and idle subtraction does not go negative
from rounding."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from alems.measure import estimate, threads
from alems.measure.sampler import Sampler

W = 10.0   # watts per busy core of the estimate in these tests
WIDTH = 20  # fixed-width schedstat text: a rewrite in place never leaves a shorter tail


def _wait(cond, what, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def _write_schedstat(path: Path, run_ns: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f"{run_ns:0{WIDTH}d} 5000 7\n".encode(), 0)
    finally:
        os.close(fd)


def _started(sampler) -> bool:
    return sampler._native is not None and sampler._native.stats()["samples"] >= 1


def test_schedstat_in_the_proc_root_gives_exact_ns_without_instrument_threads(fake_roots):
    own = Path(fake_roots["proc_root"]) / str(os.getpid())
    own.unlink()   # the fixture's link to the real entry: this test fakes the entry itself
    task = own / "task"
    start = {111: 5_000_000_001, 222: 17, 333: 900}   # 333: one of the instrument's threads
    for tid, ns in start.items():
        (task / str(tid)).mkdir(parents=True)
        _write_schedstat(task / str(tid) / "schedstat", ns)
    threads.register([333])
    try:
        s = Sampler(500, sources=["slow"], estimate_w_per_core=W, **fake_roots)
        s.start()
        try:
            _wait(lambda: _started(s), "the sampler's first sample")
            _write_schedstat(task / "111" / "schedstat", start[111] + 1_234_567)
            _write_schedstat(task / "222" / "schedstat", start[222] + 7)
            _write_schedstat(task / "333" / "schedstat", start[333] + 10**9)
        finally:
            result = s.stop()
    finally:
        threads.unregister([333])
    model = result.summary["estimate_model"]
    assert "schedstat" in model["cpu_time_source"] and "2 thread(s)" in model["cpu_time_source"]
    # 1 234 574 ns exactly, at W watts: no clock tick in sight
    assert result.summary["energy_j"]["pkg"] == pytest.approx(1_234_574e-9 * W, rel=1e-12)
    assert estimate.CPU_NS_COLUMN not in result.table.column_names


def test_a_thread_that_exits_mid_run_keeps_its_cpu_time(fake_roots):
    """schedstat of this process's real threads (the fake proc root shows this process
    through a link to its real entry): a worker busy ~100 ms of CPU then exits; its time
    stays counted, the run goes on."""
    go, done = threading.Event(), {}

    def worker():
        go.wait()
        t0 = time.thread_time_ns()
        while time.thread_time_ns() - t0 < 100_000_000:
            pass
        done["ns"] = time.thread_time_ns() - t0

    th = threading.Thread(target=worker)
    th.start()
    s = Sampler(1000, sources=["slow"], estimate_w_per_core=W, **fake_roots)
    s.start()
    try:
        _wait(lambda: _started(s), "the sampler's first sample")
        go.set()
        th.join()
        _wait(lambda: not os.path.exists(f"/proc/{os.getpid()}/task/{th.native_id}"),
              "the worker's thread to be gone")
        n = s._native.stats()["samples"]
        _wait(lambda: s._native.stats()["samples"] >= n + 3, "samples after the thread exited")
    finally:
        result = s.stop()
    assert "read_error" not in result.summary, result.summary.get("read_error")
    assert "schedstat" in result.summary["estimate_model"]["cpu_time_source"]
    est_ns = result.summary["energy_j"]["pkg"] / W * 1e9
    # at most one read period of the worker is lost at its exit; the main thread adds little
    assert 0.9 * done["ns"] <= est_ns <= done["ns"] + 50_000_000


@pytest.mark.parametrize("sources", [None, ["slow"]], ids=["task-clock-if-any", "schedstat"])
def test_a_run_of_a_few_ms_gets_an_estimate_proportional_to_its_cpu_time(fake_roots, sources):
    """No energy counter under the fake roots: the estimate. Busy loops of 3 and 12 ms of
    CPU: each estimate is non-zero, at least the loop's CPU time and at most what this
    thread spent from start to stop (the loop plus its own start/stop work, which a loaded
    machine makes longer) and 2 ms for the process's other threads, never a multiple of a
    10 ms clock tick."""
    for busy_ns in (3_000_000, 12_000_000):
        s = Sampler(1000, sources=sources, estimate_w_per_core=W, **fake_roots)
        m0 = time.thread_time_ns()
        s.start()
        try:
            _wait(lambda: _started(s), "the sampler's first sample")
            t0 = time.thread_time_ns()
            while time.thread_time_ns() - t0 < busy_ns:
                pass
            spent = time.thread_time_ns() - t0
        finally:
            result = s.stop()
        main_ns = time.thread_time_ns() - m0
        assert result.energy_source == "estimate"
        est_ns = result.summary["energy_j"]["pkg"] / W * 1e9
        assert spent * 0.97 <= est_ns <= main_ns + 2_000_000, (
            busy_ns, spent, est_ns, main_ns, result.summary["estimate_model"])
    if sources is None and "task-clock" in result.summary["estimate_model"]["cpu_time_source"]:
        # the estimate's task clock is read at every sample, not at the slow rate
        clock = result.table.column("task_clock_ns").to_numpy()
        assert len(set(clock.tolist())) > 3


def test_scripted_batch_on_the_estimate_has_no_negative_dynamic_energy(tmp_path, monkeypatch):
    """24 runs of a few ms each on the real sampler, estimate only (empty sysfs): with CPU
    time in ticks 14 of 24 went negative here and the baseline was re-measured 13 times;
    in ns every run's estimate is its own CPU time and one idle baseline serves them all."""
    import sqlite3

    from alems.experiment.batch import BatchRunner
    from alems.experiment.plan import BatchConfig

    (tmp_path / "empty-sys").mkdir()
    monkeypatch.setenv("ALEMS_SYSFS_ROOT", str(tmp_path / "empty-sys"))
    monkeypatch.setenv("ALEMS_MSR_PATH", str(tmp_path / "empty-sys" / "no" / "{cpu}"))
    monkeypatch.setenv("ALEMS_ESTIMATE_W_PER_CORE", str(W))
    db = tmp_path / "e.db"
    cfg = BatchConfig(tasks=["gsm8k_basic", "factual_qa"], providers=["scripted"],
                      repetitions=6, seed=3, hz=1000.0, db_path=db, save_db=True,
                      baseline_duration_s=0.5, baseline_reps=2, group_id="est")
    summary = BatchRunner(cfg, log=lambda m: None, progress=False).run()
    assert summary.ok == 24 and summary.energy_source == "estimate"
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT total_energy_uj, dynamic_energy_uj, dynamic_clipped FROM runs"
                        ).fetchall()
    assert len(rows) == 24
    assert all(total > 0 for total, _, _ in rows), "every run spent some CPU"
    assert len({total for total, _, _ in rows}) == 24, "no quantum shared by runs"
    assert all(dyn is not None and dyn >= 0 and not clipped for _, dyn, clipped in rows)
    assert conn.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == 1
