"""GPU energy through NVML, tested through a fake NVML library (tests/fake_nvml.c) whose
counters a writer process advances (tests/gpu_fake.py): the real ctypes loading, device
selection, sampling thread, integration and merge onto the sample clock all run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from alems.errors import AlemsError, UsageError
from alems.measure import gpu_sampler
from alems.measure.sampler import Sampler
from alems.measure.sources import gpu as gpu_source

from gpu_fake import CC, FakeGpu, FakeNvml
from inproc import alems_inproc
from waiting import wait_past, wait_until

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler to build the fake NVML")
ALEMS = [sys.executable, "-m", "alems"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("ALEMS_NVML_LIB", "FAKE_NVML_FILE", "FAKE_NVML_INIT_RC", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    gpu_source._live_cache.clear()


def within(measured, truth, rel=0.01, abs_j=0.0):
    assert measured is not None and truth > 0
    assert abs(measured - truth) <= rel * truth + abs_j, (measured, truth, abs_j)


def run_sampler(until=None, **kw):
    """A 1 kHz Sampler run that lasts until `until()` is true (by default: 50 ms, enough
    for a few records; the tests that use it assert nothing about time)."""
    s = Sampler(1000, **kw)
    s.start()
    t_end = time.monotonic_ns() + 50_000_000
    try:
        wait_until(until or (lambda: time.monotonic_ns() > t_end), "the sampler's run")
    finally:
        result = s.stop()
    return result


def captured_traces(monkeypatch) -> list:
    """The GpuTrace of each GpuSampler.stop() from now on (what the GPU thread read and how
    it stamped each read), for comparison with the fake library's own log."""
    traces = []
    real_stop = gpu_sampler.GpuSampler.stop

    def stop(self):
        traces.append(real_stop(self))
        return traces[-1]
    monkeypatch.setattr(gpu_sampler.GpuSampler, "stop", stop)
    return traces


# ---------------------------------------------------------------- accuracy and timeline

AHEAD_NS = 300_000_000   # a schedule change is written this far ahead of its instant


def test_energy_counter_and_integrated_power_within_1_percent_on_one_timeline(tmp_path, monkeypatch):
    gpus = [FakeGpu(schedule=[(0.0, 100.0)]),
            FakeGpu(name="NVIDIA Fake T4", uuid="GPU-t4", energy_rc=3,   # no energy counter
                    schedule=[(0.0, 40.0)])]
    step_w = {0: (100.0, 300.0), 1: (40.0, 120.0)}
    traces = captured_traces(monkeypatch)
    with FakeNvml(tmp_path, gpus, monkeypatch, log=True) as fake:
        s = Sampler(1000)
        s.start()
        t_step = time.monotonic_ns() + AHEAD_NS          # the power steps up mid-run
        for i, (_, after) in step_w.items():
            fake.set_power(i, after, t_step)
        wait_past(t_step + 500_000_000)
        r = s.stop()
    t = r.table.column("t_ns").to_numpy()
    assert {"gpu0_energy_uj", "gpu1_energy_uj", "pkg_energy_uj"} <= set(r.table.column_names)
    assert "gpu" in r.summary["sources"]
    methods = {g["index"]: g["method"] for g in r.summary["gpus"]}
    assert methods == {0: gpu_source.ENERGY, 1: gpu_source.POWER}
    units = json.loads(r.metadata["units"])
    assert "power integrated" in units["gpu1_energy_uj"]
    assert "energy counter" in units["gpu0_energy_uj"]
    assert any("power-integrated" in n for n in r.summary["source_notes"])
    assert np.all(np.diff(t) > 0)
    (trace,) = traces
    stamps = trace.t_ns
    assert r.t_start_ns + 2e8 < t_step < r.t_end_ns - 2e8
    for i, method in methods.items():
        col = f"gpu{i}_energy_uj"
        # 1. the GPU curve is put on t_ns exactly as read (one timeline)
        expected = np.interp(t, stamps, trace.energy_uj[i])
        np.testing.assert_allclose(r.table.column(col).to_numpy(), expected - expected[0],
                                   rtol=1e-9, atol=1e-3)
        # 2. each read is stamped with the instant the library computed its value for:
        # the sampler's reads are the last ones in the library's log
        logged = fake.reads(i)
        logged = logged[logged[:, 3] == 0][-len(stamps):]
        off_ns = stamps - logged[:, 1]
        assert np.median(np.abs(off_ns)) < 1_000_000, off_ns   # a wrong clock is far off
        # 3. energies against the schedule's exact integral: 1 %, plus at each end of a
        # window what that end's two reads were late or early by (a loaded machine may
        # preempt the thread inside a read), plus the corner that the reads around the
        # step cut: linear interpolation of the counter between two reads misses up to
        # ΔW × gap / 4 at the step; trapezoids of power read at both sides of it, ΔW × gap / 2
        k_step = int(np.clip(np.searchsorted(logged[:, 1], t_step), 1, len(logged) - 1))
        gap_s = (logged[k_step, 1] - logged[k_step - 1, 1]) / 1e9
        d_w = step_w[i][1] - step_w[i][0]

        def late_j(x):
            k = int(np.clip(np.searchsorted(stamps, x), 1, len(stamps) - 1))
            return max(step_w[i]) * np.abs(off_ns[k - 1:k + 1]).max() / 1e9

        for a, b in ((r.t_start_ns, r.t_end_ns), (r.t_start_ns, t_step), (t_step, r.t_end_ns)):
            measured = (r.summary["gpu_energy_j"][col] if (a, b) == (r.t_start_ns, r.t_end_ns)
                        else r.counter_delta(col, a, b) / 1e6)
            if method == gpu_source.POWER:
                corner_j = d_w * gap_s / 2
            else:
                corner_j = d_w * gap_s / 4 * ((a == t_step) + (b == t_step))
            within(measured, fake.truth_j(i, a, b), abs_j=late_j(a) + late_j(b) + corner_j)


def test_gpu_thread_keeps_the_1khz_sampler_on_time(tmp_path, monkeypatch):
    # Every NVML read takes >= 2 ms (a slow driver): the C loop must not wait for any of
    # them, whatever the load; the GPU thread still reads at its own rate.
    with FakeNvml(tmp_path, [FakeGpu(), FakeGpu(uuid="GPU-2")], monkeypatch, log=True,
                  delay_us=2000) as fake:
        before = len(fake.reads())
        r = run_sampler(until=lambda: len(fake.reads()) >= before + 2 * 60)
    assert r.summary["gpu_reads"] >= 50
    assert len(r.summary["gpus"]) == 2
    assert r.summary["read_ns_per_sample"] < 1_000_000    # NVML is not read in the 1 kHz loop


# ---------------------------------------------------------------- failures

def test_missing_library_changes_nothing_and_explicit_gpus_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEMS_NVML_LIB", str(tmp_path / "no-such-libnvidia-ml.so.1"))
    r = run_sampler()
    assert not any(c.startswith("gpu") for c in r.table.column_names)
    assert "gpu" not in r.summary["sources"] and "gpus" not in r.summary
    with pytest.raises(AlemsError, match="cannot be loaded.*ALEMS_NVML_LIB"):
        Sampler(1000, gpus=[0]).start()
    rep = gpu_source.report()
    assert not rep.ok and "cannot be loaded" in rep.reason and "NVIDIA driver" in rep.fix


@pytest.mark.parametrize("rc,fix", [(9, "nvidia-smi"), (4, "video")])
def test_nvml_init_error(tmp_path, monkeypatch, rc, fix):
    with FakeNvml(tmp_path, [FakeGpu()], monkeypatch, init_rc=rc):
        r = run_sampler()
        assert "gpus" not in r.summary
        assert any(n.startswith("gpu: NVML: nvmlInit_v2") for n in r.summary["source_notes"])
        with pytest.raises(AlemsError, match=fix):
            Sampler(1000, gpus=[0]).start()
        rep = gpu_source.report()
        assert not rep.ok and fix in rep.fix


def test_device_disappearing_mid_run_gives_null_with_reason(tmp_path, monkeypatch):
    # GPU 1 drops out of NVML during the run; the run goes on until the GPU thread has
    # seen it lost and read GPU 0 again after that
    gpus = [FakeGpu(), FakeGpu(name="Flaky", uuid="GPU-flaky")]
    with FakeNvml(tmp_path, gpus, monkeypatch, log=True) as fake:
        def lost_then_read_on():
            rows = fake.reads()
            lost = np.nonzero((rows[:, 0] == 1) & (rows[:, 3] == 15))[0]
            return len(lost) and ((rows[lost[0]:, 0] == 0) & (rows[lost[0]:, 3] == 0)).any()

        s = Sampler(1000)
        s.start()
        t_lost = time.monotonic_ns() + AHEAD_NS
        fake.lose(1, t_lost)
        wait_until(lost_then_read_on, "the GPU thread to see GPU 1 lost")
        r = s.stop()
        assert r.t_start_ns < t_lost < r.t_end_ns
    from alems.experiment.metrics import run_metrics

    info = {g["index"]: g for g in r.summary["gpus"]}
    assert "GPU is lost" in info[1]["error"] and "error" not in info[0]
    assert r.summary["gpu_energy_j"]["gpu1_energy_uj"] is None
    within(r.summary["gpu_energy_j"]["gpu0_energy_uj"], fake.truth_j(0, r.t_start_ns, r.t_end_ns))
    col = r.table.column("gpu1_energy_uj").to_numpy()
    assert not math.isnan(col[0]) and math.isnan(col[-1])
    m = run_metrics(r)
    assert m.columns["gpu_energy_uj"] is None
    assert "GPU is lost" in m.null_reasons["gpu_energy_uj"]


def test_counter_that_never_advances_is_rejected(tmp_path, monkeypatch):
    gpus = [FakeGpu(name="Frozen", uuid="GPU-frozen", frozen=True), FakeGpu(uuid="GPU-ok")]
    with FakeNvml(tmp_path, gpus, monkeypatch):
        r = run_sampler()
        assert [g["index"] for g in r.summary["gpus"]] == [1]
        assert any("gpu0 (Frozen): not used" in n and "did not advance" in n
                   for n in r.summary["source_notes"])
        with pytest.raises(AlemsError, match="did not advance"):
            Sampler(1000, gpus=[0]).start()
        rep = gpu_source.report()
        assert [g["ok"] for g in rep.gpus] == [False, True]


def test_counter_frozen_during_the_run_is_not_a_measurement():
    from alems.measure import gpu_sampler

    dev = gpu_source.GpuDevice(0, "G", None, gpu_source.ENERGY)
    t = np.arange(0, 2_000_000_001, 10_000_000, dtype=np.int64)
    trace = gpu_sampler.GpuTrace([dev], t, {0: np.zeros(len(t))}, {}, 100.0)
    cols, extra = {"t_ns": t.copy()}, {}
    gpu_sampler.merge(trace, cols, {}, extra, {}, [])
    assert extra["gpu_energy_j"]["gpu0_energy_uj"] is None
    assert "did not change" in extra["gpus"][0]["error"]


# ---------------------------------------------------------------- selection

def test_cuda_visible_devices_parsing():
    uuids = {0: "GPU-aaaa-1", 1: "GPU-bbbb-2", 2: "GPU-bbbc-3"}
    sel = gpu_source.cuda_selection
    assert sel(None, uuids) == (None, [])
    assert sel("", uuids) == ([], [])
    assert sel("-1", uuids) == ([], [])
    assert sel("2,0", uuids) == ([2, 0], [])
    assert sel("GPU-aaaa", uuids) == ([0], [])
    assert sel("bbbb", uuids) == ([1], [])
    idx, notes = sel("1,7,0", uuids)            # CUDA stops at the first invalid entry
    assert idx == [1] and "7" in notes[0]
    idx, notes = sel("GPU-bbb", uuids)          # ambiguous prefix
    assert idx == [] and "more than one" in notes[0]
    idx, notes = sel("MIG-1234", uuids)
    assert idx == [] and "MIG" in notes[0]


def test_parse_gpus():
    assert gpu_source.parse_gpus(None) is None and gpu_source.parse_gpus("auto") is None
    assert gpu_source.parse_gpus("none") == []
    assert gpu_source.parse_gpus("0, 2,0") == [0, 2]
    with pytest.raises(UsageError, match="not a GPU index"):
        gpu_source.parse_gpus("0,x")


def test_cuda_visible_devices_and_gpus_choose_devices(tmp_path, monkeypatch):
    gpus = [FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb"), FakeGpu(uuid="GPU-cccc")]
    with FakeNvml(tmp_path, gpus, monkeypatch):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-cccc,1")
        assert [g["index"] for g in run_sampler().summary["gpus"]] == [2, 1]
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        assert "gpus" not in run_sampler().summary
        r = run_sampler(gpus=[0, 2])                 # --gpus wins over the variable
        assert [g["index"] for g in r.summary["gpus"]] == [0, 2]
        assert "gpus" not in run_sampler(gpus=[]).summary
        with pytest.raises(AlemsError, match="no GPU 5"):
            Sampler(1000, gpus=[5]).start()


# ---------------------------------------------------------------- CLI

def test_alems_sample_stores_gpu_beside_cpu_energy(tmp_path):
    with FakeNvml(tmp_path, [FakeGpu(schedule=[(0.0, 200.0)])]) as fake:
        env = {**os.environ, **fake.env()}
        out, js = tmp_path / "s.parquet", tmp_path / "s.json"
        p = subprocess.run([*ALEMS, "sample", "-q", "-o", str(out), "--summary-json", str(js),
                            "--", "sleep", "0.3"], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        table = pq.read_table(out)
        assert {"t_ns", "pkg_energy_uj", "gpu0_energy_uj"} <= set(table.column_names)
        t = table.column("t_ns").to_numpy()
        summary = json.loads(js.read_text())
        within(summary["gpu_energy_j"]["gpu0_energy_uj"], fake.truth_j(0, int(t[0]), int(t[-1])))
        assert summary["gpus"][0]["name"] == "NVIDIA Fake H100"
        doc = alems_inproc("doctor", "--json", env=env)
        gpu = json.loads(doc.stdout)["gpu"]
        assert gpu["ok"] and gpu["gpus"][0]["method"] == gpu_source.ENERGY
        assert "gpu" in json.loads(doc.stdout)["sample_would_use"]


def test_without_nvml_sample_works_and_doctor_says_why(tmp_path):
    env = {**os.environ, "ALEMS_NVML_LIB": str(tmp_path / "missing.so")}
    out = tmp_path / "s.parquet"
    p = subprocess.run([*ALEMS, "sample", "-q", "-o", str(out), "--", "true"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not any(c.startswith("gpu") for c in pq.read_table(out).column_names)
    p = alems_inproc("sample", "--gpus", "0", "--", "true", env=env)
    assert p.returncode != 0 and p.stderr.startswith("alems: error: --gpus:")
    assert "Traceback" not in p.stderr
    doc = alems_inproc("doctor", env=env)
    assert doc.returncode == 0
    assert "no GPU measured" in doc.stdout and "fix: install the NVIDIA driver" in doc.stdout
