"""Fleet throughput: one batch on one Ray node, then on two, sleep-bound scripted model.

Both nodes are local processes on loopback (ray.cluster_utils.Cluster); the model sleeps
DELAY_S per call, so a node's work is waiting, as a real node's would be its own CPU, and
two nodes should finish a batch of the same size in about half the time. Also the driver's
cost per run: its process CPU time (Ray's threads in it included) and the wall time of
storing (Parquet + SQLite) per run. Throughput counts from the first pair handed out to the
last run stored (joining the cluster and leaving it are fixed costs, not throughput).
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # everything on loopback
pytest.importorskip("ray")

import benchutil  # noqa: E402

DELAY_S = float(os.environ.get("ALEMS_BENCH_FLEET_DELAY_S", "0.5"))
PAIRS = int(os.environ.get("ALEMS_BENCH_FLEET_PAIRS", "8"))
HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def _idle_table():
    from alems.measure.replay import synthetic_table

    return synthetic_table(duration_s=60.0, hz=200.0, power_w={"pkg": 5.0})


def make_sampler():
    from alems.measure.replay import ReplaySampler

    return ReplaySampler(_idle_table(), energy_source="powercap")


def make_provider(name):
    from alems.experiment.providers.scripted import ScriptedProvider

    return ScriptedProvider(delay_s=DELAY_S)


def _batch(tmp_path: Path, address: str, group: str) -> dict:
    from alems.experiment import execute
    from alems.experiment.batch import BatchProgress, BatchRunner
    from alems.experiment.fleet import driver
    from alems.experiment.plan import BatchConfig

    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], repetitions=PAIRS,
                      seed=1, hz=200.0, db_path=tmp_path / "e.db", save_db=True,
                      baseline_duration_s=0.02, baseline_reps=1, group_id=group,
                      ray_address=address)
    class Clock(BatchProgress):      # the runs themselves, not joining or leaving Ray
        def begin(self, total):
            self.t0 = time.perf_counter()

        def end(self, completed):
            self.t1 = time.perf_counter()

    clock = Clock()
    runner = BatchRunner(cfg, sampler_factory=make_sampler, provider_factory=make_provider,
                         log=lambda m: None, progress=clock)
    runner.validate()
    store_s = []
    real = execute.store_measured

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            store_s.append(time.perf_counter() - t0)

    driver.store_measured = timed
    try:
        # the nodes measure their baseline first: not part of the throughput
        c0 = time.process_time()
        summary = runner.run()
        wall, cpu = clock.t1 - clock.t0, time.process_time() - c0
    finally:
        driver.store_measured = real
    assert summary.ran == 2 * PAIRS and summary.errors == 0
    import sqlite3

    conn = sqlite3.connect(cfg.db_path)
    split = sorted(n for (n,) in conn.execute("SELECT COUNT(*) FROM runs GROUP BY node_id"))
    conn.close()
    return {"split": split, "wall_s": wall, "runs_per_s": summary.ran / wall, "cpu_ms_per_run": cpu / summary.ran * 1e3,
            "store_ms_per_run": sum(store_s) / summary.ran * 1e3}


def test_two_nodes_double_the_throughput(tmp_path):
    from ray.cluster_utils import Cluster

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([old] if old else []))
    node = dict(num_cpus=1, resources={"alems_slot": 1}, object_store_memory=100 * 1024**2,
                node_ip_address="127.0.0.1")
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
    try:
        one = _batch(tmp_path / "one", cluster.address, "one-node")
        cluster.add_node(**node)
        two = _batch(tmp_path / "two", cluster.address, "two-nodes")
    finally:
        cluster.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    speedup = two["runs_per_s"] / one["runs_per_s"]
    for name, r in (("1 node", one), ("2 nodes", two)):
        benchutil.record(f"fleet {name}: {2 * PAIRS} runs", f"{r['wall_s']:.2f} s, "
                         f"{r['runs_per_s']:.2f} runs/s; driver CPU {r['cpu_ms_per_run']:.1f} ms/run, "
                         f"storing {r['store_ms_per_run']:.1f} ms/run; runs per node {r['split']}")
    benchutil.record("fleet speed-up, 2 nodes / 1 node", f"{speedup:.2f} (target >= 1.8)")
    assert speedup >= 1.8
