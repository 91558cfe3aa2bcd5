"""What runs on one fleet node: a Ray actor holding the node's only measurement slot.

The actor loads the task sets and the model once, measures the node's own idle baseline
with the node's own sampler, and runs whole pairs back to back in their planned order.
It never touches the database: it hands each run's row and samples back to the driver.
"""

from __future__ import annotations

import os
import time

from alems.errors import AlemsError
from alems.experiment import baseline as baseline_mod
from alems.experiment.execute import RunExecutor
from alems.experiment.plan import BatchConfig, RunKey


class NodeWorker:
    """The body of the fleet's actor (made remote by `alems.experiment.fleet.driver`)."""

    def __init__(self, cfg: BatchConfig, sampler_factory=None, provider_factory=None):
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.error: str | None = None
        self.executor: RunExecutor | None = None
        self.energy_source: str | None = None
        self.runs_done = 0
        self.own_baselines: set = set()   # (measured_at, measured_t_ns) this node measured
        try:
            self.executor = executor = RunExecutor(cfg, sampler_factory=sampler_factory,
                                                   provider_factory=provider_factory,
                                                   node_id=self.node_id)
            self.energy_source = executor.energy_source()
            self._warm_up(executor)
        except Exception as exc:  # noqa: BLE001 - told to the driver as one line
            self.error = f"{type(exc).__name__}: {exc}".strip()

    def _warm_up(self, executor: RunExecutor) -> None:
        """Load what the first run would load lazily (the metrics' table code pulls in
        pandas: over a second), so the node is ready when its first pair arrives."""
        from alems.experiment import scoring, workflows  # noqa: F401
        from alems.experiment.metrics import run_metrics

        try:
            sampler = executor.sampler_factory()
            sampler.start()
            run_metrics(sampler.stop())
        except Exception:  # noqa: BLE001 - only a head start; the runs report real errors
            pass

    def describe(self) -> dict:
        """Who this node is (or why it cannot take part: `error`)."""
        info = {"node_id": self.node_id, "pid": os.getpid(), "error": self.error,
                "energy_source": self.energy_source}
        if self.executor is not None:
            info.update(self.executor.identity, models=self.executor.models())
        return info

    def run_pair(self, keys: list[RunKey], known: baseline_mod.Baseline | None) -> dict:
        """{"runs": [MeasuredRun, …]} for the arms `keys`, measured against `known`; or,
        when `known` cannot serve this node (none, too old, other state), {"baseline":
        a freshly measured Baseline, "why": reason} and no run: the driver stores it and
        sends the pair again with it (so every run's baseline has an id)."""
        ex = self.executor
        if ex is None:  # the driver sends pairs only to nodes that started
            raise AlemsError(f"node {self.node_id} cannot measure: {self.error}")
        cfg = ex.cfg
        mine = known is not None and (known.measured_at, known.measured_t_ns) in self.own_baselines
        why = baseline_mod.staleness(known, baseline_mod.machine_state(self.energy_source),
                                     max_age_s=cfg.baseline_max_age_s, trusted=mine)
        if why is not None:
            fresh = baseline_mod.measure(ex.sampler_factory, duration_s=cfg.baseline_duration_s,
                                         repetitions=cfg.baseline_reps)
            # this batch uses its own baseline even if the node was not quiet (as on one host)
            self.own_baselines.add((fresh.measured_at, fresh.measured_t_ns))
            return {"baseline": fresh, "why": why}
        runs = []
        for key in keys:
            if self.runs_done and cfg.cool_down_s > 0:
                time.sleep(cfg.cool_down_s)
            runs.append(ex.measure(key, known))
            self.runs_done += 1
            if runs[-1].stop_batch:   # no run beside a custom arm's live thread
                break
        return {"runs": runs}
