"""Sampler end to end on this machine: real perf software counters, gated spawn,
estimate, slow sources, rate, errors and leaks."""

from __future__ import annotations

import os
import sys
import time

import pytest

import fakehw
from alems.errors import AlemsError
from alems.measure.sampler import Sampler
from alems.measure.spawn import spawn_gated
from conftest import needs_perf_hw

BUSY = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"


def _sample_command(argv, **kw):
    proc, release = spawn_gated(argv)
    s = Sampler(1000, pid=proc.pid, **kw)
    s.start()
    release()
    rc = proc.wait()
    return s.stop(), rc


def test_software_counters_of_a_spawned_command(fake_roots):
    result, rc = _sample_command([sys.executable, "-c", BUSY.format(s=0.3)],
                                 sources=["perf"], **fake_roots)
    assert rc == 0
    c = result.summary["counters"]
    assert 0.28e9 <= c["task_clock_ns"] <= 0.6e9
    assert c["page_faults"] > 100  # a Python interpreter starting up
    assert c["context_switches"] >= 0 and "cpu_migrations" in c


def test_counters_start_at_exec_and_follow_children(fake_roots):
    # /bin/true: the gate (a Python helper) burns >10 ms before exec, none of it counted.
    result, _ = _sample_command(["/bin/true"], sources=["perf"], **fake_roots)
    assert result.summary["counters"]["task_clock_ns"] < 8e6
    # A child process (inherit=1) is counted in the tree.
    script = f"{sys.executable} -c '{BUSY.format(s=0.25)}' & wait"
    result, _ = _sample_command(["/bin/sh", "-c", script], sources=["perf"], **fake_roots)
    assert result.summary["counters"]["task_clock_ns"] >= 0.23e9


@needs_perf_hw
def test_hardware_counters_count(fake_roots):
    result, _ = _sample_command([sys.executable, "-c", BUSY.format(s=0.1)], sources=["perf"],
                                **fake_roots)
    assert result.summary["counters"]["instructions"] > 1e6


def test_spawn_gated_rejects_missing_command():
    with pytest.raises(AlemsError, match="command not found: no-such-cmd-xyz; check the name or PATH"):
        spawn_gated(["no-such-cmd-xyz"])


def test_exit_code_passes_through_gate():
    proc, release = spawn_gated(["/bin/sh", "-c", "exit 7"])
    release()
    assert proc.wait() == 7
    proc, release = spawn_gated(["/bin/sh", "-c", "exit 0"])
    release(cancel=True)
    assert proc.wait() == 125


def test_estimate_when_no_energy_counter(fake_roots):
    result, _ = _sample_command([sys.executable, "-c", BUSY.format(s=0.3)],
                                estimate_w_per_core=7.5, **fake_roots)
    assert result.energy_source == "estimate"
    s = result.summary
    assert s["energy_source"] == "estimate" and s["estimate_model"]["w_per_core"] == 7.5
    assert "task-clock" in s["estimate_model"]["cpu_time_source"]
    assert result.metadata["energy_source"] == "estimate" and "7.5" in result.metadata["estimate_model"]
    cpu_s = s["counters"]["task_clock_ns"] / 1e9
    assert s["energy_j"]["pkg"] == pytest.approx(cpu_s * 7.5, rel=1e-9)
    assert "estimate" in result.metadata["units"]


def test_estimate_in_process_without_perf_uses_schedstat(fake_roots, monkeypatch):
    monkeypatch.setenv("ALEMS_ESTIMATE_W_PER_CORE", "4")
    # the real /proc (this process's CPU time); a fake one is honoured: tests/test_roots.py
    s = Sampler(200, sources=["slow"], **{**fake_roots, "proc_root": "/proc"})
    p0 = time.process_time()
    with s:   # 0.3 s of this thread's CPU (the sampler's own threads are not counted)
        t = time.thread_time()
        while time.thread_time() - t < 0.3:
            pass
    process_s = time.process_time() - p0   # every thread of this process, sampler included
    r = s.result
    assert r.summary["estimate_model"]["cpu_time_source"].startswith(
        f"/proc/{os.getpid()}/task/*/schedstat")
    assert r.summary["estimate_model"]["w_per_core"] == 4.0
    assert 0.97 * 0.3 * 4 <= r.summary["energy_j"]["pkg"] <= process_s * 4


def test_slow_sources_carried_forward(fake_roots):
    fakehw.make_thermal(fake_roots["sysfs_root"])
    fakehw.make_cpuidle(fake_roots["sysfs_root"], ncpu=2)
    proc_root = fake_roots["proc_root"]
    s = Sampler(500, sources=["slow"], slow_hz=20, **fake_roots)
    s.start()
    time.sleep(0.2)
    fakehw.write_proc_stat(proc_root, intr=1500, ctxt=5100, procs_running=9)
    time.sleep(0.2)
    r = s.stop()
    t = r.table
    assert set(t.column("package_temp_c").to_pylist()) == {45.0}
    assert r.summary["counters"]["interrupts"] == 500
    assert r.summary["counters"]["system_context_switches"] == 100
    running = t.column("procs_running").to_numpy()
    assert running[0] == 3 and running[-1] == 9
    # changed once, and held between slow reads (500 Hz / 20 Hz = every 25th tick)
    assert ((running[1:] != running[:-1]).sum()) == 1
    assert r.summary["counters"]["cstate_C6_time_us"] == 0  # cumulative since start
    assert r.summary["slow_hz"] == 20.0


def test_rate_at_1khz_on_fake_tree(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"])
    with fakehw.EnergyWriter(tree.targets):
        s = Sampler(1000, **fake_roots)
        s.start()
        time.sleep(1.0)
        r = s.stop()
    assert r.energy_source == "powercap"
    assert r.summary["achieved_hz"] >= 950
    assert r.summary["samples"] >= 950
    assert r.summary["dropped_samples"] == 0
    assert {"task_clock_ns", "context_switches"} <= set(r.table.column_names)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))


def test_start_stop_200_times_does_not_leak(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"])
    fakehw.make_cpuidle(fake_roots["sysfs_root"])
    for _ in range(20):  # warm-up: imports, allocator pools
        Sampler(1000, **fake_roots).__enter__().stop()
    fds, rss = _fds(), _rss_kb()
    for _ in range(200):
        s = Sampler(1000, **fake_roots)
        s.start()
        r = s.stop()
        assert r.summary["samples"] >= 2
    # A leak grows the count; other tests' leftover threads may close files meanwhile.
    assert _fds() <= fds
    assert _rss_kb() - rss < 8 * 1024


def test_bad_arguments_are_one_clear_error(fake_roots):
    with pytest.raises(AlemsError, match="hz must be a positive number"):
        Sampler(0)
    with pytest.raises(AlemsError, match="unknown source"):
        Sampler(100, sources=["nope"])
    with pytest.raises(AlemsError, match="choose one energy source"):
        Sampler(100, sources=["powercap", "msr"])
    with pytest.raises(AlemsError, match="not readable here: .*container"):
        Sampler(100, sources=["powercap"], **fake_roots).start()
    with pytest.raises(AlemsError, match="not started"):
        Sampler(100).stop()
    with pytest.raises(AlemsError, match="does not exist"):
        Sampler(100, pid=2 ** 22 + 12345)


def test_read_error_during_run_is_reported(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    s = Sampler(500, sources=["powercap"], **fake_roots)
    s.start()
    time.sleep(0.05)
    os.truncate(tree.targets[2].path, 0)  # dram counter becomes unreadable
    time.sleep(0.05)
    r = s.stop()
    assert "intel-rapl:0:1/energy_uj" in r.summary["read_error"]


def test_phases_nest_and_share_the_clock():
    s = Sampler(200, sources=["perf"])
    with s:
        with s.phase("plan", kind="planning") as outer:
            with s.phase("call", kind="llm", model="x") as inner:
                time.sleep(0.02)
    r = s.result
    assert [p.name for p in r.phases] == ["plan", "call"]
    assert outer.start_ns <= inner.start_ns < inner.end_ns <= outer.end_ns
    assert r.t_start_ns <= outer.start_ns and outer.end_ns <= r.t_end_ns
    assert r.phases[1].detail == {"model": "x"} and Sampler.now_ns() > outer.end_ns


def test_low_rate_sampler_stops_promptly():
    s = Sampler(0.5, sources=["perf"], slow_hz=0.5)
    s.start()
    time.sleep(0.05)
    t = time.monotonic()
    r = s.stop()
    assert time.monotonic() - t < 0.3  # not a whole 2 s period
    assert r.summary["samples"] == 2  # the first record and the final one


def test_realtime_thread_is_best_effort():
    r = Sampler(200, sources=["perf"], rt_priority=0).__enter__().stop()
    assert r.summary["realtime"] is False
    r = Sampler(200, sources=["perf"], rt_priority=5).__enter__().stop()
    if os.geteuid() == 0:
        assert r.summary["realtime"] is True
    else:  # refused: normal scheduling, and the summary says so
        assert any("SCHED_FIFO refused" in n for n in r.summary["source_notes"])
    with pytest.raises(AlemsError, match="rt_priority"):
        Sampler(200, rt_priority=-1)
