"""Overhead at 1000 Hz on a fake tree with 4 energy domains + 4 software perf counters,
measured side by side in one run, with/without runs alternated to cancel drift:

- bare: the CPU-bound workload alone;
- cli: the workload under `alems sample --hz 1000 --sources powercap,perf` (a subprocess,
  exactly what a user runs; its --summary-json gives rate, drops and the C thread's CPU);
- api: the workload under `Sampler(1000, ...)` in this process, so the whole sampler's
  CPU (C thread + Python drain thread) is this process's CPU while it only waits;
- python: the workload under the plain-Python reference sampler (benchmarks/pysampler.py)
  reading the same four files and the same four software counters.

The workload times itself, so interpreter start-up is not in the wall-time ratio.
Set ALEMS_BENCH_STRICT=1 to make the issue's targets (≤ 1 % CPU, ≤ 1.01 wall, ≥ 99 %
rate) hard assertions; by default they are reported as PASS/MISS and only sanity bounds
are asserted, because a shared 2-core VM cannot promise them on every run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchutil import REPO, WORKLOAD, make_static_powercap, record

from alems.measure import _native
from alems.measure._native import NativeSampler
from alems.measure.sampler import Sampler, spawn_gated
from pysampler import PySampler

HZ = 1000
ROUNDS = int(os.environ.get("ALEMS_BENCH_ALTERNATIONS", "5"))
STRICT = os.environ.get("ALEMS_BENCH_STRICT") == "1"
TARGET_CPU_PCT = 1.0
TARGET_WALL_RATIO = 1.01
TARGET_RATE = 0.99
KINDS = ("cli", "cli_energy", "api", "python")


def _parse_times(stdout: bytes | str) -> dict:
    """The workload's own last line: wall seconds, CPU seconds."""
    text = stdout.decode() if isinstance(stdout, bytes) else stdout
    wall_s, cpu_s = text.strip().splitlines()[-1].split()
    return {"work_s": float(wall_s), "work_cpu_s": float(cpu_s)}


def _bare() -> dict:
    c0, t0 = time.process_time_ns(), time.monotonic_ns()
    out = subprocess.run([sys.executable, "-c", WORKLOAD], capture_output=True, check=True).stdout
    c1, t1 = time.process_time_ns(), time.monotonic_ns()
    return {**_parse_times(out), "proc_cpu_pct": 100 * (c1 - c0) / (t1 - t0)}


def _api(sysfs: str, msr: str) -> dict:
    proc, release = spawn_gated([sys.executable, "-c", WORKLOAD], stdout=subprocess.PIPE)
    sampler = Sampler(HZ, sources=["powercap", "perf"], pid=proc.pid, sysfs_root=sysfs,
                      proc_root="/proc", msr_path=msr)
    sampler.start()
    c0, t0 = time.process_time_ns(), time.monotonic_ns()
    release()
    out, _ = proc.communicate()
    c1, t1 = time.process_time_ns(), time.monotonic_ns()
    result = sampler.stop()
    s = result.summary
    return {**_parse_times(out), "proc_cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "c_thread_cpu_pct": 100 * s["sampler_cpu_s"] / s["duration_s"],
            "rate": s["achieved_hz"] / HZ, "dropped": s["dropped_samples"],
            "late": s["late_samples"], "columns": result.table.column_names,
            "domains": list(result.domains)}


def _cli(env: dict, tmp_path, sources: str = "powercap,perf") -> dict:
    summary = tmp_path / "cli-summary.json"
    argv = [sys.executable, "-c", "from alems.cli import main; main()", "sample",
            "--hz", str(HZ), "--sources", sources, "-q", "--summary-json",
            str(summary), "--", sys.executable, "-c", WORKLOAD]
    out = subprocess.run(argv, env=env, capture_output=True, check=True).stdout
    s = json.loads(summary.read_text())
    return {**_parse_times(out),
            "c_thread_cpu_pct": 100 * s["sampler_cpu_s"] / s["duration_s"],
            "rate": s["achieved_hz"] / HZ, "dropped": s["dropped_samples"],
            "late": s["late_samples"]}


def _python(energy_paths: list[str]) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdout=subprocess.PIPE)
    ref = PySampler(HZ, energy_paths, pid=proc.pid)
    ref.start()
    c0, t0 = time.process_time_ns(), time.monotonic_ns()
    out, _ = proc.communicate()
    c1, t1 = time.process_time_ns(), time.monotonic_ns()
    run = ref.stop()
    return {**_parse_times(out), "proc_cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "thread_cpu_pct": 100 * run.thread_cpu_ns / (run.duration_s * 1e9),
            "rate": run.achieved_hz / HZ, "late": run.late_samples,
            "samples": run.samples, "columns": len(run.columns) - 1}


def _timer_floor(seconds: float = 1.5) -> float:
    """CPU % of the C loop with no inputs at all: the kernel's wake-up cost at 1000 Hz."""
    s = NativeSampler([], period_ns=int(1e9 / HZ), slow_every=1, ring_capacity=1 << 13)
    try:
        s.start()
        time.sleep(seconds)
        s.stop()
        s.drain(np.zeros(1 << 13, dtype=_native.RECORD_DTYPE))
        st = s.stats()
    finally:
        s.close()
    return 100 * st["thread_cpu_ns"] / (seconds * 1e9)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def test_overhead_at_1000hz_vs_plain_python(benchmark, tmp_path):
    sysfs = tmp_path / "sys"
    energy_paths = [str(p) for p in make_static_powercap(sysfs)]
    msr = str(tmp_path / "no-msr-{cpu}")
    env = dict(os.environ, ALEMS_SYSFS_ROOT=str(sysfs), ALEMS_MSR_PATH=msr,
               ALEMS_PROC_ROOT="/proc",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    runs: dict[str, list[dict]] = {"bare": [], "cli": [], "cli_energy": [], "api": [],
                                   "python": []}

    def alternate() -> None:
        for i in range(ROUNDS):
            order = ["bare", "cli", "cli_energy", "api", "python"]
            if i % 2:
                order.reverse()  # alternate the order so drift does not favour one side
            for kind in order:
                if kind == "bare":
                    runs["bare"].append(_bare())
                elif kind == "cli":
                    runs["cli"].append(_cli(env, tmp_path))
                elif kind == "cli_energy":
                    runs["cli_energy"].append(_cli(env, tmp_path, "powercap"))
                elif kind == "api":
                    runs["api"].append(_api(str(sysfs), msr))
                else:
                    runs["python"].append(_python(energy_paths))

    benchmark.pedantic(alternate, rounds=1, iterations=1)
    floor = _timer_floor()

    med = {k: statistics.median(r["work_s"] for r in v) for k, v in runs.items()}
    # Ratios per alternation (runs close in time), then the median over alternations:
    # this cancels slow drift in what else the shared machine is doing.
    def per_round(kind: str, key: str) -> list[float]:
        return [r[key] / b[key] for r, b in zip(runs[kind], runs["bare"], strict=True)]

    ratio = {k: statistics.median(per_round(k, "work_s")) for k in KINDS}
    ratio_best = {k: min(r["work_s"] for r in runs[k]) / min(r["work_s"] for r in runs["bare"])
                  for k in KINDS}
    cpu_ratio = {k: statistics.median(per_round(k, "work_cpu_s"))
                 for k in KINDS}
    c_cpu = statistics.median(r["c_thread_cpu_pct"] for r in runs["cli"] + runs["api"])
    api_proc = statistics.median(r["proc_cpu_pct"] for r in runs["api"])
    bare_proc = statistics.median(r["proc_cpu_pct"] for r in runs["bare"])
    py_thread = statistics.median(r["thread_cpu_pct"] for r in runs["python"])
    py_proc = statistics.median(r["proc_cpu_pct"] for r in runs["python"])
    c_rate = min(r["rate"] for r in runs["cli"] + runs["cli_energy"] + runs["api"])
    py_rate = min(r["rate"] for r in runs["python"])
    dropped = sum(r["dropped"] for r in runs["cli"] + runs["cli_energy"] + runs["api"])
    energy_only_cpu = statistics.median(r["c_thread_cpu_pct"] for r in runs["cli_energy"])
    api0 = runs["api"][0]

    benchmark.extra_info.update({
        "alternations": ROUNDS, "workload_median_s": med, "wall_ratio": ratio,
        "wall_ratio_best_of": ratio_best, "workload_cpu_ratio": cpu_ratio,
        "c_thread_cpu_pct": c_cpu, "api_process_cpu_pct": api_proc,
        "c_thread_cpu_pct_energy_only": energy_only_cpu,
        "idle_control_process_cpu_pct": bare_proc, "timer_only_floor_cpu_pct": floor,
        "python_thread_cpu_pct": py_thread, "python_process_cpu_pct": py_proc,
        "c_min_rate": c_rate, "python_min_rate": py_rate, "c_dropped": dropped,
    })
    record("setup", f"{HZ} Hz, domains {api0['domains']}, columns {api0['columns'][1:]}; "
                    f"{ROUNDS} alternations; workload median {med['bare']:.3f} s bare")
    for kind, label in (("cli", "under `alems sample`"),
                        ("cli_energy", "under `alems sample --sources powercap`"),
                        ("api", "under Sampler API"),
                        ("python", "under plain-Python sampler")):
        verdict = (f"  [target ≤ {TARGET_WALL_RATIO}: "
                   f"{_verdict(ratio['cli'] <= TARGET_WALL_RATIO)}]" if kind == "cli" else "")
        record(f"wall ratio {label}",
               f"{ratio[kind]:.4f} median of pairs, {ratio_best[kind]:.4f} best-of; "
               f"workload CPU-time ratio {cpu_ratio[kind]:.4f}{verdict}")
    record("C sampler thread CPU", f"{c_cpu:.2f} % of one core  [target ≤ {TARGET_CPU_PCT}: "
           f"{_verdict(c_cpu <= TARGET_CPU_PCT)}]")
    record("C sampler thread CPU, 4 energy files only", f"{energy_only_cpu:.2f} % of one core")
    record("C loop with no inputs (wake-up floor)", f"{floor:.2f} % of one core")
    record("whole sampler CPU, API (C + drain thread)",
           f"{api_proc:.2f} % of one core (idle control {bare_proc:.2f} %)")
    record("plain-Python sampler thread CPU", f"{py_thread:.2f} % of one core "
           f"(process {py_proc:.2f} %)")
    record("Python ÷ C sampler CPU", f"{py_thread / c_cpu:.1f}× (thread), "
           f"{py_proc / max(api_proc - bare_proc, 1e-9):.1f}× (process)")
    record("achieved rate, worst run", f"C {100 * c_rate:.2f} %, Python {100 * py_rate:.2f} % "
           f"[target ≥ {100 * TARGET_RATE:.0f} %: {_verdict(c_rate >= TARGET_RATE)}]")
    record("dropped records (C, all runs)", str(dropped))

    # Always: no drops, the C core cheaper than plain Python, sane slowdown and rate.
    assert dropped == 0
    assert c_cpu < py_thread
    assert ratio["cli"] < 1.25 and ratio["api"] < 1.25
    assert c_rate > 0.95
    assert set(api0["domains"]) == {"pkg", "core", "uncore", "dram"}
    assert {"task_clock_ns", "context_switches", "cpu_migrations",
            "page_faults"} <= set(api0["columns"])
    if STRICT:
        assert c_cpu <= TARGET_CPU_PCT
        assert ratio["cli"] <= TARGET_WALL_RATIO
        assert c_rate >= TARGET_RATE
