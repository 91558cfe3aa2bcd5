"""The batch runner: tasks × providers × repetitions × workflows, measured, stored, resumable.

Order. The linear and agentic runs of one (task, provider, repetition) form a *pair*. The
pairs are shuffled with the seed, and which arm goes first is counterbalanced: over all
pairs, half start with linear and half with agentic (the odd one decided by the seed). The
plan covers repetitions 1..N regardless of --start-from, so a run keeps its place
(`runs.order_index`) and its arm position (`runs.pair_order`: 0 first, 1 second) across
resumptions; the plan is stored in `batch_sessions.order_json`.

One run. A fresh sampler (this process: the model runs in-process) starts, the workflow runs
and marks its phases, the sampler stops, the answer is scored. Then, inside one write
transaction: the Parquet file is written (temporary file, fsync, rename), the run row, its
phases and — when the other arm of the pair is already stored — the pair's tax row are
inserted, and the transaction commits. A crash before the commit leaves at most a Parquet
file without a row, which the next start of the same session deletes. A run whose workflow
raised (provider error after retries, anything else) is stored with status 'error' and its
message, with the energy it spent; the batch goes on.

Resume rule. A session is identified by its group id. Running a batch again continues a
session, never repeating a stored run (ok or error) and never losing one:
- with --group-id G: session G is continued (its design — tasks, providers, workflows,
  seed, temperature, max tokens, model, rate — must match; repetitions may grow);
- without --group-id: the newest *unfinished* session in the database with the same design
  and repetitions is continued; if there is none (or --new-session is given) a new session
  starts with a fresh id (YYYYmmdd-HHMMSS-xxxx).
--start-from K skips repetitions below K in this invocation.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import shlex
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from alems.experiment import baseline as baseline_mod
from alems import config
from alems.errors import AlemsError, UsageError
from alems.measure.names import MAX_HZ
from alems.experiment.metrics import ProcessCounters, phase_rows, run_metrics
from alems.store import db as store_db
from alems.store import runs as store_runs
from alems.store import samples as store_samples

from alems.experiment.workflows.base import DEFAULT_WORKFLOWS, WORKFLOW_NAMES as WORKFLOWS


# ---------------------------------------------------------------- configuration

@dataclass
class BatchConfig:
    tasks: list[str]
    providers: list[str]
    workflows: list[str] = field(default_factory=lambda: list(DEFAULT_WORKFLOWS))
    repetitions: int = 1
    start_from: int = 1
    cool_down_s: float = 0.0
    seed: int = 42
    temperature: float = 0.0
    max_tokens: int = 256
    group_id: str | None = None
    model: str | None = None
    cloud_model: str | None = None
    threads: int | None = None       # local model: CPU threads (None = physical cores)
    n_ctx: int = 2048                # local model: context size in tokens
    hz: float = config.DEFAULT_HZ
    sources: list[str] | None = None
    country: str = config.DEFAULT_COUNTRY
    db_path: Path | None = None
    save_db: bool = True
    verbose: bool = False
    baseline_duration_s: float = baseline_mod.DEFAULT_DURATION_S
    baseline_reps: int = baseline_mod.DEFAULT_REPETITIONS
    baseline_max_age_s: float = baseline_mod.DEFAULT_MAX_AGE_S
    clip_negative: bool = False
    new_session: bool = False
    max_steps: int = 5
    max_tool_calls: int = 5

    def design(self) -> dict:
        """What defines the experiment: must match to continue a session."""
        return {"tasks": list(self.tasks), "providers": list(self.providers),
                "workflows": list(self.workflows), "seed": self.seed,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "model": self.model, "cloud_model": self.cloud_model, "hz": self.hz,
                "threads": self.threads, "n_ctx": self.n_ctx,
                "sources": self.sources, "max_steps": self.max_steps,
                "max_tool_calls": self.max_tool_calls}

    def settings(self) -> dict:
        d = self.design()
        d.update(repetitions=self.repetitions, cool_down_s=self.cool_down_s,
                 country=self.country, clip_negative=self.clip_negative,
                 baseline_duration_s=self.baseline_duration_s,
                 baseline_reps=self.baseline_reps, baseline_max_age_s=self.baseline_max_age_s)
        return d


def split_list(text: str | None, what: str) -> list[str]:
    items = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not items:
        raise UsageError(f"--{what} is empty; give a comma-separated list")
    seen = []
    for item in items:
        if item in seen:
            raise UsageError(f"--{what} names {item!r} twice")
        seen.append(item)
    return seen


def new_group_id() -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def validate_numbers(cfg: BatchConfig) -> None:
    if cfg.repetitions < 1:
        raise UsageError(f"--repetitions must be >= 1, got {cfg.repetitions}")
    if not 1 <= cfg.start_from <= cfg.repetitions:
        raise UsageError(f"--start-from must be between 1 and --repetitions "
                         f"({cfg.repetitions}), got {cfg.start_from}")
    if cfg.cool_down_s < 0:
        raise UsageError(f"--cool-down must be >= 0 seconds, got {cfg.cool_down_s:g}")
    if not cfg.hz > 0 or cfg.hz > MAX_HZ:
        raise UsageError(f"--hz must be in (0, {MAX_HZ:g}], got {cfg.hz:g}")
    if cfg.max_tokens < 1:
        raise UsageError(f"--max-tokens must be >= 1, got {cfg.max_tokens}")
    if not 0.0 <= cfg.temperature <= 2.0:
        raise UsageError(f"--temperature must be between 0 and 2, got {cfg.temperature:g}")
    if not cfg.baseline_duration_s > 0:
        raise UsageError(f"--baseline-duration must be > 0 s, got {cfg.baseline_duration_s:g}")
    if cfg.baseline_reps < 1:
        raise UsageError(f"--baseline-reps must be >= 1, got {cfg.baseline_reps}")
    if cfg.baseline_max_age_s < 0:
        raise UsageError(f"--baseline-max-age must be >= 0 s, got {cfg.baseline_max_age_s:g}")
    bad = [w for w in cfg.workflows if w not in WORKFLOWS]
    if bad:
        raise UsageError(f"unknown workflow {bad[0]!r}; choose from: {', '.join(WORKFLOWS)}")
    if cfg.group_id is not None:
        store_samples.samples_path("x.db", cfg.group_id, 0, 0)  # checks the characters


# ---------------------------------------------------------------- order

@dataclass(frozen=True)
class RunKey:
    task: str
    provider: str
    workflow: str
    rep: int                  # 1-based
    order_index: int          # position in the full plan
    pair_order: int | None    # 0: first arm of its pair, 1: second; None without pairs

    def as_list(self) -> list:
        return [self.task, self.provider, self.workflow, self.rep]


def plan_order(tasks, providers, workflows, repetitions: int, seed: int) -> list[RunKey]:
    """The full, seeded, counterbalanced run order (see the module docstring)."""
    rng = random.Random(f"alems-batch-order|{seed}")
    pairs = [(t, p, r) for t in tasks for p in providers for r in range(1, repetitions + 1)]
    rng.shuffle(pairs)
    arms = [w for w in WORKFLOWS if w in workflows]
    keys: list[RunKey] = []
    if len(arms) == 2:
        n = len(pairs)
        linear_first = [True] * (n // 2) + [False] * (n // 2)
        if n % 2:
            linear_first.append(rng.random() < 0.5)
        rng.shuffle(linear_first)
        for (t, p, r), lin_first in zip(pairs, linear_first):
            order = ("linear", "agentic") if lin_first else ("agentic", "linear")
            for pos, w in enumerate(order):
                keys.append(RunKey(t, p, w, r, len(keys), pos))
    elif len(arms) > 2:
        # Triples (or more): every order of the arms equally often, in a seeded shuffle.
        perms = list(itertools.permutations(arms))
        orders = [perms[i % len(perms)] for i in range(len(pairs))]
        rng.shuffle(orders)
        for (t, p, r), order in zip(pairs, orders):
            for pos, w in enumerate(order):
                keys.append(RunKey(t, p, w, r, len(keys), pos))
    else:
        for t, p, r in pairs:
            keys.append(RunKey(t, p, arms[0], r, len(keys), None))
    return keys


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
    arm_tax: dict = field(default_factory=dict)        # non-linear arm -> (n pairs, mean tax %)
    mean_tax_percent: float | None = None
    tax_pairs: int = 0
    energy_source: str | None = None
    interrupted: bool = False


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
                 progress: bool = True):
        self.cfg = cfg
        self.sampler_factory = sampler_factory
        self.provider_factory = provider_factory
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.show_progress = progress
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
            path = Path(cfg.db_path or config.DEFAULT_DB_PATH)
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="alems-batch-")
            path = Path(self._tmpdir.name) / "experiments.db"
            self.log(f"not saving (no --save-db): results go to a temporary database "
                     f"{path}, deleted at the end")
        return store_db.connect(path), path

    def _choose_session(self, conn) -> tuple[str, bool]:
        """(group_id, resumed)."""
        cfg = self.cfg
        design = json.dumps(cfg.design(), sort_keys=True)
        if cfg.group_id:
            existing = store_runs.get_session(conn, cfg.group_id)
            if existing is None:
                return cfg.group_id, False
            old = json.loads(existing["settings_json"])
            old_design = {k: old.get(k) for k in cfg.design()}
            if json.dumps(old_design, sort_keys=True) != design:
                diff = [k for k in cfg.design() if old_design.get(k) != cfg.design()[k]]
                raise AlemsError(
                    f"group {cfg.group_id!r} was started with different settings "
                    f"({', '.join(f'{k}={old_design.get(k)!r}' for k in diff)}); repeat them "
                    "to resume it, or pass a new --group-id")
            return cfg.group_id, True
        if not cfg.new_session:
            for sess in store_runs.unfinished_sessions(conn):
                old = json.loads(sess["settings_json"])
                old_design = {k: old.get(k) for k in cfg.design()}
                if (json.dumps(old_design, sort_keys=True) == design
                        and old.get("repetitions") == cfg.repetitions):
                    return sess["group_id"], True
        return new_group_id(), False

    # ---- one run
    def _execute(self, key: RunKey, exp_id: int, group_id: str, conn, db_path: Path,
                 base) -> dict:
        from alems.experiment.providers import GenerationSettings
        from alems.experiment.scoring import score
        from alems.experiment.workflows import run_workflow

        cfg = self.cfg
        item = self.task_sets[key.task].item_for(key.rep - 1, cfg.seed)
        provider = self.providers[key.provider]
        settings = GenerationSettings(max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                      seed=cfg.seed)
        sampler = self.sampler_factory()
        started_at = store_runs.utc_now_iso()
        before = ProcessCounters.now()
        sampler.start()
        workflow, error = None, None
        try:
            workflow = run_workflow(key.workflow, provider, item, settings, sampler,
                                    max_steps=cfg.max_steps, max_tool_calls=cfg.max_tool_calls)
        except KeyboardInterrupt:
            sampler.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed run is data, the batch goes on
            error = f"{type(exc).__name__}: {exc}".strip()
        result = sampler.stop()
        after = ProcessCounters.now()
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
                store_samples.write_samples(path, result.table, metadata=meta,
                                            phases=phases, run=identity)
                row["run_id"] = run_id
                row["samples_path"] = store_samples.relative_to_db(db_path, path)
                row["null_reasons"] = json.dumps(metrics.null_reasons, sort_keys=True)
                store_runs.insert_run(conn, row)
                store_runs.insert_phases(conn, run_id, phases)
                if {"linear", "agentic"} <= set(self.cfg.workflows):
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
                store_runs.update_session(conn, group_id, status="running",
                                          settings_json=json.dumps(cfg.settings(), sort_keys=True),
                                          order_json=json.dumps([k.as_list() for k in plan]))
            else:
                store_runs.insert_session(conn, group_id=group_id, settings=cfg.settings(),
                                          command=self.command, host=host,
                                          order=[k.as_list() for k in plan], seed=cfg.seed)
            exp_ids = {}
            for t in cfg.tasks:
                for p in cfg.providers:
                    provider = self.providers[p]
                    exp_ids[(t, p)] = store_runs.get_or_create_experiment(
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
            done = store_runs.completed_runs(conn, group_id)
            removed = store_samples.remove_orphans(db_path, group_id, done.values())
        if removed:
            self.log(f"removed {len(removed)} Parquet file(s) of runs that never committed")
        todo = [k for k in plan if k.rep >= cfg.start_from
                and (k.task, k.provider, k.workflow, k.rep) not in done]
        summary = BatchSummary(group_id=group_id, db_path=Path(os.path.abspath(db_path)),
                               saved=cfg.save_db,
                               planned=len([k for k in plan if k.rep >= cfg.start_from]))
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
                store_runs.update_session(conn, group_id, status="interrupted")
            raise
        self._fill_summary(conn, summary)
        with store_db.transaction(conn):
            store_runs.update_session(conn, group_id, status="completed")
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

        progress = _make_progress(self.show_progress)
        t_start_s = time.monotonic()
        with progress:
            task_id = progress.add_task("runs", total=len(todo))
            for i, key in enumerate(todo):
                if i > 0 and cfg.cool_down_s > 0:
                    progress.update(task_id, description=f"cool-down {cfg.cool_down_s:g} s")
                    time.sleep(cfg.cool_down_s)
                base = current_baseline()
                progress.update(task_id, description=f"{key.task}/{key.provider}/"
                                                     f"{key.workflow} rep {key.rep}")
                row = self._execute(key, exp_ids[(key.task, key.provider)], group_id, conn,
                                    db_path, base)
                summary.ran += 1
                if row.get("status") == "error":
                    self.log(f"run failed ({key.task}, {key.provider}, {key.workflow}, rep "
                             f"{key.rep}): {row.get('error')}")
                progress.advance(task_id)
                # Without a terminal the bar is off: each run line carries the count and ETA.
                counter = "" if progress.live.is_started else _count_eta(
                    i + 1, len(todo), time.monotonic() - t_start_s) + " "
                if cfg.verbose and row:
                    progress.console.print(counter + _run_line(key, row), markup=False,
                                           highlight=False, soft_wrap=True)
                elif counter and self.show_progress:
                    progress.console.print(counter.strip(), markup=False, highlight=False)
            progress.update(task_id, description="runs done")

    def _fill_summary(self, conn, summary: BatchSummary) -> None:
        g = summary.group_id
        q = conn.execute
        summary.ok = q("SELECT COUNT(*) FROM runs r JOIN experiments e USING (exp_id) "
                       "WHERE e.group_id = ? AND r.status = 'ok'", (g,)).fetchone()[0]
        summary.errors = q("SELECT COUNT(*) FROM runs r JOIN experiments e USING (exp_id) "
                           "WHERE e.group_id = ? AND r.status != 'ok'", (g,)).fetchone()[0]
        for wf, n, mean_j in q(
                "SELECT r.workflow_type, COUNT(*), AVG(r.dynamic_energy_uj / 1e6) FROM runs r "
                "JOIN experiments e USING (exp_id) WHERE e.group_id = ? AND r.status = 'ok' "
                "GROUP BY r.workflow_type", (g,)):
            summary.per_workflow[wf] = (n, mean_j)
        for wf, n_correct, n_scored in q(
                "SELECT r.workflow_type, SUM(r.success), COUNT(r.success) FROM runs r "
                "JOIN experiments e USING (exp_id) WHERE e.group_id = ? AND r.status = 'ok' "
                "GROUP BY r.workflow_type", (g,)):
            summary.accuracy[wf] = (n_correct or 0, n_scored)
        # Each non-linear arm against the linear run of the same (experiment, repetition).
        for wf, n, mean_tax in q(
                "SELECT a.workflow_type, COUNT(*), AVG((a.dynamic_energy_uj - l.dynamic_energy_uj)"
                " * 100.0 / l.dynamic_energy_uj) FROM runs a JOIN runs l ON l.exp_id = a.exp_id"
                " AND l.run_number = a.run_number AND l.workflow_type = 'linear'"
                " JOIN experiments e ON e.exp_id = a.exp_id WHERE e.group_id = ?"
                " AND a.workflow_type != 'linear' AND a.status = 'ok' AND l.status = 'ok'"
                " AND l.dynamic_energy_uj > 0 AND a.dynamic_energy_uj IS NOT NULL"
                " GROUP BY a.workflow_type", (g,)):
            summary.arm_tax[wf] = (n, mean_tax)
        n, mean_tax = q("SELECT COUNT(tax_percent), AVG(tax_percent) FROM "
                        "orchestration_tax_summary ots JOIN experiments e USING (exp_id) "
                        "WHERE e.group_id = ?", (g,)).fetchone()
        summary.tax_pairs, summary.mean_tax_percent = n, mean_tax
        if summary.energy_source is None:
            row = q("SELECT r.energy_source FROM runs r JOIN experiments e USING (exp_id) "
                    "WHERE e.group_id = ? AND r.energy_source IS NOT NULL LIMIT 1",
                    (g,)).fetchone()
            summary.energy_source = row[0] if row else None


def _make_progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, disable=not enabled or not console.is_terminal,
                    transient=False)


def _count_eta(done: int, total: int, elapsed_s: float) -> str:
    """'[3/18 ETA 2m10s]' from the mean time per run so far."""
    left_s = elapsed_s / done * (total - done) if done else 0.0
    minutes, seconds = divmod(int(round(left_s)), 60)
    return f"[{done}/{total} ETA {minutes}m{seconds:02d}s]"


def _run_line(key: RunKey, row: dict) -> str:
    energy = row.get("total_energy_uj")
    energy_txt = "n/a" if energy is None else f"{energy / 1e6:.3f} J"
    dyn = row.get("dynamic_energy_uj")
    dyn_txt = "" if dyn is None else f" (dynamic {dyn / 1e6:.3f} J)"
    dur = (row.get("duration_ns") or 0) / 1e9
    success = row.get("success")
    verdict = {1: "correct", 0: "wrong"}.get(success, "error" if row.get("error") else "n/a")
    return (f"{key.task} {key.provider} {key.workflow} rep {key.rep}: "
            f"{energy_txt}{dyn_txt} [{row.get('energy_source')}] {dur:.2f} s {verdict}"
            + (f" — {row['error']}" if row.get("error") else ""))


def format_summary(s: BatchSummary) -> str:
    lines = [f"batch {s.group_id}: {s.ran} run(s) now, {s.ok} ok and {s.errors} failed "
             f"in total" + (f"; energy source {s.energy_source}" if s.energy_source else "")]
    low = []
    if s.per_workflow:
        lines.append(f"  {'workflow':<9} {'runs':>5} {'mean dynamic energy':>21} {'accuracy':>14}"
                     f" {'tax vs linear':>14}")
        for wf in WORKFLOWS:
            if wf in s.per_workflow:
                n, mean_j = s.per_workflow[wf]
                val = "n/a" if mean_j is None else f"{mean_j:.4f} J"
                right, scored = s.accuracy.get(wf, (0, 0))
                acc = f"{right}/{scored} {100 * right / scored:.0f} %" if scored else "n/a"
                if scored and right / scored < 0.5:
                    low.append(wf)
                pairs, tax = s.arm_tax.get(wf, (0, None))
                tax_txt = "" if wf == "linear" else "n/a" if tax is None else f"{tax:+.1f} % ({pairs})"
                lines.append(f"  {wf:<9} {n:>5} {val:>21} {acc:>14} {tax_txt:>14}")
    if low:
        lines.append(f"  note: accuracy below 50 % ({', '.join(low)}): the tax compares arms that "
                     "mostly fail; for real numbers pass --model PATH (a 1-8 B instruct GGUF) or "
                     "--providers cloud")
    if s.tax_pairs:
        lines.append(f"  mean orchestration tax: {s.mean_tax_percent:+.1f} % over "
                     f"{s.tax_pairs} pair(s)")
    elif s.per_workflow:
        lines.append("  mean orchestration tax: n/a (no complete pair with positive linear "
                     "dynamic energy)")
    if s.saved:
        samples = store_samples.samples_root(s.db_path) / f"group_id={s.group_id}"
        lines.append(f"  data: {s.db_path} (group_id = '{s.group_id}'); samples: {samples}")
    else:
        lines.append("  data: not saved (pass --save-db to keep the database)")
    return "\n".join(lines)
