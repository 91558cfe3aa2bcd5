"""Cost of one NVML read through A-LEMS's ctypes binding, and that the GPU thread leaves the
1 kHz C sampler on time. On the FAKE NVML library of the tests (tests/fake_nvml.c: each
call opens and parses a small text file): this measures the binding and the thread, not a
driver. Real-GPU figures need a machine with an NVIDIA GPU (see README)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchutil import record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gpu_fake import CC, FakeGpu, FakeNvml  # noqa: E402

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler to build the fake NVML")
READS = 2000


def test_nvml_read_cost_and_rapl_rate(tmp_path, monkeypatch):
    from alems.measure.sampler import Sampler
    from alems.measure.sources import gpu as gpu_source

    with FakeNvml(tmp_path, [FakeGpu()], monkeypatch):
        nvml = gpu_source.open_nvml()
        h = nvml.handle(0)
        for name, fn in (("energy", nvml.energy_mj), ("power", nvml.power_mw)):
            cost = []
            for _ in range(READS):
                t0 = time.perf_counter_ns()
                fn(h)
                cost.append(time.perf_counter_ns() - t0)
            record(f"fake NVML {name} read, median (µs)", f"{np.median(cost) / 1e3:.1f}")
            record(f"fake NVML {name} read, p99 (µs)", f"{np.percentile(cost, 99) / 1e3:.1f}")
        nvml.close()
        rates = {}
        for gpus in ([], None):
            s = Sampler(1000, gpus=gpus)
            s.start()
            time.sleep(1.0)
            r = s.stop()
            rates["with GPU thread" if gpus is None else "without"] = r.summary["achieved_hz"]
            if gpus is None:
                record("GPU reads in 1 s (100 Hz asked)", str(r.summary["gpu_reads"]))
        for k, v in rates.items():
            record(f"C sampler achieved Hz {k}", f"{v:.1f}")
        assert rates["with GPU thread"] > 0.95 * rates["without"]
