"""Dashboard speed: a group of 1 000 runs opens in < 2 s; a one-hour 1 kHz trace (3.6 M
samples) becomes a peak-keeping power curve in < 1 s.

The group page's cost is measured as the server pays it: open the database read-only,
gather everything the page shows (build_summary with its bootstrap, the run list, the
figures) and render the HTML. The trace's cost is reading its Parquet file, power at
every sample for two domains and the min/max envelope."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchutil import record

pytest.importorskip("starlette")
pytest.importorskip("tsdownsample")
pytest.importorskip("httpx")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from analysis_fixture import build_fixture_db  # noqa: E402

GROUP_RUNS = 1000
GROUP_LIMIT_S = 2.0
TRACE_SAMPLES = 3_600_000
TRACE_LIMIT_S = 1.0


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    # 2 tasks × 250 repetitions × 2 arms = 1 000 runs, each with its samples file
    return build_fixture_db(tmp_path_factory.mktemp("bench") / "experiments.db",
                            tasks=("gsm8k_basic", "factual_qa"), reps=GROUP_RUNS // 4)


def test_group_of_1000_runs_opens_in_under_2_s(benchmark, big_db):
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    import alems.analysis.summary  # noqa: F401  (the server imports it at start-up)

    with TestClient(create_app(big_db)) as client:
        def open_group():
            r = client.get("/group/g-20260110-100000")
            assert r.status_code == 200 and f"Runs ({GROUP_RUNS})" in r.text
            return r

        benchmark.pedantic(open_group, rounds=3, iterations=1, warmup_rounds=1)
    best = benchmark.stats.stats.min
    record("dashboard: group page, 1 000 runs (best of 3)", f"{best:.3f} s "
           f"(limit {GROUP_LIMIT_S} s)")
    assert best < GROUP_LIMIT_S


@pytest.fixture(scope="module")
def hour_trace(tmp_path_factory) -> tuple[Path, int]:
    rng = np.random.default_rng(1)
    t_ns = (np.arange(TRACE_SAMPLES, dtype=np.int64) * 1_000_000) + 5_000_000_000
    watts = 8.0 + rng.normal(0, 0.3, TRACE_SAMPLES)
    spike = TRACE_SAMPLES // 3
    watts[spike:spike + 25] = 90.0    # one 25 ms burst in an hour: it must survive
    pkg = np.cumsum(watts * 1e3)      # µJ per 1 ms sample
    core = np.cumsum((watts - 3.0) * 1e3)
    path = tmp_path_factory.mktemp("trace") / "run_id=1.parquet"
    pq.write_table(pa.table({"t_ns": t_ns, "pkg_energy_uj": pkg, "core_energy_uj": core}), path)
    return path, spike


def test_one_hour_1khz_trace_downsamples_in_under_1_s_keeping_peaks(benchmark, hour_trace):
    from alems.dashboard.curves import curves_from_table, read_samples_table

    path, spike = hour_trace

    def curve():
        return curves_from_table(read_samples_table(path))

    curves = benchmark.pedantic(curve, rounds=3, iterations=1, warmup_rounds=1)
    best = benchmark.stats.stats.min
    pkg = curves["pkg"]
    record("dashboard: 3.6 M samples -> power envelope, 2 domains (best of 3)",
           f"{best:.3f} s (limit {TRACE_LIMIT_S} s), {len(pkg['t_s'])} points per curve")
    assert pkg["n_samples"] == TRACE_SAMPLES and len(pkg["t_s"]) <= 4002
    assert pkg["w"].max() > 80.0      # the burst is drawn at (nearly) its full height
    assert best < TRACE_LIMIT_S
    t = time.perf_counter()
    from alems.dashboard.figures import power_figure, to_json

    to_json(power_figure(curves))
    record("dashboard: power figure JSON of those curves", f"{time.perf_counter() - t:.3f} s")
