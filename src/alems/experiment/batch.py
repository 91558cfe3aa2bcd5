"""Batch execution: tasks × providers × repetitions × workflows, measured, stored, resumable.

The plan (counterbalanced order) and the resume rule are in `alems.experiment.plan`; every
SQL statement and the samples folder layout are in `alems.store`; the progress bar, run
lines and closing summary are drawn by the caller through a `BatchProgress` hook
(`alems.cli.progress`).

One run (`alems.experiment.execute`). A fresh sampler (this process: the model runs
in-process) starts, the workflow runs and marks its phases, the sampler stops, the answer is
scored. Then, inside one write
transaction: the Parquet file is written (temporary file, fsync, rename), the run row, its
phases and — when the other arm of the pair is already stored — the pair's tax row are
inserted, and the transaction commits. A crash before the commit leaves at most a Parquet
file without a row, which the next start of the same session deletes. A run whose workflow
raised (provider error after retries, anything else) is stored with status 'error' and its
message, with the energy it spent; the batch goes on.

With `ray_address` the runs go to a fleet of Ray nodes (`alems.experiment.fleet`) and this
process stays the only writer; with `shard` (K, N) only the K-th of N slices of the plan runs.

One process per session: the session's lock file (`alems.store.locks`) is held while the
batch works it; SIGTERM/SIGHUP stop it like Ctrl-C (session marked 'interrupted'); a
failing progress display or log stream (a closed pipe) never stops a measurement.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

from alems import config
from alems.experiment import baseline as baseline_mod
from alems.experiment.execute import RunExecutor, stop_after, store_measured
from alems.experiment import conditions
from alems.experiment.plan import (BatchConfig, RunKey, choose_session, has_tax_pair, plan_order,
                                   planned_runs, runs_to_do, shard_runs, validate_numbers)
from alems.experiment.batch_hooks import completed_twin
from alems.experiment.workflows.custom import check_arms
from alems.store import db as store_db
from alems.errors import AlemsError
from alems.interrupts import QuietProxy, quiet_output, signals_as_interrupt
from alems.store import locks as store_locks
from alems.store import runs as store_runs
from alems.store import samples as store_samples
from alems.store import sessions as store_sessions

if TYPE_CHECKING:
    from alems.experiment.fleet import Fleet
    from alems.measure.protocol import SamplerProtocol


# ---------------------------------------------------------------- summary

@dataclass
class BatchSummary:
    group_id: str
    db_path: Path
    saved: bool
    planned: int = 0
    done_before: int = 0
    ran: int = 0
    ok: int = 0
    errors: int = 0
    per_workflow: dict = field(default_factory=dict)   # workflow -> (n ok, mean dynamic J)
    accuracy: dict = field(default_factory=dict)       # workflow -> (n correct, n scored)
    arm_headlines: dict = field(default_factory=dict)  # other non-linear arm -> its tax line
    mean_tax_percent: float | None = None
    headline_text: str | None = None   # BatchRunner's closing(…) of the group
    estimate: bool = False             # some run's energy is an ESTIMATE: every line says so
    headline_caveats: list = field(default_factory=list)   # summary's first warnings
    tax_pairs: int = 0
    energy_source: str | None = None
    already_complete: bool = False   # the identical batch was done before; nothing ran


class BatchProgress:
    """What the runner reports while it works through its runs; a UI subclass draws it
    (`alems.cli.progress`). This base draws nothing."""

    def begin(self, total: int) -> None:
        """`total` runs are about to be done."""

    def cooling(self, seconds: float) -> None:
        """Idle `seconds` before the next run."""

    def planned(self, keys: list[RunKey]) -> None:
        """The runs about to be done, in order (called just before `begin`)."""

    def running(self, key: RunKey) -> None:
        """Run `key` starts."""

    def phase(self, key: RunKey, names: tuple[str, ...]) -> None:
        """Run `key` is now inside these nested phases (outermost first; () = none)."""

    def finished(self, key: RunKey, row: dict) -> None:
        """Run `key` is stored as `row` ({} when another process stored it first)."""

    def end(self, completed: bool) -> None:
        """All runs done (completed) or the batch stopped early."""


# ---------------------------------------------------------------- the runner

class BatchRunner:
    """Validate, plan, run and store a batch (see the module docstring)."""

    def __init__(self, cfg: BatchConfig, *,
                 sampler_factory: Callable[[], SamplerProtocol] | None = None,
                 provider_factory: Callable[[str], object] | None = None,
                 log: Callable[[str], None] | None = None, command: str | None = None,
                 progress: BatchProgress | None = None,
                 closing: Callable[[sqlite3.Connection, str, list[str]], dict] | None = None,
                 store_summary: Callable[[sqlite3.Connection, Path, list[str]], object]
                 | None = None):
        self.cfg = cfg
        # (conn, group_id, arms) -> the headline lines and caveats the batch closes with;
        # supplied from above (alems.analysis.closing.batch_closing), None: no headline.
        self.closing = closing
        # (conn, db_path, [group_id]): keeps the completed batch's summary in its database
        # for the dashboard (alems.analysis.stored_summary.store_groups); None: not kept.
        self.store_summary = store_summary
        self.sampler_factory = sampler_factory
        self.provider_factory = provider_factory
        self.log = quiet_output(log or (lambda msg: print(msg, file=sys.stderr)))
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.progress = QuietProxy(progress or BatchProgress())
        self.task_sets: dict = {}
        self.providers: dict = {}
        self.executor: RunExecutor | None = None
        self.fleet: Fleet | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._lock: store_locks.SessionLock | None = None

    # ---- validation (before any run)
    def validate(self) -> None:
        cfg = self.cfg
        validate_numbers(cfg)
        # a custom arm that cannot run: one line, nothing measured; its code's file recorded
        cfg.arm_sources = check_arms(cfg.workflows)
        if "cloud" in cfg.providers and self.provider_factory is None:
            from alems.experiment.providers import resolve_cloud

            cfg.cloud_backend = resolve_cloud()[0]
        if cfg.ray_address is not None:
            # The model loads on the fleet's nodes, not here (see alems.experiment.fleet).
            from alems.experiment.fleet import Fleet

            self.executor = executor = RunExecutor(cfg, load_providers=False)
            self.fleet = fleet = Fleet.start(cfg, sampler_factory=self.sampler_factory,
                                             provider_factory=self.provider_factory,
                                             log=self.log)
            self.providers = fleet.providers()
        else:
            self.executor = executor = RunExecutor(cfg, sampler_factory=self.sampler_factory,
                                                   provider_factory=self.provider_factory)
            self.providers = executor.providers
            self.sampler_factory = executor.sampler_factory
        self.task_sets = executor.task_sets
        for name, provider in self.providers.items():
            describe = getattr(provider, "describe", None)
            if describe is not None:   # which API and model, said once (`cloud`: and why)
                why = getattr(provider, "resolved_why", "")
                self.log(f"provider {name!r} is {describe()}" + (f" ({why})" if why else ""))
        said = executor.servers.describe()   # which server process the counters cover
        if said:
            self.log(said)

    # ---- database and session
    def _open_db(self) -> tuple[sqlite3.Connection, Path]:
        cfg = self.cfg
        if cfg.save_db:
            path = Path(cfg.db_path or config.default_db_path())
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="alems-batch-")
            path = Path(self._tmpdir.name) / "experiments.db"
            self.log(f"not saving (no --save-db): results go to a temporary database "
                     f"{path}, deleted at the end")
        return store_db.connect(path), path

    def _choose_session(self, conn) -> tuple[str, bool]:
        """(group_id, resumed), by the resume rule of `alems.experiment.plan`."""
        cfg = self.cfg
        named = store_sessions.get_session(conn, cfg.group_id) if cfg.group_id else None
        unfinished = ([] if cfg.group_id or cfg.new_session
                      else store_sessions.unfinished_sessions(conn))
        return choose_session(cfg, named, unfinished)

    # ---- the batch
    def run(self) -> BatchSummary:
        if not self.task_sets:
            self.validate()
        with signals_as_interrupt():
            conn, db_path = self._open_db()
            try:
                return self._run(conn, db_path)
            except sqlite3.Error as exc:  # read-only database or mount, full disk, …
                raise AlemsError(f"cannot use database {db_path}: {exc}; completed runs are "
                                 "kept, rerun the same command to resume") from None
            finally:
                if self._lock is not None:
                    self._lock.release()
                conn.close()
                if self.fleet is not None:
                    self.fleet.close()
                if self._tmpdir is not None:
                    self._tmpdir.cleanup()

    def _run(self, conn, db_path: Path) -> BatchSummary:
        cfg = self.cfg
        plan = plan_order(cfg.tasks, cfg.providers, cfg.workflows, cfg.repetitions, cfg.seed)
        twin = completed_twin(cfg, plan, conn)
        if twin is not None:
            self.log(f"batch {twin} with these settings is already complete; showing its "
                     "results (add --new-session to run it again)")
            summary = BatchSummary(group_id=twin, db_path=Path(os.path.abspath(db_path)),
                                   saved=True, planned=len(planned_runs(plan, cfg.start_from)),
                                   already_complete=True)
            summary.done_before = summary.planned
            self._fill_summary(conn, summary)
            return summary
        group_id, resumed = self._choose_session(conn)
        self._lock = store_locks.SessionLock(db_path, group_id).acquire()
        if self._lock.describe_taken_over():
            self.log(self._lock.describe_taken_over())
        host = baseline_mod.machine_state(None)
        with store_db.transaction(conn):
            if resumed:
                store_sessions.update_session(
                    conn, group_id, status="running",
                    settings_json=json.dumps(cfg.settings(), sort_keys=True),
                    order_json=json.dumps([k.as_list() for k in plan]))
            else:
                store_sessions.insert_session(
                    conn, group_id=group_id, settings=cfg.settings(), command=self.command,
                    host=host, order=[k.as_list() for k in plan], seed=cfg.seed)
            exp_ids = {}
            for t in cfg.tasks:
                for p in cfg.providers:
                    provider = self.providers[p]
                    exp_ids[(t, p)] = store_sessions.get_or_create_experiment(
                        conn, group_id=group_id, task_name=t, provider=p,
                        model=getattr(provider, "model", None) and str(provider.model),
                        workflows=",".join(cfg.workflows), repetitions=cfg.repetitions,
                        seed=cfg.seed, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                        country=cfg.country,
                        config={"hz": cfg.hz, "sources": cfg.sources,
                                "api": getattr(provider, "backend", None),
                                "base_url": getattr(provider, "base_url", None),
                                "task_source": self.task_sets[t].source,
                                "max_steps": cfg.max_steps, "max_tool_calls": cfg.max_tool_calls})
        # Under the write lock: a concurrent writer holds it from its Parquet write to its
        # commit, so any file without a row seen here belongs to a run that died.
        with store_db.transaction(conn):
            done = store_sessions.completed_runs(conn, group_id)
            removed = store_samples.remove_orphans(db_path, group_id, done.values())
            discarded = store_samples.discard_dead_partials(db_path, group_id)
        if removed:
            self.log(f"removed {len(removed)} Parquet file(s) of runs that never committed")
        for partial, held in discarded:  # a killed run is redone, never stored half
            self.log(f"discarded the partial samples of a killed run ({held['samples']} "
                     f"samples, {held['duration_s']:.1f} s, {partial.name}); it will be redone")
        todo = shard_runs(runs_to_do(plan, cfg.start_from, done), cfg.shard)
        summary = BatchSummary(group_id=group_id, db_path=Path(os.path.abspath(db_path)),
                               saved=cfg.save_db,
                               planned=len(shard_runs(planned_runs(plan, cfg.start_from),
                                                      cfg.shard)))
        summary.done_before = summary.planned - len(todo)
        verb = "resuming" if resumed else "starting"
        self.log(f"{verb} batch {group_id}: {len(todo)} run(s) to do"
                 + (f", {summary.done_before} already stored" if summary.done_before else "")
                 + f"; database {db_path}")

        try:
            if todo:
                self._run_plan(todo, exp_ids, group_id, conn, db_path, summary)
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.rollback()
                with store_db.transaction(conn):
                    store_sessions.update_session(conn, group_id, status="interrupted")
            except sqlite3.Error as exc:  # e.g. the disk filled up: say so, keep the cause
                self.log(f"could not mark session {group_id} interrupted: {exc}")
            raise
        self._fill_summary(conn, summary)
        with store_db.transaction(conn):
            store_sessions.update_session(conn, group_id, status="completed")
        if self.store_summary is not None and cfg.save_db:
            # The runs are committed: failing here loses nothing, the summary is rebuilt when
            # asked. Any error is one line (a signal that lands inside a C extension's import
            # can surface as an ImportError); Ctrl-C itself still stops the batch.
            try:
                self.store_summary(conn, db_path, [group_id])
            except Exception as exc:  # noqa: BLE001 - see above
                self.log(f"could not keep the batch's summary in {db_path} "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                         "`alems summary` and the dashboard build it when asked")
        return summary

    def _run_plan(self, todo, exp_ids, group_id, conn, db_path, summary) -> None:
        cfg = self.cfg
        if self.fleet is not None:
            self.fleet.run(todo, exp_ids, group_id, conn, db_path, summary, self.progress)
            return
        executor = self.executor
        if executor is None:
            raise AlemsError("internal: a batch runs only after validate()")
        energy_source = executor.energy_source()
        summary.energy_source = energy_source

        max_age_s = cfg.baseline_max_age_s if cfg.baseline_every_s is None \
            else min(cfg.baseline_max_age_s, cfg.baseline_every_s)
        baselines = baseline_mod.BaselineKeeper(
            conn, executor.sampler_factory, energy_source,
            duration_s=cfg.baseline_duration_s, repetitions=cfg.baseline_reps,
            max_age_s=max_age_s, log=self.log, gpus=getattr(executor, "gpus", None))

        if cfg.warm_up:
            conditions.warm_up(self.providers, cfg, self.log)
        gate = conditions.QuietGate(cfg.quiet_timeout_s, self.log) if cfg.require_quiet else None
        progress = self.progress
        progress.planned(list(todo))
        progress.begin(len(todo))
        completed = False
        try:
            for i, key in enumerate(todo):
                if i > 0 and cfg.cool_down_s > 0:
                    progress.cooling(cfg.cool_down_s)
                    time.sleep(cfg.cool_down_s)
                if gate is not None:   # before the baseline too: it is measured quiet
                    gate.before_run()
                base = baselines.current()
                progress.running(key)
                exp_id = exp_ids[(key.task, key.provider)]
                measured = executor.measure(  # samples stream to disk as they come
                    key, base, on_phase=lambda names, key=key: self.progress.phase(key, names),
                    partial_path=store_samples.new_partial_path(
                        db_path, group_id, exp_id, store_runs.next_run_id(conn)))
                stored = store_measured(conn, db_path, group_id,
                                        [(exp_ids[(key.task, key.provider)], measured)],
                                        paired=has_tax_pair(cfg.workflows), log=self.log)
                row = stored[0] if stored else {}
                summary.ran += 1
                baselines.check_run(key.as_list(), row, base)
                if row.get("status") == "error":
                    self.log(f"run failed ({key.task}, {key.provider}, {key.workflow}, rep "
                             f"{key.rep}): {row.get('error')}")
                progress.finished(key, row)
                stop_after(measured)
            completed = True
        finally:
            progress.end(completed)

    def _fill_summary(self, conn, summary: BatchSummary) -> None:
        totals = store_sessions.session_totals(conn, summary.group_id)
        summary.ok, summary.errors = totals.ok, totals.errors
        summary.per_workflow.update(totals.per_workflow)
        summary.accuracy.update(totals.accuracy)
        summary.tax_pairs, summary.mean_tax_percent = totals.tax_pairs, totals.mean_tax_percent
        if self.closing is not None and len(self.cfg.workflows) >= 2:
            closing = self.closing(conn, summary.group_id, list(self.cfg.workflows))
            summary.headline_text = closing["headline_text"]
            summary.arm_headlines.update(closing["arm_headlines"])
            summary.estimate = closing["estimate"]
            summary.headline_caveats = closing["headline_caveats"]
        if summary.energy_source is None:
            summary.energy_source = totals.energy_source
