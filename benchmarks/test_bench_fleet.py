"""Fleet throughput: a batch on one Ray node, then on more (ALEMS_BENCH_FLEET_NODES, default
1,2; issue 23 asks for 1,2,8), sleep-bound scripted model, PAIRS_PER_NODE pairs a node.

The nodes are local processes on loopback (ray.cluster_utils.Cluster); the model sleeps
DELAY_S per call, so a node's work is waiting, as a real node's would be its own CPU, and
k nodes should store k times the runs per second of one. Also the driver's
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
PAIRS_PER_NODE = int(os.environ.get("ALEMS_BENCH_FLEET_PAIRS_PER_NODE", "4"))
NODES = [int(x) for x in os.environ.get("ALEMS_BENCH_FLEET_NODES", "1,2").split(",")]
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


def _batch(tmp_path: Path, address: str, group: str, pairs: int) -> dict:
    from alems.experiment import execute
    from alems.experiment.batch import BatchProgress, BatchRunner
    from alems.experiment.fleet import driver
    from alems.experiment.plan import BatchConfig

    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], repetitions=pairs,
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
    assert summary.ran == 2 * pairs and summary.errors == 0
    import sqlite3

    conn = sqlite3.connect(cfg.db_path)
    split = sorted(n for (n,) in conn.execute("SELECT COUNT(*) FROM runs GROUP BY node_id"))
    # a pair is never split: both arms of each (experiment, repetition) on one node
    split_pairs = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM runs GROUP BY exp_id, run_number "
        "HAVING COUNT(DISTINCT node_id) > 1)").fetchone()[0]
    stored_twice = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM runs GROUP BY exp_id, workflow_type, run_number "
        "HAVING COUNT(*) > 1)").fetchone()[0]
    conn.close()
    assert split_pairs == 0 and stored_twice == 0
    return {"split": split, "wall_s": wall, "runs_per_s": summary.ran / wall,
            "cpu_ms_per_run": cpu / summary.ran * 1e3, "runs": summary.ran,
            "store_ms_per_run": sum(store_s) / summary.ran * 1e3}


def test_more_nodes_more_throughput(tmp_path):
    from ray.cluster_utils import Cluster

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([old] if old else []))
    node = dict(num_cpus=1, resources={"alems_slot": 1}, object_store_memory=100 * 1024**2,
                node_ip_address="127.0.0.1")
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
    results, have = {}, 1
    try:
        for n in NODES:
            while have < n:
                cluster.add_node(**node)
                have += 1
            cluster.wait_for_nodes()
            results[n] = _batch(tmp_path / f"n{n}", cluster.address, f"nodes-{n}",
                                PAIRS_PER_NODE * n)
    finally:
        cluster.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    base = results[NODES[0]]["runs_per_s"] / NODES[0]
    for n, r in results.items():
        benchutil.record(f"fleet {n} node(s): {r['runs']} runs",
                         f"{r['wall_s']:.2f} s, {r['runs_per_s']:.2f} runs/s "
                         f"(× {r['runs_per_s'] / base:.2f} one node's); driver CPU "
                         f"{r['cpu_ms_per_run']:.1f} ms/run, storing "
                         f"{r['store_ms_per_run']:.1f} ms/run; runs per node {r['split']}")
    if 2 in results:
        speedup = results[2]["runs_per_s"] / base
        benchutil.record("fleet speed-up, 2 nodes / 1 node", f"{speedup:.2f} (target >= 1.8)")
        assert speedup >= 1.8
