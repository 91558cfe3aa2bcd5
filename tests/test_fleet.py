"""A batch on a two-node Ray cluster on loopback: pairs spread over both nodes, never split,
stored once by the driver alone, a killed worker's pair rerun elsewhere, resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from alems.errors import AlemsError
from alems.experiment.batch import BatchProgress, BatchRunner
from alems.experiment.plan import BatchConfig, plan_order
from alems.experiment.providers.scripted import ScriptedProvider

from _fake_sampling import BusyReplaySampler
from test_batch import StopAfter, all_runs, assert_store_consistent

# Every Ray process of these tests on loopback (ray reads this when first imported, which
# is in the cluster fixture: collecting this file, or running the test that needs no
# cluster, never imports ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TESTS = Path(__file__).resolve().parent
TASKS = ["gsm8k_basic", "factual_qa"]


def make_sampler():
    return BusyReplaySampler(pkg_w=2.0, core_w=None, busy_w=30.0, hz=200.0)


def make_provider(name):
    return ScriptedProvider(delay_s=0.03)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # The nodes' workers import this module's factories by name.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + ([old] if old else []))
    node = dict(num_cpus=1, resources={"alems_slot": 1}, object_store_memory=100 * 1024**2,
                node_ip_address="127.0.0.1")
    for attempt in (1, 2):   # Ray gives a raylet 30 s to start: too few on a loaded machine
        c = None
        try:
            c = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
            c.add_node(**node)
            break
        except Exception:
            if c is not None:
                c.shutdown()
            if attempt == 2:
                raise
    try:
        yield c
    finally:
        c.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def fleet_runner(tmp_path, cluster, progress=None, logs=None, **kw):
    args = dict(tasks=TASKS, providers=["scripted"], repetitions=4, seed=5, hz=200.0,
                db_path=tmp_path / "data" / "experiments.db", save_db=True,
                baseline_duration_s=0.02, baseline_reps=2, group_id="fleet",
                ray_address=cluster.address)
    args.update(kw)
    log = (logs.append if logs is not None else (lambda m: None))
    return BatchRunner(BatchConfig(**args), sampler_factory=make_sampler,
                       provider_factory=make_provider, log=log, progress=progress)


def assert_pairs_whole(rows):
    by_pair = {}
    for r in rows:
        by_pair.setdefault((r["task_name"], r["run_number"]), []).append(r)
    for arms in by_pair.values():
        assert sorted(a["workflow_type"] for a in arms) == ["agentic", "linear"]
        assert len({a["node_id"] for a in arms}) == 1, "a pair ran on two nodes"
        first, second = sorted(arms, key=lambda a: a["pair_order"])
        assert first["run_id"] < second["run_id"]      # stored in their planned order
    return by_pair


class KillOtherNode(BatchProgress):
    """Once both nodes stored a run, SIGKILL the worker of the node that did not store this
    one (it is busy mid-pair: the driver hands out the next pair only after storing)."""

    def __init__(self, runner):
        self.runner = runner
        self.killed = None
        self.seen = set()

    def finished(self, key, row):
        self.seen.add(row.get("node_id"))
        if self.killed is None and len(self.seen - {None}) == 2:
            other = [i for i in self.runner.fleet.ready.values()
                     if i["node_id"] != row["node_id"]]
            if other:
                self.killed = other[0]["node_id"]
                os.kill(other[0]["pid"], signal.SIGKILL)


@pytest.mark.cluster
def test_fleet_spreads_pairs_and_reruns_a_killed_workers_pair(tmp_path, cluster):
    logs: list[str] = []
    runner = fleet_runner(tmp_path, cluster, logs=logs)
    progress = KillOtherNode(runner)
    runner.progress = progress
    summary = runner.run()
    db_path = tmp_path / "data" / "experiments.db"
    rows = assert_store_consistent(db_path)
    keys = Counter((r["task_name"], r["workflow_type"], r["run_number"]) for r in rows)
    assert len(keys) == 2 * 4 * 2 and set(keys.values()) == {1}, "every run stored once"
    assert_pairs_whole(rows)
    nodes = Counter(r["node_id"] for r in rows)
    assert len(nodes) == 2 and progress.killed in nodes, "both nodes ran pairs"
    assert any("lost" in m for m in logs), logs
    assert all(r["host"] and r["cpu_model"] is not None or "cpu_model" in r["null_reasons"]
               for r in rows)
    assert summary.ok == 16 and summary.tax_pairs == 8 and summary.ran == 16
    conn = sqlite3.connect(db_path)
    # each run's baseline was measured on its own host, with the run's energy source
    for host, b_host, src, b_src in conn.execute(
            "SELECT r.host, b.host, r.energy_source, b.energy_source FROM runs r "
            "JOIN baselines b ON r.baseline_id = b.baseline_id"):
        assert host == b_host and src == b_src
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE baseline_id IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM batch_sessions").fetchone()[0] == "completed"
    plan = plan_order(TASKS, ["scripted"], ["linear", "agentic"], 4, seed=5)
    planned = {(k.task, k.workflow, k.rep): (k.order_index, k.pair_order) for k in plan}
    assert all(planned[(r["task_name"], r["workflow_type"], r["run_number"])]
               == (r["order_index"], r["pair_order"]) for r in rows)


@pytest.mark.cluster
def test_rerunning_the_same_fleet_batch_resumes_without_duplicates(tmp_path, cluster):
    with pytest.raises(KeyboardInterrupt):
        fleet_runner(tmp_path, cluster, progress=StopAfter(4), tasks=["gsm8k_basic"]).run()
    db_path = tmp_path / "data" / "experiments.db"
    first = {r["run_id"] for r in all_runs(db_path)}
    assert 4 <= len(first) < 8 and len(first) % 2 == 0, "only whole pairs are stored"
    summary = fleet_runner(tmp_path, cluster, tasks=["gsm8k_basic"]).run()
    rows = assert_store_consistent(db_path)
    assert summary.done_before == len(first) and summary.ran == 8 - len(first)
    assert Counter((r["workflow_type"], r["run_number"]) for r in rows) == Counter(
        {(w, n): 1 for w in ("linear", "agentic") for n in range(1, 5)})
    assert first <= {r["run_id"] for r in rows}
    assert_pairs_whole(all_runs(db_path))


def test_without_ray_address_ray_is_never_imported(tmp_path):
    code = ("import sys; sys.path.insert(0, %r); from test_batch import make_runner; "
            "from pathlib import Path; make_runner(Path(%r), tasks=['gsm8k_basic'], "
            "repetitions=1).run(); import alems.cli; "
            "assert 'ray' not in sys.modules, 'ray imported'; print('ok')") % (str(TESTS), str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    rows = all_runs(tmp_path / "data" / "experiments.db")
    assert all(r["node_id"] is None and "node_id" in r["null_reasons"] and r["host"]
               for r in rows)


@pytest.mark.cluster
def test_fleet_units_of_three_arms_run_each_arm_set_on_one_node(tmp_path, cluster):
    """Issue 18 item 5: with three arms a unit is one (task, provider, repetition) with its
    three arms, never a mix of two sets (the arms of one repetition on two machines)."""
    arms = ["linear", "agentic", "react"]
    summary = fleet_runner(tmp_path, cluster, workflows=arms, repetitions=2).run()
    rows = assert_store_consistent(tmp_path / "data" / "experiments.db")
    assert summary.ok == len(rows) == 2 * 2 * 3
    plan = plan_order(TASKS, ["scripted"], arms, 2, seed=5)
    planned = {(k.task, k.workflow, k.rep): k.pair_index for k in plan}
    by_set = {}
    for r in rows:
        assert r["pair_index"] == planned[(r["task_name"], r["workflow_type"], r["run_number"])]
        by_set.setdefault(r["pair_index"], []).append(r)
    for members in by_set.values():
        assert sorted(m["workflow_type"] for m in members) == sorted(arms)
        assert len({(m["task_name"], m["run_number"]) for m in members}) == 1
        assert len({m["node_id"] for m in members}) == 1, "an arm set ran on two nodes"
        ordered = sorted(members, key=lambda m: m["pair_order"])
        assert [m["run_id"] for m in ordered] == sorted(m["run_id"] for m in members)


@pytest.mark.cluster
def test_fleet_runs_a_custom_arm_and_stops_after_an_abandoned_one(tmp_path, cluster):
    """Custom arms on the nodes (tests/_arms.py, on the workers' PYTHONPATH): measured and
    stored like any arm; one whose thread cannot be stopped stops the fleet's batch too."""
    good = fleet_runner(tmp_path / "good", cluster, workflows=["linear", "_arms:good"],
                        repetitions=2)
    good.run()
    rows = all_runs(tmp_path / "good" / "data" / "experiments.db")
    mine = [r for r in rows if r["workflow_type"] == "_arms:good"]
    assert len(mine) == 4 and {r["status"] for r in mine} == {"ok"}
    # (the default scripted plan is empty: its one tool call is its own calculator call)
    assert all(r["node_id"] for r in mine) and all(r["tool_calls"] == 1 for r in mine)
    stuck = fleet_runner(tmp_path / "stuck", cluster, workflows=["_arms:stuck", "linear"],
                         repetitions=2, arm_timeout_s=0.2, group_id="fleet-stuck")
    with pytest.raises(AlemsError, match="_arms:stuck did not return within 0.2 s nor stop"):
        stuck.run()
    rows = all_runs(tmp_path / "stuck" / "data" / "experiments.db")
    assert [r["status"] for r in rows if r["workflow_type"] == "_arms:stuck"] == ["error"]
