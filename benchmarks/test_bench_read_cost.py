"""Per-sample read cost of the C loop, per source kind.

The C thread times every tick's reads (`read_ns_total`) and its own CPU time
(`thread_cpu_ns`); running it at a high rate on four inputs of one kind gives ns per
input read and the whole per-tick CPU cost (wake-up included).

Perf counters are measured twice: attached to a sleeping process (this one), and attached
to a busy process running on the other CPU, which is the real case under `alems sample`:
the kernel must then interrupt that CPU to read an up-to-date count."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchutil import make_fake_msr, make_static_powercap, record

from alems.measure import _native
from alems.measure._native import ChannelSpec, NativeSampler

RATE_HZ = 5000
RUN_S = 0.4
PERF_TYPE_SOFTWARE = 1
SOFTWARE = {"task_clock": 1, "page_faults": 2, "context_switches": 3, "cpu_migrations": 4}


def _inputs(kind: str, tmp_path, busy_pid: int | None = None) -> list[ChannelSpec]:
    if kind == "powercap_file":
        return [ChannelSpec("text", str(p)) for p in make_static_powercap(tmp_path / "sys")]
    if kind == "msr":
        dev = str(make_fake_msr(tmp_path / "msr"))
        return [ChannelSpec("msr", dev, offset=reg, mask=0xFFFFFFFF)
                for reg in (0x611, 0x639, 0x619, 0x606)]
    if kind in ("perf_software", "perf_software_busy_target"):
        target = busy_pid if kind == "perf_software_busy_target" else os.getpid()
        return [ChannelSpec("perf", f"sw:{name}", perf_type=PERF_TYPE_SOFTWARE, perf_config=cfg,
                            pid=target, cpu=-1, perf_flags=_native.PERF_INHERIT)
                for name, cfg in SOFTWARE.items()]
    if kind == "proc_stat_keyed":
        return [ChannelSpec("keyed", "/proc/stat", key=key)
                for key in ("intr", "ctxt", "procs_running", "processes")]
    raise ValueError(kind)


def _run(inputs: list[ChannelSpec]) -> dict:
    sampler = NativeSampler([(spec, slot) for slot, spec in enumerate(inputs)],
                            period_ns=int(1e9 / RATE_HZ), slow_every=1,
                            ring_capacity=1 << 14)
    try:
        sampler.start()
        time.sleep(RUN_S)
        sampler.stop()
        out = np.zeros(1 << 14, dtype=_native.RECORD_DTYPE)
        n = sampler.drain(out)
        stats = sampler.stats()
    finally:
        sampler.close()
    assert stats["error_errno"] == 0, stats
    # The rate is not the point here (a busy target competes for the 2 cores), only
    # that the loop really ran and every record was kept.
    assert n == stats["samples"] > 0.5 * RATE_HZ * RUN_S
    assert stats["dropped"] == 0
    return stats


@pytest.fixture
def busy_pid(request):
    """A CPU-bound child for the perf-on-a-running-task case (killed afterwards)."""
    if "busy" not in request.node.name:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.1)
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("kind", ["powercap_file", "msr", "perf_software",
                                  "perf_software_busy_target", "proc_stat_keyed"])
def test_read_cost_per_source(benchmark, kind, tmp_path, busy_pid):
    inputs = _inputs(kind, tmp_path, busy_pid)
    runs = []
    benchmark.pedantic(lambda: runs.append(_run(inputs)), rounds=3, iterations=1)
    samples = sum(r["samples"] for r in runs)
    read_ns_per_sample = sum(r["read_ns_total"] for r in runs) / samples
    cpu_ns_per_sample = sum(r["thread_cpu_ns"] for r in runs) / samples
    per_input = read_ns_per_sample / len(inputs)
    benchmark.extra_info.update({
        "inputs": len(inputs), "rate_hz": RATE_HZ, "samples": samples,
        "read_ns_per_sample": round(read_ns_per_sample),
        "read_ns_per_input": round(per_input),
        "thread_cpu_ns_per_sample": round(cpu_ns_per_sample),
    })
    record(f"read cost {kind}",
           f"{per_input:,.0f} ns per input read; {read_ns_per_sample:,.0f} ns reads per sample "
           f"({len(inputs)} inputs); {cpu_ns_per_sample:,.0f} ns thread CPU per sample "
           f"(wake-up included) at {RATE_HZ} Hz")
    assert 0 < per_input < 1_000_000  # a read slower than 1 ms would be a bug
