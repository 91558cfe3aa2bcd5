"""One run, split in two so that a local batch and a fleet node share the code:

- `RunExecutor.measure(key, baseline)` runs and measures one run where the model lives (this
  process for a local batch, a Ray actor on a fleet node) and returns a `MeasuredRun`: the
  run's row (no ids yet), its samples table, sampler metadata and phases. No I/O.
- `store_measured(conn, db_path, group_id, items, paired)` is the single writer: inside one
  write transaction it writes each run's Parquet file (atomic), its row and phases, and the
  pair's tax row when both arms are stored. A failure removes the files it wrote.

Every run records the machine it ran on: host, CPU model and (on a fleet) the Ray node id.
"""

from __future__ import annotations

import contextlib
import json
import platform
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alems import config
from alems.errors import AlemsError
from alems.experiment import baseline as baseline_mod
from alems.experiment.metrics import ProcessCounters, phase_rows, run_metrics
from alems.experiment.batch_hooks import watch_phases
from alems.experiment.plan import BatchConfig, RunKey
from alems.measure.attach import ServerSet, batch_servers, counted_json
from alems.measure.quiet import LoadProbe
from alems.measure.sources.base import read_text

if TYPE_CHECKING:
    from alems.measure.protocol import SamplerProtocol
from alems.store import db as store_db
from alems.store import runs as store_runs
from alems.store import samples as store_samples

LOCAL_NODE_REASON = "ran locally, not on a Ray cluster"


def read_cpu_model(proc_root: str | None = None) -> str | None:
    """The CPU's marketing name ('model name' on x86, 'Model'/'Hardware' on Arm) from
    <proc root>/cpuinfo."""
    text = read_text(str(Path(proc_root or config.proc_root()) / "cpuinfo")) or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def machine_identity(node_id: str | None = None) -> dict:
    """host, cpu_model, node_id of this process's machine (node_id: the Ray node)."""
    return {"host": socket.gethostname(), "cpu_model": read_cpu_model(), "node_id": node_id}


@dataclass
class MeasuredRun:
    key: RunKey
    row: dict             # runs columns except exp_id, run_id, samples_path, null_reasons
    null_reasons: dict
    table: object         # pyarrow.Table of samples (None when they streamed to partial_path)
    metadata: dict        # the sampler's metadata
    phases: list
    partial_path: object = None   # the Arrow IPC stream the samples are in, if streamed
    stop_batch: str | None = None  # why no further run may be measured (a custom arm's
    #                                thread could not be stopped: alems.experiment.workflows.custom)


def _default_sampler_factory(cfg: BatchConfig,
                             servers: ServerSet) -> Callable[[], SamplerProtocol]:
    from alems.measure.sampler import Sampler

    def make():  # the server processes still running as the ones checked at the start
        return Sampler(hz=cfg.hz, sources=cfg.sources, pid=None, gpus=cfg.gpus,
                       also_pids=[p["pid"] for p in servers.live()])
    return make


SWITCH_COLUMNS = {"context_switches_voluntary": "voluntary_ctxt_switches",
                  "context_switches_involuntary": "nonvoluntary_ctxt_switches"}


def count_servers(row: dict, reasons: dict, sampler, result, servers: ServerSet) -> None:
    """runs.counted_pids (the server processes this run's sampler covered, or NULL and
    why), and their context switches added to the run's."""
    counted = getattr(sampler, "also_processes", None) or []
    if counted:
        row["counted_pids"] = counted_json(counted)
        reasons.pop("counted_pids", None)
    else:
        row["counted_pids"] = None
        if servers.processes:
            gone = ", ".join(str(p["pid"]) for p in servers.processes)
            reasons["counted_pids"] = f"server process(es) {gone} no longer running at this run"
        else:
            reasons["counted_pids"] = servers.reason or (
                "no server process: the model runs in A-LEMS's own process (counted) or "
                "behind a remote API")
    switches = (getattr(result, "summary", None) or {}).get("server_process") or {}
    for column, key in SWITCH_COLUMNS.items():
        if row.get(column) is not None and key in switches:
            row[column] += int(switches[key])


class RunExecutor:
    """Loads the task sets and providers once (the model), then measures runs."""

    def __init__(self, cfg: BatchConfig, *,
                 sampler_factory: Callable[[], SamplerProtocol] | None = None,
                 provider_factory: Callable[[str], object] | None = None,
                 node_id: str | None = None, load_providers: bool = True):
        from alems.catalog.tasks import load_task_set

        self.cfg = cfg
        # Checked before the model loads: a bad --server-pid is one line, nothing measured.
        self.servers = batch_servers(cfg.server_pids, server_url(cfg),
                                     fleet=cfg.ray_address is not None)
        self.task_sets = {}
        for name in cfg.tasks:
            ts = load_task_set(name)
            if len(ts) == 0:
                raise AlemsError(f"task set {name!r} has no items")
            self.task_sets[name] = ts
        self.providers = {}
        if load_providers:
            self.providers = _make_providers(cfg, provider_factory)
        self.footprint = None
        try:
            from alems.catalog import sustainability

            factors = sustainability.load_factors()
            sustainability.footprint(0.0, cfg.country, factors)  # unknown country -> error
            self.footprint = lambda uj, country: sustainability.footprint(uj, country, factors)
        except ImportError:
            pass
        self.sampler_factory = sampler_factory or _default_sampler_factory(cfg, self.servers)
        self.identity = machine_identity(node_id)
        self.gpus: list[str] | None = None  # GPU names, known after energy_source()

    def energy_source(self) -> str:
        sampler = self.sampler_factory()
        source = getattr(sampler, "energy_source", None)
        if source:
            return source
        sampler.start()
        result = sampler.stop()
        self.gpus = baseline_mod.gpu_names(result)  # the baseline must cover these GPUs
        return result.energy_source

    def models(self) -> dict:
        return {name: (str(p.model) if getattr(p, "model", None) else None)
                for name, p in self.providers.items()}

    def measure(self, key: RunKey, base, on_phase=None, partial_path=None) -> MeasuredRun:
        """Measure one run; `on_phase(names)` hears each change of nested phase; with
        `partial_path` the samples stream there (bounded memory) instead of staying here."""
        from alems.experiment.providers import GenerationSettings
        from alems.experiment.scoring import score
        from alems.experiment.workflows import run_workflow
        from alems.experiment.workflows.custom import ArmAbandoned, ArmRaised

        cfg = self.cfg
        item = self.task_sets[key.task].item_for(key.rep - 1, cfg.seed)
        provider = self.providers[key.provider]
        settings = GenerationSettings(max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                      seed=cfg.seed)
        sampler = self.sampler_factory()
        if on_phase is not None:
            watch_phases(sampler, on_phase)
        if partial_path is not None and hasattr(sampler, "stream_to"):
            sampler.stream_to(partial_path)
        started_at = store_runs.utc_now_iso()
        sampler.start()
        load = LoadProbe().start()  # what else ran (a run on a busy machine is flagged)
        instrument = getattr(sampler, "instrument_tids", ())  # never count the sampler's threads
        before = ProcessCounters.now(instrument)
        workflow, error, stop_batch = None, None, None
        try:
            workflow = run_workflow(key.workflow, provider, item, settings, sampler,
                                    max_steps=cfg.max_steps, max_tool_calls=cfg.max_tool_calls,
                                    task=key.task, arm_timeout_s=cfg.arm_timeout_s)
        except KeyboardInterrupt:
            load.stop()
            sampler.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed run is data, the batch goes on
            error = (str(exc) if isinstance(exc, ArmRaised)   # already "Type: msg (at f:l)"
                     else f"{type(exc).__name__}: {exc}").strip()
            if isinstance(exc, ArmAbandoned):
                stop_batch = f"run {key.as_list()} was recorded as failed: {exc}"
        after = ProcessCounters.now(instrument)  # before stop(): its threads still exist
        background = load.stop()
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
        for name, (value, why) in background.items():
            metrics.set(name, value, why)
        row = {"workflow_type": key.workflow, "run_number": key.rep,
               "pair_order": key.pair_order, "order_index": key.order_index,
               "pair_index": key.pair_index,
               "item_id": item.id, "status": "ok" if error is None else "error",
               "error": error, "started_at": started_at}
        row.update(metrics.columns)
        row["gpu_layers"] = getattr(provider, "gpu_layers", None)
        if row["gpu_layers"] is None:
            metrics.null_reasons["gpu_layers"] = f"provider {key.provider!r} offloads no layers"
        row["trace_json"] = json.dumps(getattr(workflow, "trace", None), default=str) \
            if workflow is not None else None
        reasons = dict(metrics.null_reasons)
        if workflow is None:
            reasons.setdefault("trace_json", "no workflow result (run failed)")
        count_servers(row, reasons, sampler, result, self.servers)
        for column, value in self.identity.items():
            row[column] = value
            if value is None:
                reasons[column] = (LOCAL_NODE_REASON if column == "node_id"
                                   else "not readable on this machine")
        streamed = getattr(result, "partial_path", None)
        return MeasuredRun(key=key, row=row, null_reasons=reasons,
                           table=None if streamed else result.table,
                           metadata=dict(getattr(result, "metadata", None) or {}),
                           phases=phase_rows(result), partial_path=streamed,
                           stop_batch=stop_batch)


def stop_after(measured: MeasuredRun) -> None:
    """Once a stored run says no further run may be measured, stop the batch (AlemsError:
    the session is marked interrupted; rerunning the command resumes after that run)."""
    if measured.stop_batch:
        raise AlemsError(f"{measured.stop_batch}; the batch stops, as later runs would be "
                         "measured beside it. Fix the arm, then rerun the same command to "
                         "resume after that run")


def server_url(cfg: BatchConfig) -> str | None:
    """The model server whose process a batch looks for (alems.measure.attach): --base-url,
    else OPENAI_BASE_URL for `openai`, else Ollama's URL for `ollama` (a loopback URL:
    found from its port; a remote one: counted as not on this machine)."""
    if cfg.base_url:
        return cfg.base_url
    if "openai" in cfg.providers and config.openai_base_url():
        return config.openai_base_url()
    return config.ollama_base_url() if "ollama" in cfg.providers else None


def provider_options(cfg: BatchConfig, name: str) -> dict[str, Any]:
    """The batch flags a provider takes. `--model` is the local GGUF file when `local` is in
    the batch (as it always was), else the API model's name; `--cloud-model` names the
    model of `cloud`/`anthropic` first, and of an OpenAI-compatible provider when `--model`
    does not; `--base-url` goes to `openai`."""
    from alems.experiment.providers import OPENAI_COMPATIBLE

    api_model = None if "local" in cfg.providers else cfg.model
    if name == "local":
        return {"model": cfg.model, "n_threads": cfg.threads, "n_ctx": cfg.n_ctx,
                "gpu_layers": cfg.gpu_layers}
    if name in ("cloud", "anthropic"):
        return {"model": cfg.cloud_model or api_model}
    if name in OPENAI_COMPATIBLE:
        options = {"model": api_model or cfg.cloud_model}
        if name == "openai":
            options["base_url"] = cfg.base_url
        return options
    return {}


def _make_providers(cfg: BatchConfig, provider_factory) -> dict:
    """Every provider of the batch, checked before anything is measured: all keys first
    (milliseconds: no SDK is imported for it), then each provider's own check (SDK
    imports, the local model's load)."""
    from alems.experiment.providers import get_provider

    if provider_factory is not None:
        providers = {name: provider_factory(name) for name in cfg.providers}
    else:
        providers = {name: get_provider(name, **provider_options(cfg, name))
                     for name in cfg.providers}
    for provider in providers.values():
        check_key = getattr(provider, "check_key", None)
        if check_key is not None:
            check_key()
    for provider in providers.values():
        provider.check()
    return providers


def store_measured(conn: sqlite3.Connection, db_path: Path, group_id: str,
                   items: list[tuple[int, MeasuredRun]], *, paired: bool,
                   log: Callable[[str], None]) -> list[dict]:
    """Store (exp_id, measured run) items in one transaction (see the module docstring).
    Returns their rows; [] when another process stored one of them first (nothing kept)."""
    written: list[Path] = []
    rows: list[dict] = []
    what = [m.key.as_list() for _, m in items]
    try:
        with store_db.transaction(conn):
            for exp_id, m in items:
                run_id = store_runs.next_run_id(conn)
                path = store_samples.samples_path(db_path, group_id, exp_id, run_id)
                identity = {"group_id": group_id, "exp_id": exp_id, "run_id": run_id,
                            "task": m.key.task, "provider": m.key.provider,
                            "workflow_type": m.key.workflow, "run_number": m.key.rep,
                            "item_id": m.row.get("item_id")}
                written.append(path)
                if m.partial_path is not None:  # streamed: converted batch by batch
                    store_samples.write_streamed_samples(path, m.partial_path,
                                                         metadata=m.metadata,
                                                         phases=m.phases, run=identity)
                else:
                    store_samples.write_samples(path, m.table, metadata=m.metadata,
                                                phases=m.phases, run=identity)
                row = dict(m.row, exp_id=exp_id, run_id=run_id,
                           samples_path=store_samples.relative_to_db(db_path, path),
                           null_reasons=json.dumps(m.null_reasons, sort_keys=True))
                store_runs.insert_run(conn, row)
                store_runs.insert_phases(conn, run_id, m.phases)
                if paired:
                    store_runs.insert_tax_if_paired(conn, exp_id, m.key.rep)
                rows.append(row)
    except BaseException as exc:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
            log(f"run(s) {what} were stored meanwhile by another process; kept those")
            return []
        if isinstance(exc, OSError):
            raise AlemsError(f"cannot write the samples of run(s) {what} under "
                             f"{store_samples.samples_root(db_path)}: "
                             f"{exc.strerror or exc}; free space or choose another --db; "
                             "rerun the same command to resume") from None
        if isinstance(exc, sqlite3.Error):
            raise AlemsError(f"cannot store run(s) {what} in {db_path}: {exc}; "
                             "rerun the same command to resume") from None
        raise
    return rows
