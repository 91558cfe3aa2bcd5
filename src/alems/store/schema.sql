-- A-LEMS SQLite index. One file, WAL mode. High-rate samples live in Parquet files that
-- runs.samples_path points at; nothing here is sampled faster than once per run/phase.
-- Every metric column is NULL (never 0) when the platform cannot supply it; the reason is
-- in runs.null_reasons (JSON object: column -> reason).

CREATE TABLE IF NOT EXISTS schema_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One batch session (`alems batch` invocation, or its resumption).
CREATE TABLE IF NOT EXISTS batch_sessions (
    group_id      TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,          -- ISO-8601 UTC
    updated_at    TEXT,
    command       TEXT,                   -- argv as run, for reproducibility
    settings_json TEXT NOT NULL,          -- tasks, providers, workflows, reps, seed, temperature, ...
    host_json     TEXT,                   -- host, kernel, cpu model, governor, sources available
    order_json    TEXT,                   -- planned run order (list of run keys), seeded
    seed          INTEGER,
    status        TEXT NOT NULL DEFAULT 'running'   -- running | completed | interrupted
);

-- One row per (task, provider) inside a batch session.
CREATE TABLE IF NOT EXISTS experiments (
    exp_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      TEXT NOT NULL REFERENCES batch_sessions(group_id),
    task_name     TEXT NOT NULL,
    provider      TEXT NOT NULL,          -- local | cloud
    model         TEXT,                   -- model path or name
    workflows     TEXT NOT NULL,          -- e.g. 'linear,agentic'
    repetitions   INTEGER NOT NULL,
    seed          INTEGER,
    temperature   REAL,
    max_tokens    INTEGER,
    country       TEXT,                   -- for sustainability factors
    created_at    TEXT NOT NULL,
    config_json   TEXT,
    UNIQUE (group_id, task_name, provider)
);

-- Idle power per domain, measured with the same sampler with nothing running.
CREATE TABLE IF NOT EXISTS baselines (
    baseline_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    measured_at       TEXT NOT NULL,      -- ISO-8601 UTC
    measured_t_ns     INTEGER,            -- CLOCK_MONOTONIC at measurement
    duration_s        REAL NOT NULL,      -- per repetition
    repetitions       INTEGER NOT NULL,   -- n
    energy_source     TEXT NOT NULL,      -- powercap | msr | perf | estimate
    pkg_power_w_mean    REAL, pkg_power_w_std    REAL,
    core_power_w_mean   REAL, core_power_w_std   REAL,
    uncore_power_w_mean REAL, uncore_power_w_std REAL,
    dram_power_w_mean   REAL, dram_power_w_std   REAL,
    psys_power_w_mean   REAL, psys_power_w_std   REAL,
    gpu_power_w_mean    REAL, gpu_power_w_std    REAL,   -- all measured GPUs together (NVML)
    host              TEXT,
    governor          TEXT,
    load_1m           REAL,
    state_json        TEXT                -- full machine state snapshot
);

CREATE TABLE IF NOT EXISTS runs (
    run_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    exp_id        INTEGER NOT NULL REFERENCES experiments(exp_id),
    workflow_type TEXT NOT NULL CHECK (workflow_type IN ('linear', 'agentic', 'react') OR (workflow_type GLOB '?*:?*' AND length(workflow_type) <= 100 AND workflow_type NOT GLOB '*[^A-Za-z0-9_.:]*')),
                                      -- a built-in arm, or a custom arm's module:callable (alems.catalog.arms)
    run_number    INTEGER NOT NULL,       -- repetition, 1-based
    pair_order    INTEGER,                -- 0 = this arm ran first in its pair, 1 = second, …
    order_index   INTEGER,                -- position in the batch's randomised order
    pair_index    INTEGER,                -- its pair (arm set: same task, provider, repetition) among the plan's pairs
    item_id       TEXT,                   -- task item used
    status        TEXT NOT NULL,          -- ok | error
    error         TEXT,
    started_at    TEXT NOT NULL,          -- ISO-8601 UTC
    t_start_ns    INTEGER,                -- sample clock (CLOCK_MONOTONIC)
    t_end_ns      INTEGER,
    duration_ns   INTEGER,

    -- energy (µJ), provenance and baseline
    energy_source       TEXT,             -- powercap | msr | perf | estimate
    pkg_energy_uj       REAL,
    core_energy_uj      REAL,
    uncore_energy_uj    REAL,
    dram_energy_uj      REAL,
    psys_energy_uj      REAL,
    total_energy_uj     REAL,             -- raw package energy
    baseline_id         INTEGER REFERENCES baselines(baseline_id),
    baseline_energy_uj  REAL,             -- baseline pkg power x duration
    dynamic_energy_uj   REAL,             -- total - baseline (workload energy)
    dynamic_energy_se_uj REAL,            -- its standard error from the baseline's (SE x duration)
    dynamic_clipped     INTEGER,          -- 1 when a negative dynamic energy was clipped to 0
    reasoning_energy_uj REAL,             -- core - idle core
    orchestration_energy_uj REAL,         -- workload - reasoning
    energy_per_token_uj REAL,
    energy_per_instruction_uj REAL,
    avg_power_watts     REAL,
    package_power_max_w REAL,             -- peak of instantaneous package power

    -- NVIDIA GPUs (NVML), on the same clock; NULL when no GPU was measured
    gpu_energy_uj          REAL,          -- all measured GPUs over the run span
    gpu_baseline_energy_uj REAL,          -- idle GPU power x duration
    gpu_dynamic_energy_uj  REAL,          -- gpu_energy - gpu_baseline
    gpu_names              TEXT,          -- JSON list: index, name, uuid, method per GPU
    gpu_energy_method      TEXT,          -- energy-counter | power-integrated | mixed
    gpu_layers             INTEGER,       -- llama.cpp n_gpu_layers of the local provider

    -- performance counters (measured process tree)
    instructions        INTEGER,
    cycles              INTEGER,
    ipc                 REAL,
    cache_references    INTEGER,
    cache_misses        INTEGER,
    cache_miss_rate     REAL,
    branch_misses       INTEGER,
    page_faults         INTEGER,
    task_clock_ns       INTEGER,
    instructions_per_token REAL,
    counted_pids        TEXT,             -- JSON [{pid, comm}]: server processes counted beside
                                          -- A-LEMS's own tree (--server-pid, or the one listening
                                          -- on a loopback --base-url); NULL + reason when none

    -- timing
    planning_time_ms    REAL,
    execution_time_ms   REAL,
    synthesis_time_ms   REAL,
    api_latency_ms      REAL,
    compute_time_ms     REAL,
    waiting_time_ms     REAL,

    -- thermal
    package_temp_celsius REAL,
    start_temp_c        REAL,
    max_temp_c          REAL,
    thermal_delta_c     REAL,
    thermal_gradient    REAL,             -- °C/s

    -- C-states (summed over CPUs, seconds)
    c2_time_seconds     REAL,
    c3_time_seconds     REAL,
    c6_time_seconds     REAL,
    c7_time_seconds     REAL,

    -- scheduler
    context_switches_voluntary   INTEGER,
    context_switches_involuntary INTEGER,
    thread_migrations   INTEGER,
    run_queue_length    REAL,
    interrupt_rate      REAL,             -- per second

    -- agentic / workload
    llm_calls           INTEGER,
    tool_calls          INTEGER,
    steps               INTEGER,
    plan_fallback       INTEGER,          -- 1 when the plan did not parse and the fallback ran
    complexity_level    INTEGER,
    complexity_score    REAL,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    total_tokens        INTEGER,

    -- answer and scoring
    answer              TEXT,
    expected            TEXT,
    success             INTEGER,          -- 1 correct, 0 wrong, NULL when the run errored
    response            TEXT,             -- the workflow's full final text (answer is the extracted part)
    trace_json          TEXT,             -- plan, steps, tool inputs/outputs (WorkflowResult.trace)

    -- sustainability
    country             TEXT,
    carbon_g            REAL,
    water_ml            REAL,
    methane_mg          REAL,

    -- sampling quality
    samples_path        TEXT,             -- Parquet file, relative to the db's folder
    sample_count        INTEGER,
    requested_hz        REAL,
    achieved_hz         REAL,
    late_samples        INTEGER,
    dropped_samples     INTEGER,
    max_sample_gap_ns   INTEGER,          -- longest gap between two samples
    skipped_deadlines   INTEGER,          -- sampling deadlines the sampler skipped

    -- background load over the run (alems.measure.quiet)
    other_procs_running REAL,             -- mean runnable tasks beyond ours (/proc/stat)
    steal_fraction      REAL,             -- CPU time stolen by the hypervisor ÷ CPU time
    load_1m             REAL,             -- 1-minute load average at the start
    quiet               INTEGER,          -- 1 quiet, 0 not (reason in not_quiet_reason)
    not_quiet_reason    TEXT,

    null_reasons        TEXT,             -- JSON: column -> why it is NULL

    -- the machine that ran it (a fleet spreads a batch over several)
    host                TEXT,             -- hostname
    node_id             TEXT,             -- Ray node id (NULL for a local batch)
    cpu_model           TEXT,             -- e.g. 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz'
    UNIQUE (exp_id, workflow_type, run_number)
);

-- Named, timed phases of a run on the sample clock (planning, execution, synthesis,
-- each tool call, each model call, waiting), with energy integrated from the samples.
CREATE TABLE IF NOT EXISTS phases (
    phase_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,          -- e.g. 'planning', 'tool:calculator', 'llm'
    kind          TEXT NOT NULL,          -- planning | execution | synthesis | tool | llm | waiting | linear
    parent_seq    INTEGER,
    start_ns      INTEGER NOT NULL,
    end_ns        INTEGER NOT NULL,
    duration_ns   INTEGER NOT NULL,
    energy_uj     REAL,                   -- package energy in the phase (same source as the run)
    detail_json   TEXT                    -- tokens, tool input/output, ...
);

-- One row per (linear, agentic) pair: same task, provider and repetition.
CREATE TABLE IF NOT EXISTS orchestration_tax_summary (
    pair_id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    exp_id                    INTEGER NOT NULL REFERENCES experiments(exp_id),
    run_number                INTEGER NOT NULL,
    linear_run_id             INTEGER NOT NULL REFERENCES runs(run_id),
    agentic_run_id            INTEGER NOT NULL REFERENCES runs(run_id),
    linear_dynamic_energy_uj  REAL,
    agentic_dynamic_energy_uj REAL,
    tax_ratio                 REAL,       -- agentic / linear (NULL when linear <= 0)
    tax_percent               REAL,       -- (agentic - linear) / linear * 100
    energy_source             TEXT,
    UNIQUE (exp_id, run_number)
);

-- Tags and notes people put on a batch (`alems tag GROUP TAG… --note TEXT`); the
-- dashboard shows them (read-only). A tag once per group; notes in the order written.
CREATE TABLE IF NOT EXISTS group_labels (
    label_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      TEXT NOT NULL REFERENCES batch_sessions(group_id),
    kind          TEXT NOT NULL CHECK (kind IN ('tag', 'note')),
    text          TEXT NOT NULL,
    created_at    TEXT NOT NULL,          -- ISO-8601 UTC
    UNIQUE (group_id, kind, text)
);

-- (schema 9) `alems summary`'s result for a group, stored when a batch completes and after
-- `alems merge` (analysis.stored_summary), so the dashboard and `alems summary` of a large
-- study need not rebuild it. Valid only while the group's runs are as they were
-- (`stamp_json`: store.dashboard_reads.group_stamp) and for the same code (`code`:
-- alems._version.code_fingerprint); otherwise it is rebuilt, never shown stale.
CREATE TABLE IF NOT EXISTS group_summaries (
    group_id      TEXT PRIMARY KEY REFERENCES batch_sessions(group_id),
    stamp_json    TEXT NOT NULL,
    code          TEXT NOT NULL,
    summary_json  TEXT,                   -- build_summary's dict at its defaults, or NULL…
    refusal       TEXT,                   -- …with why the group has no summary
    digest_json   TEXT,                   -- what the groups list shows of it (headline, accuracy)
    built_at      TEXT NOT NULL           -- ISO-8601 UTC
);

CREATE INDEX IF NOT EXISTS idx_experiments_group ON experiments(group_id);
CREATE INDEX IF NOT EXISTS idx_runs_exp ON runs(exp_id);
CREATE INDEX IF NOT EXISTS idx_phases_run ON phases(run_id);
-- (schema 7) a pair's arms (store.runs.insert_tax_if_paired, at every commit and merge) and
-- a run's tax row (alems export) without scanning an experiment's runs or every tax row
CREATE INDEX IF NOT EXISTS idx_runs_exp_rep ON runs(exp_id, run_number);
CREATE INDEX IF NOT EXISTS idx_tax_linear_run ON orchestration_tax_summary(linear_run_id);
CREATE INDEX IF NOT EXISTS idx_tax_agentic_run ON orchestration_tax_summary(agentic_run_id);
