"""Batch planning and the resume decision: pure functions, no I/O.

Order. The runs of the arms (linear, agentic, …) of one (task, provider, repetition) form a
*pair* (a set of k arms). The pairs are shuffled with the seed, and the arm order is
counterbalanced within each (task, provider) stratum: its pairs use the k rotations of the
arm list equally often (so each arm is first, second, … equally often; with 2 arms half
start with linear, half with agentic), the remainder drawn by the seed. The
plan covers repetitions 1..N regardless of --start-from, so a run keeps its place
(`runs.order_index`), its arm position (`runs.pair_order`: 0 first, 1 second, …) and its
arm set (`runs.pair_index`: the pair's position among the plan's pairs, shared by its k
arms) across resumptions; the plan is stored in `batch_sessions.order_json`. Whatever
splits the plan (--shard, the fleet's units, a resumption) splits it by `pair_index`, so
the arms of one pair always run on one machine, for any number of arms.

Resume rule. A session is identified by its group id. Running a batch again continues a
session, never repeating a stored run (ok or error) and never losing one:
- with --group-id G: session G is continued (its design — tasks, providers, workflows,
  seed, temperature, max tokens, model, rate — must match; repetitions may grow);
- without --group-id: the newest *unfinished* session in the database with the same design
  and repetitions is continued; if there is none (or --new-session is given) a new session
  starts with a fresh id (YYYYmmdd-HHMMSS-xxxx).
--start-from K skips repetitions below K in this invocation.

The caller reads the stored sessions and runs (`alems.store.sessions`) and hands them in.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from collections.abc import Iterable, Mapping

from alems import config
from alems.errors import AlemsError, UsageError
from alems.experiment import baseline as baseline_mod
from alems.measure.names import MAX_HZ, MIN_HZ

from alems.catalog.arms import AGENTIC, ARMS, DEFAULT_ARMS, LINEAR, is_custom_arm
from alems.catalog.baselines import BASELINE_MAX_AGE_S
# Batch defaults, shared by BatchConfig and the `alems batch` flags.
DEFAULT_SEED = 42
DEFAULT_MAX_TOKENS = 256
DEFAULT_N_CTX = 2048
DEFAULT_MAX_STEPS = 5
DEFAULT_MAX_TOOL_CALLS = 5
DEFAULT_QUIET_TIMEOUT_S = 300.0
DEFAULT_ARM_TIMEOUT_S = 600.0   # a custom arm's run (docs/AGENTS.md, "Timeout")


# ---------------------------------------------------------------- configuration

@dataclass
class BatchConfig:
    tasks: list[str]
    providers: list[str]
    workflows: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))
    repetitions: int = 1
    start_from: int = 1
    cool_down_s: float = 0.0
    seed: int = DEFAULT_SEED
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    group_id: str | None = None
    model: str | None = None
    cloud_model: str | None = None
    # OpenAI-compatible server of `--providers openai` (None: OPENAI_BASE_URL, else OpenAI)
    base_url: str | None = None
    # what `cloud` resolved to ("anthropic", "groq"; alems.experiment.providers.resolve_cloud),
    # set by the runner: a session never mixes two APIs under the name `cloud`
    cloud_backend: str | None = None
    threads: int | None = None       # local model: CPU threads (None = physical cores)
    n_ctx: int = DEFAULT_N_CTX       # local model: context size in tokens
    hz: float = config.DEFAULT_HZ
    sources: list[str] | None = None
    gpus: list[int] | None = None    # NVML indices; None = default (CUDA_VISIBLE_DEVICES)
    gpu_layers: int = 0              # local model: llama.cpp n_gpu_layers
    country: str = field(default_factory=config.default_country)
    db_path: Path | None = None
    save_db: bool = True
    verbose: bool = False
    baseline_duration_s: float = baseline_mod.DEFAULT_DURATION_S
    baseline_reps: int = baseline_mod.DEFAULT_REPETITIONS
    baseline_max_age_s: float = BASELINE_MAX_AGE_S
    clip_negative: bool = False
    new_session: bool = False
    max_steps: int = DEFAULT_MAX_STEPS
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS
    ray_address: str | None = None   # run on a Ray cluster (alems.experiment.fleet)
    shard: tuple[int, int] | None = None   # (K, N): only the K-th of N slices of the plan
    baseline_every_s: float | None = None   # re-measure the idle baseline this often
    require_quiet: bool = False             # wait for a quiet machine before each run
    quiet_timeout_s: float = DEFAULT_QUIET_TIMEOUT_S
    warm_up: bool = True                    # one unmeasured call per provider first
    # Running processes (a local model server) the counters also cover in every run.
    server_pids: list[int] = field(default_factory=list)
    arm_timeout_s: float = DEFAULT_ARM_TIMEOUT_S   # longest run of a custom arm
    arm_sources: dict = field(default_factory=dict)  # custom arm -> its module's file, sha256

    def design(self) -> dict:
        """What defines the experiment: must match to continue a session."""
        return {"tasks": list(self.tasks), "providers": list(self.providers),
                "workflows": list(self.workflows), "seed": self.seed,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "model": self.model, "cloud_model": self.cloud_model, "hz": self.hz,
                "base_url": self.base_url, "cloud_backend": self.cloud_backend,
                "threads": self.threads, "n_ctx": self.n_ctx,
                "sources": self.sources, "gpus": self.gpus, "gpu_layers": self.gpu_layers,
                "max_steps": self.max_steps,
                "max_tool_calls": self.max_tool_calls}

    def settings(self) -> dict:
        d = self.design()
        d.update(repetitions=self.repetitions, cool_down_s=self.cool_down_s,
                 country=self.country, clip_negative=self.clip_negative,
                 baseline_duration_s=self.baseline_duration_s,
                 baseline_reps=self.baseline_reps, baseline_max_age_s=self.baseline_max_age_s,
                 baseline_every_s=self.baseline_every_s, require_quiet=self.require_quiet,
                 quiet_timeout_s=self.quiet_timeout_s, warm_up=self.warm_up)
        if any(is_custom_arm(w) for w in self.workflows):
            d["arm_timeout_s"] = self.arm_timeout_s
            d["arm_sources"] = self.arm_sources
        if self.shard is not None:
            d["shard"] = list(self.shard)
        if self.server_pids:
            d["server_pids"] = list(self.server_pids)
        if self.start_from != 1:   # `alems status` counts the same runs as the batch
            d["start_from"] = self.start_from
        return d



def has_tax_pair(workflows) -> bool:
    """Whether a batch stores the spec's linear/agentic tax rows (orchestration_tax_summary)."""
    return {LINEAR, AGENTIC} <= set(workflows)

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


# Accepted range of every number a batch takes, checked before anything runs (inclusive
# bounds; floats must also be finite). The upper bounds keep a typo from hanging the
# machine or allocating gigabytes: the whole plan is held in memory and in order_json.
MAX_REPETITIONS = 10_000
MAX_PLANNED_RUNS = 200_000          # tasks x providers x repetitions x workflows
MAX_SEED = 2**63 - 1                # stored as a SQLite INTEGER (signed 64 bits)
MAX_COOL_DOWN_S = 3600.0
NUMBER_RANGES = {
    # flag: (attribute, low, high)
    "--repetitions": ("repetitions", 1, MAX_REPETITIONS),
    "--cool-down": ("cool_down_s", 0.0, MAX_COOL_DOWN_S),
    "--seed": ("seed", 0, MAX_SEED),
    "--temperature": ("temperature", 0.0, 2.0),
    "--max-tokens": ("max_tokens", 1, 32_768),
    "--n-ctx": ("n_ctx", 64, 131_072),
    "--hz": ("hz", MIN_HZ, MAX_HZ),
    "--baseline-duration": ("baseline_duration_s", baseline_mod.MIN_DURATION_S,
                            baseline_mod.MAX_DURATION_S),
    "--baseline-reps": ("baseline_reps", 1, baseline_mod.MAX_REPETITIONS),
    "--baseline-max-age": ("baseline_max_age_s", 0.0, 30 * 86_400.0),
    "--max-steps": ("max_steps", 1, 100),
    "--max-tool-calls": ("max_tool_calls", 0, 1_000),
    "--quiet-timeout": ("quiet_timeout_s", 0.0, 86_400.0),
    "--arm-timeout": ("arm_timeout_s", 0.001, 86_400.0),
}


def _check_range(flag: str, value, low, high) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number between {low:g} and {high:g}, "
                         f"got {value}")
    if not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise UsageError(f"{flag} must be between {low:g} and {high:g}, got {shown}")


def validate_numbers(cfg: BatchConfig) -> None:
    """Every number against NUMBER_RANGES, then the ones that depend on each other."""
    for flag, (attr, low, high) in NUMBER_RANGES.items():
        _check_range(flag, getattr(cfg, attr), low, high)
    if cfg.threads is not None:
        _check_range("--threads", cfg.threads, 1, max_threads())
    if not 1 <= cfg.start_from <= cfg.repetitions:
        raise UsageError(f"--start-from must be between 1 and --repetitions "
                         f"({cfg.repetitions}), got {cfg.start_from}")
    if cfg.baseline_every_s is not None:  # checked in minutes, as the flag takes it
        _check_range("--baseline-every", cfg.baseline_every_s / 60, 0.1, 30 * 1440.0)
    if cfg.shard is not None and not cfg.group_id:
        raise UsageError("--shard needs --group-id G, the same on every shard, so that "
                         "`alems merge` joins the shards into one session")
    bad = [w for w in cfg.workflows if w not in ARMS and not is_custom_arm(w)]
    if bad:
        raise UsageError(f"unknown workflow {bad[0]!r}; choose from: {', '.join(ARMS)}, or "
                         "name your own agent as module:callable (docs/AGENTS.md)")
    if cfg.base_url is not None and not re.match(r"https?://[^\s/]+", cfg.base_url):
        raise UsageError(f"--base-url must be an http(s) URL, got {cfg.base_url!r}; e.g. "
                         "http://127.0.0.1:8080/v1")
    planned = len(cfg.tasks) * len(cfg.providers) * len(cfg.workflows) * cfg.repetitions
    if planned > MAX_PLANNED_RUNS:
        raise UsageError(f"the batch plans {planned:,} runs, more than {MAX_PLANNED_RUNS:,}; "
                         "split it into several batches")
    if cfg.group_id is not None:
        from alems.store.samples import check_group_id  # the id names a samples folder

        check_group_id(cfg.group_id)


def max_threads() -> int:
    """--threads upper bound: the CPUs this process may run on (more only oversubscribe)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------- order

@dataclass(frozen=True)
class RunKey:
    task: str
    provider: str
    workflow: str
    rep: int                  # 1-based
    order_index: int          # position in the full plan
    pair_order: int | None    # 0: first arm of its pair, 1: second, …; None without pairs
    pair_index: int           # position of its pair (arm set) among the plan's pairs

    def as_list(self) -> list:
        return [self.task, self.provider, self.workflow, self.rep]


def arm_orders(arms, n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """`n` arm orders for the pairs of one stratum: the k rotations of `arms` (each arm
    once in each position, a Latin square) used equally often, the n mod k left over
    drawn without repetition; shuffled."""
    k = len(arms)
    rotations = [tuple(arms[(i + j) % k] for j in range(k)) for i in range(k)]
    orders = rotations * (n // k) + rng.sample(rotations, n % k)
    rng.shuffle(orders)
    return orders


def plan_order(tasks, providers, workflows, repetitions: int, seed: int) -> list[RunKey]:
    """The full, seeded, counterbalanced run order (see the module docstring): which arm
    runs first is balanced within each (task, provider) stratum, over any number of arms."""
    rng = random.Random(f"alems-batch-order|{seed}")
    arms = [w for w in ARMS if w in workflows] + [w for w in workflows if w not in ARMS]
    # (custom arms after the built-in ones, in the order given: the order is part of the
    # design, so a resumed batch plans the same pairs)
    groups: list[tuple[str, str, int, tuple[str, ...]]] = []
    for t in tasks:
        for p in providers:
            orders = arm_orders(arms, repetitions, rng)
            groups += [(t, p, r, orders[r - 1]) for r in range(1, repetitions + 1)]
    rng.shuffle(groups)
    keys: list[RunKey] = []
    for g, (t, p, r, order) in enumerate(groups):
        for pos, w in enumerate(order):
            keys.append(RunKey(t, p, w, r, len(keys), pos if len(order) > 1 else None, g))
    return keys


# ---------------------------------------------------------------- resume

def _stored_design(cfg: BatchConfig, session: Mapping) -> tuple[dict, dict]:
    """(the stored settings, their design keys) of a `batch_sessions` row."""
    old = json.loads(session["settings_json"])
    if "cloud_backend" not in old:   # stored before Groq could serve `cloud`: Anthropic
        old["cloud_backend"] = "anthropic" if "cloud" in old.get("providers", ()) else None
    return old, {k: old.get(k) for k in cfg.design()}


def choose_session(cfg: BatchConfig, named: Mapping | None,
                   unfinished: Iterable[Mapping]) -> tuple[str, bool]:
    """(group_id, resumed) by the resume rule. `named`: the stored session of
    cfg.group_id (None if absent or no --group-id); `unfinished`: the stored sessions not
    completed, newest first (ignored with --group-id or --new-session)."""
    design = json.dumps(cfg.design(), sort_keys=True)
    if cfg.group_id:
        if named is None:
            return cfg.group_id, False
        _, old_design = _stored_design(cfg, named)
        if json.dumps(old_design, sort_keys=True) != design:
            diff = [k for k in cfg.design() if old_design.get(k) != cfg.design()[k]]
            raise AlemsError(
                f"group {cfg.group_id!r} was started with different settings "
                f"({', '.join(f'{k}={old_design.get(k)!r}' for k in diff)}); repeat them "
                "to resume it, or pass a new --group-id")
        return cfg.group_id, True
    if not cfg.new_session:
        for sess in unfinished:
            old, old_design = _stored_design(cfg, sess)
            if (json.dumps(old_design, sort_keys=True) == design
                    and old.get("repetitions") == cfg.repetitions):
                return sess["group_id"], True
    return new_group_id(), False


def planned_runs(plan: list[RunKey], start_from: int) -> list[RunKey]:
    """The runs this invocation is responsible for (repetitions from --start-from on)."""
    return [k for k in plan if k.rep >= start_from]


def runs_to_do(plan: list[RunKey], start_from: int,
               done: Mapping[tuple[str, str, str, int], int]) -> list[RunKey]:
    """Planned runs without a stored row; `done` maps (task, provider, workflow, rep)."""
    return [k for k in planned_runs(plan, start_from)
            if (k.task, k.provider, k.workflow, k.rep) not in done]


# ---------------------------------------------------------------- pairs and shards

def pair_units(keys: Iterable[RunKey]) -> list[list[RunKey]]:
    """`keys` grouped by pair, in plan order, each unit's arms in their planned order."""
    units: dict[int, list[RunKey]] = {}
    for k in sorted(keys, key=lambda k: k.order_index):
        units.setdefault(k.pair_index, []).append(k)
    return list(units.values())


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' -> (K, N), 1 <= K <= N; None for None."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n)) if sep else None
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard[0] <= shard[1]:
        raise UsageError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/8), got {text!r}")
    return shard


def shard_runs(keys: list[RunKey], shard: tuple[int, int] | None) -> list[RunKey]:
    """The runs of slice K of N: whole pairs, pair i of the plan going to slice i mod N + 1,
    so every slice gets an even share of the shuffled, counterbalanced order."""
    if shard is None:
        return keys
    k, n = shard
    return [key for key in keys if key.pair_index % n == k - 1]
