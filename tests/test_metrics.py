"""A run's metrics from a synthetic sample table whose answers are known exactly."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pytest

from alems.experiment.baseline import Baseline
from alems.experiment.counter_metrics import cstate_bucket
from alems.experiment.metrics import ProcessCounters, phase_rows, run_metrics
from alems.experiment.workflows import WorkflowResult

from _fake_sampling import Phase, sample_result, synthetic_table

T0 = 10_000_000_000
N = 2001           # 2 s at 1 kHz
HZ = 1000.0


def _full_table():
    secs = np.arange(N) / HZ
    extra = {
        "instructions": pa.array((secs * 3e9).astype(np.int64)),
        "cycles": pa.array((secs * 2e9).astype(np.int64)),
        "cache_references": pa.array((secs * 1e6).astype(np.int64)),
        "cache_misses": pa.array((secs * 5e4).astype(np.int64)),
        "cpu_migrations": pa.array((secs * 10).astype(np.int64)),
        "package_temp_c": pa.array(50.0 + 2.0 * secs),          # +2 °C/s, 50 -> 54
        "cstate_C1E_time_us": pa.array((secs * 1e5).astype(np.int64)),
        "cstate_C6_time_us": pa.array((secs * 3e5).astype(np.int64)),
        "cstate_C7s_time_us": pa.array((secs * 1e5).astype(np.int64)),
        "cstate_C10_time_us": pa.array((secs * 2e5).astype(np.int64)),
        "interrupts": pa.array((secs * 4000).astype(np.int64)),
        "procs_running": pa.array(np.where(np.arange(N) % 2 == 0, 2, 4).astype(np.int64)),
    }
    return synthetic_table(n=N, hz=HZ, t0_ns=T0, pkg_w=20.0, core_w=12.0, extra=extra)


def _workflow(**kw):
    base = dict(answer="The answer is 42. Answer: 42", llm_calls=3, tool_calls=1, steps=4,
                plan_fallback=False, prompt_tokens=150, completion_tokens=50,
                api_latency_ns=0, compute_ns=1_500_000_000, trace=[])
    base.update(kw)
    return WorkflowResult(**base)


def _phases():
    ms = 1_000_000
    return [
        Phase("planning", "planning", T0, T0 + 500 * ms),
        Phase("llm", "llm", T0 + 10 * ms, T0 + 490 * ms),
        Phase("execution", "execution", T0 + 500 * ms, T0 + 1500 * ms),
        Phase("tool:calculator", "tool", T0 + 600 * ms, T0 + 700 * ms),
        Phase("waiting", "waiting", T0 + 700 * ms, T0 + 800 * ms),
        Phase("synthesis", "synthesis", T0 + 1500 * ms, T0 + 2000 * ms),
        Phase("waiting", "waiting", T0 + 1500 * ms, T0 + 1550 * ms),
    ]


BASE = Baseline(energy_source="powercap", duration_s=1.0, repetitions=3,
                power_w={"pkg": 5.0, "core": 2.0}, measured_at="2025-01-01T00:00:00+00:00",
                baseline_id=7)


def test_full_platform_metrics_are_exact():
    result = sample_result(_full_table(), phases=_phases(), energy_source="powercap")
    m = run_metrics(result, _workflow(), baseline=BASE, workflow_type="agentic",
                    extracted_answer="42", correct=True,
                    process_before=ProcessCounters(10, 3), process_after=ProcessCounters(25, 4),
                    country="US", footprint=lambda uj, c: {"carbon_g": uj * 1e-9,
                                                           "water_ml": None, "methane_mg": 1.0})
    c = m.columns
    assert c["duration_ns"] == 2_000_000_000
    assert c["pkg_energy_uj"] == pytest.approx(40e6)          # 20 W x 2 s
    assert c["total_energy_uj"] == pytest.approx(40e6)
    assert c["core_energy_uj"] == pytest.approx(24e6)
    assert c["baseline_energy_uj"] == pytest.approx(10e6)     # 5 W x 2 s
    assert c["dynamic_energy_uj"] == pytest.approx(30e6)
    assert c["dynamic_clipped"] == 0
    assert c["baseline_id"] == 7
    assert c["reasoning_energy_uj"] == pytest.approx(24e6 - 4e6)
    assert c["orchestration_energy_uj"] == pytest.approx(30e6 - 20e6)
    assert c["avg_power_watts"] == pytest.approx(20.0)
    assert c["package_power_max_w"] == pytest.approx(20.0)
    assert c["instructions"] == 6_000_000_000 and c["cycles"] == 4_000_000_000
    assert c["ipc"] == pytest.approx(1.5)
    assert c["cache_miss_rate"] == pytest.approx(0.05)
    assert c["thread_migrations"] == 20
    assert c["energy_per_token_uj"] == pytest.approx(30e6 / 200)
    assert c["energy_per_instruction_uj"] == pytest.approx(30e6 / 6e9)
    assert c["instructions_per_token"] == pytest.approx(6e9 / 200)
    assert c["planning_time_ms"] == pytest.approx(500.0)
    assert c["execution_time_ms"] == pytest.approx(1000.0)
    assert c["synthesis_time_ms"] == pytest.approx(500.0)
    assert c["waiting_time_ms"] == pytest.approx(150.0)
    assert c["api_latency_ms"] == 0.0 and c["compute_time_ms"] == pytest.approx(1500.0)
    assert c["start_temp_c"] == pytest.approx(50.0)
    assert c["max_temp_c"] == pytest.approx(54.0)
    assert c["thermal_delta_c"] == pytest.approx(4.0)
    assert c["package_temp_celsius"] == pytest.approx(52.0)
    assert c["thermal_gradient"] == pytest.approx(2.0)
    # C1E has no column; C6 -> c6; C7s and C10 -> c7 (C7 and deeper)
    assert c["c6_time_seconds"] == pytest.approx(0.6)
    assert c["c7_time_seconds"] == pytest.approx(0.6)
    assert c["c2_time_seconds"] is None and "no C2-class" in m.null_reasons["c2_time_seconds"]
    assert c["c3_time_seconds"] is None
    assert c["context_switches_voluntary"] == 15 and c["context_switches_involuntary"] == 1
    assert c["run_queue_length"] == pytest.approx(3.0, abs=0.01)
    assert c["interrupt_rate"] == pytest.approx(4000.0, rel=1e-3)
    assert (c["llm_calls"], c["tool_calls"], c["steps"], c["plan_fallback"]) == (3, 1, 4, 0)
    assert (c["prompt_tokens"], c["completion_tokens"], c["total_tokens"]) == (150, 50, 200)
    assert (c["answer"], c["success"]) == ("42", 1)
    assert c["carbon_g"] == pytest.approx(30e6 * 1e-9)
    assert c["water_ml"] is None and "no factor" in m.null_reasons["water_ml"]
    assert c["sample_count"] == N and c["achieved_hz"] == pytest.approx(1000.0)
    assert c["requested_hz"] == 1000.0 and c["late_samples"] == 0
    # every None has a reason and nothing else does
    assert {k for k, v in c.items() if v is None} == set(m.null_reasons)


def test_missing_sources_are_null_with_reasons_never_zero():
    table = synthetic_table(n=101, hz=100.0, pkg_w=3.0, core_w=None)
    result = sample_result(table, energy_source="estimate", summary={})
    m = run_metrics(result, _workflow(prompt_tokens=None), baseline=None, workflow_type="linear")
    c, why = m.columns, m.null_reasons
    assert c["pkg_energy_uj"] == pytest.approx(3e6)
    for name in ("core_energy_uj", "dram_energy_uj", "baseline_energy_uj", "dynamic_energy_uj",
                 "reasoning_energy_uj", "instructions", "cycles", "ipc", "cache_miss_rate",
                 "package_temp_celsius", "thermal_gradient", "c2_time_seconds",
                 "c6_time_seconds", "context_switches_voluntary", "thread_migrations",
                 "run_queue_length", "interrupt_rate", "total_tokens", "energy_per_token_uj",
                 "planning_time_ms", "plan_fallback", "carbon_g", "late_samples"):
        assert c[name] is None, name
        assert why[name], name
    assert "exposes no core" in why["core_energy_uj"]
    assert "baseline" in why["dynamic_energy_uj"]
    assert "not applicable" in why["planning_time_ms"]
    assert "perf" in why["instructions"]
    assert c["completion_tokens"] == 50
    json.dumps(why)


def test_negative_dynamic_energy_kept_or_clipped_with_flag():
    table = synthetic_table(n=101, hz=100.0, pkg_w=3.0, core_w=None)
    hot_base = Baseline(energy_source="estimate", duration_s=1, repetitions=1,
                        power_w={"pkg": 4.0}, measured_at="2025-01-01T00:00:00+00:00")
    result = sample_result(table, energy_source="estimate")
    kept = run_metrics(result, _workflow(), baseline=hot_base, workflow_type="linear")
    assert kept.columns["dynamic_energy_uj"] == pytest.approx(-1e6)
    assert kept.columns["dynamic_clipped"] == 0
    assert kept.columns["carbon_g"] is None and "negative" in kept.null_reasons["carbon_g"]
    clipped = run_metrics(result, _workflow(), baseline=hot_base, workflow_type="linear",
                          clip_negative=True)
    assert clipped.columns["dynamic_energy_uj"] == 0.0
    assert clipped.columns["dynamic_clipped"] == 1


def test_baseline_from_another_source_is_not_used():
    result = sample_result(synthetic_table(n=11, hz=10.0), energy_source="estimate")
    m = run_metrics(result, _workflow(), baseline=BASE, workflow_type="linear")
    assert m.columns["dynamic_energy_uj"] is None
    assert "powercap" in m.null_reasons["dynamic_energy_uj"]


def test_failed_run_keeps_energy_but_no_scores():
    result = sample_result(synthetic_table(n=101, hz=100.0), energy_source="powercap")
    m = run_metrics(result, None, baseline=BASE, workflow_type="agentic")
    assert m.columns["dynamic_energy_uj"] == pytest.approx(15e6)
    assert m.columns["success"] is None and m.columns["llm_calls"] is None
    assert "failed" in m.null_reasons["success"]


def test_agentic_waiting_computed_when_not_marked():
    ms = 1_000_000
    phases = [Phase("planning", "planning", T0, T0 + 400 * ms),
              Phase("llm", "llm", T0, T0 + 300 * ms),
              Phase("tool:lookup", "tool", T0 + 500 * ms, T0 + 600 * ms)]
    result = sample_result(synthetic_table(n=1001, hz=1000.0, t0_ns=T0), phases=phases)
    m = run_metrics(result, _workflow(), baseline=BASE, workflow_type="agentic")
    assert m.columns["waiting_time_ms"] == pytest.approx(1000 - 300 - 100)
    assert m.columns["execution_time_ms"] is None


@pytest.mark.parametrize("name,bucket", [
    ("C1", None), ("C1E", None), ("POLL", None), ("C2", "c2"), ("C3_ACPI", "c3"),
    ("C6", "c6"), ("C6S", "c6"), ("C6-SKX", "c6"), ("C7s", "c7"), ("C8", "c7"), ("C10", "c7"),
    ("haltpoll_idle", None)])
def test_cstate_mapping(name, bucket):
    assert cstate_bucket(name) == bucket


def test_phase_rows_nesting_and_energy():
    result = sample_result(_full_table(), phases=_phases())
    rows = phase_rows(result)
    by_name = [(r["seq"], r["name"], r["parent_seq"]) for r in rows]
    assert by_name[:3] == [(1, "planning", None), (2, "llm", 1), (3, "execution", None)]
    tool = next(r for r in rows if r["name"] == "tool:calculator")
    assert tool["parent_seq"] == 3
    assert tool["duration_ns"] == 100_000_000
    assert tool["energy_uj"] == pytest.approx(20.0 * 0.1 * 1e6)   # 20 W x 100 ms
    synth_wait = [r for r in rows if r["name"] == "waiting"][-1]
    assert rows[synth_wait["parent_seq"] - 1]["name"] == "synthesis"


def test_real_sampler_result_goes_through(tmp_path):
    """The real Sampler (whatever energy source this machine has) gives a complete row."""
    from alems.measure import sampler as sampler_mod
    s = sampler_mod.Sampler(hz=200)
    s.start()
    with s.phase("llm", "llm"):
        sum(i * i for i in range(200_000))
    r = s.stop()
    m = run_metrics(r, _workflow(), baseline=None, workflow_type="linear")
    assert m.columns["energy_source"] == r.energy_source
    assert m.columns["sample_count"] == r.table.num_rows > 0
    assert {k for k, v in m.columns.items() if v is None} == set(m.null_reasons)


def test_same_numbers_through_the_real_sample_result_class():
    """The sampler's own SampleResult (not a fake) over the synthetic table."""
    from alems.measure.result import Phase, SampleResult

    phases = [Phase(p.name, p.kind, p.start_ns, p.end_ns, dict(p.detail)) for p in _phases()]
    result = SampleResult(_full_table(), phases, "powercap", 1000.0, {"late": 2, "dropped": 0})
    m = run_metrics(result, _workflow(), baseline=BASE, workflow_type="agentic")
    c = m.columns
    assert c["dynamic_energy_uj"] == pytest.approx(30e6)
    assert c["ipc"] == pytest.approx(1.5) and c["cache_miss_rate"] == pytest.approx(0.05)
    assert c["late_samples"] == 2 and c["dropped_samples"] == 0
    assert c["planning_time_ms"] == pytest.approx(500.0)
    assert c["c6_time_seconds"] == pytest.approx(0.6)
    rows = phase_rows(result)
    tool = next(r for r in rows if r["kind"] == "tool")
    assert tool["energy_uj"] == pytest.approx(2e6)


def test_replay_sampler_result_gives_expected_energy():
    from alems.measure import replay
    table = replay.synthetic_table(duration_s=5.0, hz=1000.0, power_w={"pkg": 20.0, "core": 8.0})
    s = replay.ReplaySampler(table)
    s.start()
    with s.phase("llm", "llm"):
        time.sleep(0.05)
    r = s.stop()
    m = run_metrics(r, _workflow(), baseline=BASE, workflow_type="linear")
    dur_s = m.columns["duration_ns"] / 1e9
    assert dur_s >= 0.04
    assert m.columns["avg_power_watts"] == pytest.approx(20.0, rel=1e-6)
    assert m.columns["dynamic_energy_uj"] == pytest.approx((20.0 - 5.0) * dur_s * 1e6, rel=1e-6)
    assert m.columns["reasoning_energy_uj"] == pytest.approx((8.0 - 2.0) * dur_s * 1e6, rel=1e-6)


def _rewrite(path, text: str) -> None:
    """In place, as the kernel does (the sampler keeps the file open)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, text.encode(), 0)
    finally:
        os.close(fd)


def test_real_sampler_slow_columns_map_to_thermal_cstate_scheduler(tmp_path):
    """The real Sampler over fake sysfs/proc: its column names reach the right metrics."""
    from alems.measure import sampler as sampler_mod
    import fakehw
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    tree = fakehw.make_powercap_tree(sysfs)
    fakehw.make_cpus(sysfs, [0, 0])
    fakehw.make_thermal(sysfs)                       # x86_pkg_temp 45 °C
    fakehw.make_cpuidle(sysfs, states=(("POLL", 10), ("C1E", 1000), ("C6", 50000),
                                       ("C7s", 7000)))
    fakehw.make_proc(proc, intr=1000, procs_running=3)
    s = sampler_mod.Sampler(hz=200, sysfs_root=str(sysfs), proc_root=str(proc),
                            msr_path=str(tmp_path / "no-msr" / "{cpu}"))
    writer = fakehw.EnergyWriter(tree.targets + tree.mirrors).start()  # live RAPL counters
    s.start()
    time.sleep(0.35)
    cpu = sysfs / "devices/system/cpu"
    _rewrite(cpu / "cpu0/cpuidle/state2/time", "250000\n")      # C6 +200000 µs
    _rewrite(cpu / "cpu1/cpuidle/state3/time", "114000\n")      # C7s +100000 µs
    _rewrite(sysfs / "class/thermal/thermal_zone1/temp", "55000\n")
    fakehw.write_proc_stat(proc, intr=3000, ctxt=6000, procs_running=3)
    time.sleep(0.35)
    r = s.stop()
    writer.stop()
    m = run_metrics(r, _workflow(), baseline=None, workflow_type="linear")
    c = m.columns
    assert c["c6_time_seconds"] == pytest.approx(0.2)
    assert c["c7_time_seconds"] == pytest.approx(0.1)
    assert c["c2_time_seconds"] is None and "C1E" in m.null_reasons["c2_time_seconds"]
    assert c["start_temp_c"] == pytest.approx(45.0) and c["max_temp_c"] == pytest.approx(55.0)
    assert c["thermal_delta_c"] == pytest.approx(10.0) and c["thermal_gradient"] > 0
    dur_s = c["duration_ns"] / 1e9
    assert c["interrupt_rate"] == pytest.approx(2000 / dur_s, rel=1e-6)
    assert c["run_queue_length"] == pytest.approx(3.0)
    assert c["energy_source"] == "powercap"
