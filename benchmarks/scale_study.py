"""A synthetic study of N runs for the scale benchmark (issue 23), built through the store's
own writers: sessions, experiments, a baseline, runs, phases and tax rows in SQLite
(`alems.store`), Parquet samples for a subset of runs (`store.samples.write_samples` of a
`measure.replay.synthetic_table`).

The study is 16 shard databases, as `alems batch --shard K/16` would leave them (same
session, the plan's pairs dealt out by `experiment.plan.shard_runs`), and the whole study
merged from them with `store.merge.merge`. Built once per (N, code version) under
$ALEMS_SCALE_CACHE (default ~/.cache/alems-scale) and reused.

Design: TASKS × PROVIDERS × the 3 arms, repetitions = ceil(N / 30); run values drawn from a
seeded generator (the same study every time for one N).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("gsm8k_basic", "arith_chain", "unit_conv", "date_calc", "lookup_facts")
PROVIDERS = ("local", "cloud")
GROUP_ID = "scale-study"
SHARDS = 16
SEED = 23
COUNTRY = "US"
# Samples: SAMPLE_RUNS runs (spread over the study) of SAMPLE_S seconds at SAMPLE_HZ.
SAMPLE_RUNS = int(os.environ.get("ALEMS_SCALE_SAMPLE_RUNS", "200"))
SAMPLE_S = float(os.environ.get("ALEMS_SCALE_SAMPLE_S", "10"))
SAMPLE_HZ = 1000.0
GROUPS_LIST_N = 1000   # batches in the groups-list database
# What a cached study depends on: this builder and the stored format (schema.sql holds
# the tables and indexes; a change of the writers that changes what they store changes it).
_VERSIONED = ("benchmarks/scale_study.py", "src/alems/store/schema.sql")
# A run's free text as a real batch stores it: the workflow's reply and, for the agentic
# arms, a trace of plan, steps and tool calls (a few KB each in recorded batches).
RESPONSE_CHARS = 300
TRACE_STEP = ('{"step": %d, "thought": "%s", "tool": "calculator", "input": "%d * %d", '
              '"output": "%d"}')


def code_version() -> str:
    h = hashlib.sha256()
    for rel in _VERSIONED:
        h.update((REPO / rel).read_bytes())
    h.update(f"{SAMPLE_RUNS}/{SAMPLE_S}".encode())
    return h.hexdigest()[:12]


def cache_dir(n_runs: int) -> Path:
    root = Path(os.environ.get("ALEMS_SCALE_CACHE", Path.home() / ".cache" / "alems-scale"))
    return root / f"n{n_runs}-{code_version()}"


def _phases(rng: random.Random, arm: str, t0: int, dur: int, pkg_uj: float) -> list[dict]:
    names = {"linear": [("linear", "linear")],
             "agentic": [("planning", "planning"), ("llm", "llm"), ("tool:calculator", "tool"),
                         ("execution", "execution"), ("synthesis", "synthesis")],
             "react": [("llm", "llm"), ("tool:calculator", "tool"), ("llm", "llm"),
                       ("waiting", "waiting")]}[arm]
    cuts = sorted(rng.random() for _ in range(len(names) - 1))
    edges = [0.0, *cuts, 1.0]
    out = []
    for seq, ((name, kind), a, b) in enumerate(zip(names, edges, edges[1:], strict=False),
                                                start=1):
        s, e = t0 + int(a * dur), t0 + int(b * dur)
        out.append({"seq": seq, "name": name, "kind": kind, "start_ns": s, "end_ns": e,
                    "duration_ns": e - s, "energy_uj": pkg_uj * (b - a) * 0.97,
                    "detail": {"tokens": rng.randint(5, 200)}})
    return out


def _trace(rng: random.Random, arm: str) -> str:
    steps = 0 if arm == "linear" else rng.randint(6, 12)
    body = ", ".join(TRACE_STEP % (i, "compute the next partial result " * 4, i, i + 1,
                                   i * (i + 1)) for i in range(steps))
    return '{"plan": "solve with the calculator", "steps": [' + body + "]}"


def _run_row(rng: random.Random, key, exp_id: int, baseline_id: int, t0: int, factors) -> dict:
    from alems.catalog.sustainability import footprint

    scale = {"linear": 1.0, "agentic": 2.4, "react": 1.9}[key.workflow]
    dur_ns = int(rng.uniform(0.8, 1.6) * scale * 1e9)
    power_w = rng.uniform(18.0, 26.0)
    pkg_uj = power_w * dur_ns / 1e3
    base_uj = 9.0 * dur_ns / 1e3
    dyn_uj = pkg_uj - base_uj
    ok = rng.random() > 0.01
    tokens = rng.randint(50, 400)
    row = {
        "exp_id": exp_id, "workflow_type": key.workflow, "run_number": key.rep,
        "pair_order": key.pair_order, "order_index": key.order_index,
        "pair_index": key.pair_index, "item_id": f"item-{key.rep % 50}",
        "status": "ok" if ok else "error", "error": None if ok else "provider timeout",
        "started_at": f"2026-11-{1 + key.order_index // 40000 % 28:02d}T00:00:00.000+00:00",
        "t_start_ns": t0, "t_end_ns": t0 + dur_ns, "duration_ns": dur_ns,
        "energy_source": "powercap", "pkg_energy_uj": pkg_uj, "core_energy_uj": pkg_uj * 0.7,
        "uncore_energy_uj": pkg_uj * 0.05, "dram_energy_uj": pkg_uj * 0.1,
        "total_energy_uj": pkg_uj, "baseline_id": baseline_id, "baseline_energy_uj": base_uj,
        "dynamic_energy_uj": dyn_uj, "dynamic_energy_se_uj": 0.01 * base_uj,
        "dynamic_clipped": 0, "avg_power_watts": power_w, "package_power_max_w": power_w * 1.3,
        "instructions": int(dur_ns * 2.1), "cycles": int(dur_ns * 1.4), "ipc": 1.5,
        "prompt_tokens": tokens // 3, "completion_tokens": tokens - tokens // 3,
        "total_tokens": tokens, "energy_per_token_uj": dyn_uj / tokens,
        "llm_calls": 1 if key.workflow == "linear" else 3, "tool_calls": rng.randint(0, 3),
        "steps": rng.randint(1, 6), "answer": str(key.rep), "expected": str(key.rep),
        "success": (1 if rng.random() < 0.8 else 0) if ok else None,
        "response": ("Working through it step by step. " * 12)[:RESPONSE_CHARS - 20]
        + f" The answer is {key.rep}.", "trace_json": _trace(rng, key.workflow),
        "country": COUNTRY, "sample_count": None, "requested_hz": SAMPLE_HZ,
        "quiet": 1, "other_procs_running": 0.1, "steal_fraction": 0.0, "load_1m": 0.3,
        "null_reasons": "{}", "host": "bench-host", "cpu_model": "Synthetic CPU @ 2.0GHz",
        "start_temp_c": 45.0, "max_temp_c": 55.0,
    }
    row.update(footprint(dyn_uj, COUNTRY, factors))
    return row


def _write_shard(path: Path, keys, plan_settings: dict, sampled: set) -> None:
    """One shard database: the session, its experiments, a baseline and the keys' runs."""
    from alems.catalog.sustainability import load_factors
    from alems.measure.replay import synthetic_table
    from alems.store import db as store_db, runs as store_runs, sessions, samples
    from alems.store.baselines import insert_baseline

    factors = load_factors()
    conn = store_db.connect(path)
    with store_db.transaction(conn):
        sessions.insert_session(conn, group_id=GROUP_ID, settings=plan_settings,
                                command="scale_study", host={"host": "bench-host"},
                                order=[k.as_list() for k in keys], seed=SEED)
        exp_ids = {(t, p): sessions.get_or_create_experiment(
            conn, group_id=GROUP_ID, task_name=t, provider=p, model="synthetic",
            workflows="linear,agentic,react", repetitions=plan_settings["repetitions"],
            seed=SEED, temperature=0.0, max_tokens=256, country=COUNTRY)
            for t in TASKS for p in PROVIDERS}
        base_id = insert_baseline(conn, measured_at="2026-11-01T00:00:00+00:00",
                                  measured_t_ns=0, duration_s=5.0, repetitions=5,
                                  energy_source="powercap", state={"host": "bench-host"},
                                  power_w={"pkg": 9.0}, power_w_std={"pkg": 0.2})
    table = synthetic_table(duration_s=SAMPLE_S, hz=SAMPLE_HZ, power_w={"pkg": 20.0, "core": 14.0,
                            "dram": 2.0}) if sampled else None
    for start in range(0, len(keys), 2000):   # a transaction per 2 000 runs, as a long batch
        with store_db.transaction(conn):
            for key in keys[start:start + 2000]:
                rng = random.Random(f"{SEED}|{key.as_list()}")
                t0 = key.order_index * 5_000_000_000
                exp_id = exp_ids[(key.task, key.provider)]
                row = _run_row(rng, key, exp_id, base_id, t0, factors)
                phases = _phases(rng, key.workflow, t0, row["duration_ns"], row["pkg_energy_uj"])
                run_id = store_runs.next_run_id(conn)
                if key.order_index in sampled and table is not None:
                    target = samples.samples_path(path, GROUP_ID, exp_id, run_id)
                    samples.write_samples(target, table, phases=phases, run={
                        "group_id": GROUP_ID, "exp_id": exp_id, "run_id": run_id,
                        "workflow_type": key.workflow, "run_number": key.rep})
                    row.update(samples_path=samples.relative_to_db(path, target),
                               sample_count=table.num_rows)
                rid = store_runs.insert_run(conn, row)
                store_runs.insert_phases(conn, rid, phases)
                store_runs.insert_tax_if_paired(conn, exp_id, key.rep)
    with store_db.transaction(conn):
        sessions.update_session(conn, GROUP_ID, status="completed")
    conn.close()


def plan(n_runs: int):
    from alems.experiment.plan import plan_order

    reps = math.ceil(n_runs / (len(TASKS) * len(PROVIDERS) * 3))
    return reps, plan_order(list(TASKS), list(PROVIDERS), ["linear", "agentic", "react"],
                            reps, SEED)


def build(n_runs: int, log=print) -> Path:
    """The cached study folder for `n_runs`: shards/shard-K.db, study/study.db (merged),
    groups/groups.db (GROUPS_LIST_N small batches); built if absent."""
    from alems.experiment.plan import shard_runs
    from alems.store.merge import merge

    out = cache_dir(n_runs)
    if (out / "done").is_file():
        _refresh_kept(out)
        return out
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    reps, keys = plan(n_runs)
    settings = {"tasks": list(TASKS), "providers": list(PROVIDERS), "repetitions": reps,
                "workflows": ["linear", "agentic", "react"], "seed": SEED}
    step = max(1, len(keys) // max(1, SAMPLE_RUNS))
    sampled = {k.order_index for k in keys[::step][:SAMPLE_RUNS]}
    shard_paths = []
    for k in range(1, SHARDS + 1):
        p = out / "shards" / f"shard-{k}" / "shard.db"
        p.parent.mkdir(parents=True, exist_ok=True)
        _write_shard(p, shard_runs(keys, (k, SHARDS)), settings, sampled)
        shard_paths.append(p)
    t_shards = time.perf_counter() - t0
    merge(out / "study" / "study.db", shard_paths)
    t_merge = time.perf_counter() - t0 - t_shards
    keep_summaries(out / "study" / "study.db", [GROUP_ID])    # as `alems merge` ends
    t_keep = time.perf_counter() - t0 - t_shards - t_merge
    build_groups(out / "groups" / "groups.db")
    (out / "build.txt").write_text(f"runs {len(keys)} shards {t_shards:.1f} s merge "
                                   f"{t_merge:.1f} s summary kept {t_keep:.1f} s "
                                   f"total {time.perf_counter() - t0:.1f} s\n")
    (out / "done").write_text("ok\n")
    log(f"built study of {len(keys)} runs in {out}: {(out / 'build.txt').read_text().strip()}")
    return out


def keep_summaries(path: Path, group_ids) -> None:
    """What a completed batch and `alems merge` leave: each group's summary kept in the
    database (analysis.stored_summary)."""
    from alems.analysis.stored_summary import store_groups
    from alems.store import db as store_db

    conn = store_db.connect(path)
    try:
        store_groups(conn, path, group_ids)
    finally:
        conn.close()


def _refresh_kept(out: Path) -> None:
    """Kept summaries are valid for the code that built them only (code_fingerprint): a
    cached study built before a change to A-LEMS gets them rebuilt, as after a batch."""
    from alems.analysis.groups import open_db
    from alems.analysis.stored_summary import stored

    for path, gids in ((out / "study" / "study.db", [GROUP_ID]),
                       (out / "groups" / "groups.db",
                        [f"batch-{g:05d}" for g in range(GROUPS_LIST_N)])):
        conn = open_db(path)
        try:
            stale = stored(conn, gids[0]) is None
        finally:
            conn.close()
        if stale:
            keep_summaries(path, gids)


def build_groups(path: Path) -> None:
    """GROUPS_LIST_N completed batches of 6 runs each (1 task × 1 provider × 3 arms × 2)."""
    from alems.experiment.plan import plan_order
    from alems.catalog.sustainability import load_factors
    from alems.store import db as store_db, runs as store_runs, sessions
    from alems.store.baselines import insert_baseline

    factors = load_factors()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = store_db.connect(path)
    keys = plan_order(["gsm8k_basic"], ["local"], ["linear", "agentic", "react"], 2, SEED)
    with store_db.transaction(conn):
        base_id = insert_baseline(conn, measured_at="2026-11-01T00:00:00+00:00",
                                  measured_t_ns=0, duration_s=5.0, repetitions=5,
                                  energy_source="powercap", state={"host": "bench-host"},
                                  power_w={"pkg": 9.0}, power_w_std={"pkg": 0.2})
        for g in range(GROUPS_LIST_N):
            gid = f"batch-{g:05d}"
            sessions.insert_session(conn, group_id=gid, settings={"i": g}, command="scale",
                                    host={"host": "bench-host"},
                                    order=[k.as_list() for k in keys], seed=SEED)
            exp_id = sessions.get_or_create_experiment(
                conn, group_id=gid, task_name="gsm8k_basic", provider="local",
                model="synthetic", workflows="linear,agentic,react", repetitions=2, seed=SEED,
                temperature=0.0, max_tokens=256, country=COUNTRY)
            for key in keys:
                rng = random.Random(f"{g}|{key.as_list()}")
                row = _run_row(rng, key, exp_id, base_id, key.order_index * 10**9, factors)
                rid = store_runs.insert_run(conn, row)
                store_runs.insert_phases(conn, rid, _phases(rng, key.workflow, 0,
                                                            row["duration_ns"],
                                                            row["pkg_energy_uj"]))
                store_runs.insert_tax_if_paired(conn, exp_id, key.rep)
            sessions.update_session(conn, gid, status="completed")
    conn.close()
    # each batch kept its summary as it completed
    keep_summaries(path, [f"batch-{g:05d}" for g in range(GROUPS_LIST_N)])
