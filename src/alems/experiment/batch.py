"""Batch execution: tasks × providers × repetitions × workflows, measured, stored, resumable.

The plan (counterbalanced order) and the resume rule are in `alems.experiment.plan`; every
SQL statement and the samples folder layout are in `alems.store`; the progress bar, run
lines and closing summary are drawn by the caller through a `BatchProgress` hook
(`alems.cli.progress`).

One run. A fresh sampler (this process: the model runs in-process) starts, the workflow runs
and marks its phases, the sampler stops, the answer is scored. Then, inside one write
transaction: the Parquet file is written (temporary file, fsync, rename), the run row, its
phases and — when the other arm of the pair is already stored — the pair's tax row are
inserted, and the transaction commits. A crash before the commit leaves at most a Parquet
file without a row, which the next start of the same session deletes. A run whose workflow
raised (provider error after retries, anything else) is stored with status 'error' and its
message, with the energy it spent; the batch goes on.
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
from typing import Callable

from alems import config
from alems.errors import AlemsError
from alems.experiment import baseline as baseline_mod
from alems.experiment.metrics import ProcessCounters, phase_rows, run_metrics
from alems.experiment.plan import (BatchConfig, RunKey, choose_session, plan_order,
                                   planned_runs, runs_to_do, validate_numbers)
from alems.store import db as store_db
from alems.store import runs as store_runs
from alems.store import samples as store_samples
from alems.store import sessions as store_sessions


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
    mean_tax_percent: float | None = None
    tax_pairs: int = 0
    energy_source: str | None = None
    interrupted: bool = False


class BatchProgress:
    """What the runner reports while it works through its runs; a UI subclass draws it
    (`alems.cli.progress`). This base draws nothing."""

    def begin(self, total: int) -> None:
        """`total` runs are about to be done."""

    def cooling(self, seconds: float) -> None:
        """Idle `seconds` before the next run."""

    def running(self, key: RunKey) -> None:
        """Run `key` starts."""

    def finished(self, key: RunKey, row: dict) -> None:
        """Run `key` is stored as `row` ({} when another process stored it first)."""

    def end(self, completed: bool) -> None:
        """All runs done (completed) or the batch stopped early."""


def _default_sampler_factory(cfg: BatchConfig) -> Callable[[], object]:
    from alems.measure.sampler import Sampler

    def make():
        return Sampler(hz=cfg.hz, sources=cfg.sources, pid=None)
    return make


# ---------------------------------------------------------------- the runner

class BatchRunner:
    """Validate, plan, run and store a batch (see the module docstring)."""

    def __init__(self, cfg: BatchConfig, *, sampler_factory: Callable[[], object] | None = None,
                 provider_factory: Callable[[str], object] | None = None,
                 log: Callable[[str], None] | None = None, command: str | None = None,
                 progress: BatchProgress | None = None):
        self.cfg = cfg
        self.sampler_factory = sampler_factory
        self.provider_factory = provider_factory
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.progress = progress or BatchProgress()
        self.task_sets: dict = {}
        self.providers: dict = {}
        self.footprint = None
        self._tmpdir = None

    # ---- validation (before any run)
    def validate(self) -> None:
        cfg = self.cfg
        validate_numbers(cfg)
        from alems.experiment.tasks import load_task_set

        for name in cfg.tasks:
            ts = load_task_set(name)
            if len(ts) == 0:
                raise AlemsError(f"task set {name!r} has no items")
            self.task_sets[name] = ts
        from alems.experiment.providers import get_provider

        for name in cfg.providers:
            if self.provider_factory is not None:
                provider = self.provider_factory(name)
            else:
                options = {}
                if name == "local":
                    options.update(model=cfg.model, n_threads=cfg.threads, n_ctx=cfg.n_ctx)
                elif name == "cloud":
                    options["model"] = cfg.cloud_model
                provider = get_provider(name, **options)
            provider.check()
            self.providers[name] = provider
        try:
            from alems.experiment import sustainability

            factors = sustainability.load_factors()
            sustainability.footprint(0.0, cfg.country, factors)  # unknown country -> error
            self.footprint = lambda uj, country: sustainability.footprint(uj, country, factors)
        except ImportError:
            self.footprint = None
        if self.sampler_factory is None:
            self.sampler_factory = _default_sampler_factory(cfg)

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

    # ---- one run
    def _execute(self, key: RunKey, exp_id: int, group_id: str, conn, db_path: Path,
                 base) -> dict:
        from alems.experiment.providers import GenerationSettings
        from alems.experiment.scoring import score
        from alems.experiment.workflows import run_linear, run_agentic

        cfg = self.cfg
        item = self.task_sets[key.task].item_for(key.rep - 1, cfg.seed)
        provider = self.providers[key.provider]
        settings = GenerationSettings(max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                      seed=cfg.seed)
        sampler = self.sampler_factory()
        if hasattr(sampler, "stream_to"):  # samples to disk as they come (bounded memory)
            sampler.stream_to(store_samples.new_partial_path(
                db_path, group_id, exp_id, store_runs.next_run_id(conn)))
        started_at = store_runs.utc_now_iso()
        sampler.start()
        instrument = getattr(sampler, "instrument_tids", ())  # never count the sampler's threads
        before = ProcessCounters.now(instrument)
        workflow, error = None, None
        try:
            if key.workflow == "linear":
                workflow = run_linear(provider, item, settings, sampler)
            else:
                workflow = run_agentic(provider, item, settings, sampler,
                                       max_steps=cfg.max_steps,
                                       max_tool_calls=cfg.max_tool_calls)
        except KeyboardInterrupt:
            sampler.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed run is data, the batch goes on
            error = f"{type(exc).__name__}: {exc}".strip()
        after = ProcessCounters.now(instrument)  # before stop(): its threads still exist
        result = sampler.stop()
        extracted, correct = None, None
        if workflow is not None:
            try:
                extracted, correct = score(workflow.answer, item)
            except Exception as exc:  # noqa: BLE001
                error = f"scoring failed: {type(exc).__name__}: {exc}"
        metrics = run_metrics(
            result, workflow, baseline=base, workflow_type=key.workflow, item=item,
            extracted_answer=extracted, correct=correct, clip_negative=cfg.clip_negative,
            process_before=before, process_after=after, country=cfg.country,
            footprint=self.footprint)
        phases = phase_rows(result)
        row = {"exp_id": exp_id, "workflow_type": key.workflow, "run_number": key.rep,
               "pair_order": key.pair_order, "order_index": key.order_index,
               "item_id": item.id, "status": "ok" if error is None else "error",
               "error": error, "started_at": started_at}
        row.update(metrics.columns)
        row["trace_json"] = json.dumps(getattr(workflow, "trace", None), default=str) \
            if workflow is not None else None
        if workflow is None:
            metrics.null_reasons.setdefault("trace_json", "no workflow result (run failed)")
        meta = dict(getattr(result, "metadata", None) or {})
        identity = {"group_id": group_id, "exp_id": exp_id, "task": key.task,
                    "provider": key.provider, "workflow_type": key.workflow,
                    "run_number": key.rep, "item_id": item.id}
        written: Path | None = None
        try:
            with store_db.transaction(conn):
                run_id = store_runs.next_run_id(conn)
                path = store_samples.samples_path(db_path, group_id, exp_id, run_id)
                identity["run_id"] = run_id
                written = path
                if getattr(result, "partial_path", None):
                    store_samples.write_streamed_samples(path, result.partial_path,
                                                         metadata=meta, phases=phases,
                                                         run=identity)
                else:
                    store_samples.write_samples(path, result.table, metadata=meta,
                                                phases=phases, run=identity)
                row["run_id"] = run_id
                row["samples_path"] = store_samples.relative_to_db(db_path, path)
                row["null_reasons"] = json.dumps(metrics.null_reasons, sort_keys=True)
                store_runs.insert_run(conn, row)
                store_runs.insert_phases(conn, run_id, phases)
                if len(self.cfg.workflows) == 2:
                    store_runs.insert_tax_if_paired(conn, exp_id, key.rep)
        except BaseException as exc:
            if written is not None:
                try:
                    written.unlink()
                except OSError:
                    pass
            if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
                self.log(f"run {key.as_list()} was stored meanwhile by another process; "
                         "kept that one")
                return {}
            if isinstance(exc, OSError):
                raise AlemsError(f"cannot write the samples of run {key.as_list()} under "
                                 f"{store_samples.samples_root(db_path)}: "
                                 f"{exc.strerror or exc}; free space or choose another --db; "
                                 "rerun the same command to resume") from None
            if isinstance(exc, sqlite3.Error):
                raise AlemsError(f"cannot store run {key.as_list()} in {db_path}: {exc}; "
                                 "rerun the same command to resume") from None
            raise
        return row

    # ---- the batch
    def run(self) -> BatchSummary:
        if not self.task_sets:
            self.validate()
        conn, db_path = self._open_db()
        try:
            return self._run(conn, db_path)
        finally:
            conn.close()
            if self._tmpdir is not None:
                self._tmpdir.cleanup()

    def _run(self, conn, db_path: Path) -> BatchSummary:
        cfg = self.cfg
        group_id, resumed = self._choose_session(conn)
        plan = plan_order(cfg.tasks, cfg.providers, cfg.workflows, cfg.repetitions, cfg.seed)
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
        todo = runs_to_do(plan, cfg.start_from, done)
        summary = BatchSummary(group_id=group_id, db_path=Path(os.path.abspath(db_path)),
                               saved=cfg.save_db,
                               planned=len(planned_runs(plan, cfg.start_from)))
        summary.done_before = summary.planned - len(todo)
        verb = "resuming" if resumed else "starting"
        self.log(f"{verb} batch {group_id}: {len(todo)} run(s) to do"
                 + (f", {summary.done_before} already stored" if summary.done_before else "")
                 + f"; database {db_path}")

        try:
            if todo:
                self._run_plan(todo, exp_ids, group_id, conn, db_path, summary)
        except BaseException:
            summary.interrupted = True
            if conn.in_transaction:
                conn.rollback()
            with store_db.transaction(conn):
                store_sessions.update_session(conn, group_id, status="interrupted")
            raise
        self._fill_summary(conn, summary)
        with store_db.transaction(conn):
            store_sessions.update_session(conn, group_id, status="completed")
        return summary

    def _energy_source(self) -> str:
        sampler = self.sampler_factory()
        source = getattr(sampler, "energy_source", None)
        if source:
            return source
        sampler.start()
        return sampler.stop().energy_source

    def _run_plan(self, todo, exp_ids, group_id, conn, db_path, summary) -> None:
        cfg = self.cfg
        energy_source = self._energy_source()
        summary.energy_source = energy_source

        def current_baseline():
            return baseline_mod.get_or_measure(
                conn, self.sampler_factory, energy_source,
                duration_s=cfg.baseline_duration_s, repetitions=cfg.baseline_reps,
                max_age_s=cfg.baseline_max_age_s, log=self.log)

        progress = self.progress
        progress.begin(len(todo))
        completed = False
        try:
            for i, key in enumerate(todo):
                if i > 0 and cfg.cool_down_s > 0:
                    progress.cooling(cfg.cool_down_s)
                    time.sleep(cfg.cool_down_s)
                base = current_baseline()
                progress.running(key)
                row = self._execute(key, exp_ids[(key.task, key.provider)], group_id, conn,
                                    db_path, base)
                summary.ran += 1
                if row.get("status") == "error":
                    self.log(f"run failed ({key.task}, {key.provider}, {key.workflow}, rep "
                             f"{key.rep}): {row.get('error')}")
                progress.finished(key, row)
            completed = True
        finally:
            progress.end(completed)

    def _fill_summary(self, conn, summary: BatchSummary) -> None:
        totals = store_sessions.session_totals(conn, summary.group_id)
        summary.ok, summary.errors = totals.ok, totals.errors
        summary.per_workflow.update(totals.per_workflow)
        summary.tax_pairs, summary.mean_tax_percent = totals.tax_pairs, totals.mean_tax_percent
        if summary.energy_source is None:
            summary.energy_source = totals.energy_source
