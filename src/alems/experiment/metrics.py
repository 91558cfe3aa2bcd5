"""From one run's measurements to its `runs` row.

Inputs: the sampler's `SampleResult` (table + phases + energy), the workflow's
`WorkflowResult`, the idle `Baseline`, the scored answer and the process's own
context-switch counters. Output: `RunMetrics(columns, null_reasons)`: every metric column of
``runs`` the platform could supply; a column it could not is None and `null_reasons[column]`
says why. Nothing unavailable is ever reported as 0.

Definitions (one each, see docs/DEFINITIONS.md):

- run span: the sampler's start..stop (`t_start_ns`..`t_end_ns`), the workflow inside it.
- ``total_energy_uj`` = package energy over the span (`pkg`, of whichever source ran).
- ``baseline_energy_uj`` = idle package power × duration; ``dynamic_energy_uj`` = total −
  baseline (negative values kept unless clip_negative, then 0 with ``dynamic_clipped`` = 1).
- ``reasoning_energy_uj`` = core energy − idle core power × duration;
  ``orchestration_energy_uj`` = dynamic − reasoning.
- ``avg_power_watts`` = total energy ÷ duration.
- GPUs (NVML, same clock): ``gpu_energy_uj`` = all measured GPUs over the span;
  ``gpu_baseline_energy_uj`` = idle GPU power × duration; ``gpu_dynamic_energy_uj`` =
  the difference (never clipped); ``gpu_names`` / ``gpu_energy_method`` say which GPUs and
  whether their energy counter or integrated power was read. NULL, with the reason, when
  no GPU was measured. The CPU columns above never include the GPU.
- Perf counters, package power peak, thermal, C-states, run queue, interrupts and sampling
  quality: `alems.experiment.counter_metrics`.
- Context switches: voluntary/involuntary context switches of this process (getrusage
  deltas, all threads).
- Phase times: sums of phases of kind planning/execution/synthesis; waiting = marked
  ``waiting`` phases, or if an agentic run marked none, the span not covered by an ``llm``
  or ``tool`` phase. Linear runs have no planning/execution/synthesis: NULL, "not
  applicable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

from alems.experiment import counter_metrics as hw
from alems.experiment.run_metrics import RunMetrics
from alems.measure.names import DOMAINS
from alems.catalog.arms import ARMS, LINEAR, STAGE_KINDS

NS_PER_MS = 1e6


@dataclass(frozen=True)
class ProcessCounters:
    """This process's context switches so far: every thread, exited ones included, except
    `exclude_tids` (the sampler's own: Sampler.instrument_tids). Take both snapshots while
    the sampler runs, so that its threads can be told apart."""

    voluntary: int
    involuntary: int

    @staticmethod
    def now(exclude_tids=()) -> ProcessCounters:
        from alems.measure.ctxsw import process_switches

        sw = process_switches(exclude_tids)
        return ProcessCounters(sw.voluntary, sw.involuntary)


def _interval_union_ns(intervals: list[tuple[int, int]]) -> int:
    total = 0
    start, end = 0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            if end is not None:
                total += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if end is not None:
        total += end - start
    return total


# ---------------------------------------------------------------- phases

def phase_rows(result, t_end_ns: int | None = None) -> list[dict]:
    """The sampler's phases as rows (seq, parent_seq by containment, pkg energy): the
    rows alems.measure.phases makes, without their per-domain energies."""
    from alems.measure.result import phase_rows as rows_of

    rows = rows_of(result, t_end_ns)
    for row in rows:
        del row["domains_energy_uj"]
    return rows


# ---------------------------------------------------------------- the row

def run_metrics(result, workflow=None, *, baseline=None, workflow_type: str | None = None,
                item=None, extracted_answer: str | None = None, correct: bool | None = None,
                clip_negative: bool = False, process_before: ProcessCounters | None = None,
                process_after: ProcessCounters | None = None, country: str | None = None,
                footprint=None) -> RunMetrics:
    """Every metric column of `runs` for one run (see the module docstring)."""
    m = RunMetrics()
    src = getattr(result, "energy_source", None)
    t0, t1 = int(result.t_start_ns), int(result.t_end_ns)
    duration_ns = max(t1 - t0, 0)
    duration_s = duration_ns / 1e9
    table: pa.Table = result.table
    t = hw.sample_times(table)

    m.set("t_start_ns", t0)
    m.set("t_end_ns", t1)
    m.set("duration_ns", duration_ns)
    m.set("energy_source", src, "sampler reported no energy source")

    # ---- energy
    energy: dict = {}
    energy_error: str | None
    try:
        energy = result.energy_uj(t0, t1) or {}
    except Exception as exc:  # noqa: BLE001
        energy = {}
        energy_error = str(exc)
    else:
        energy_error = None
    null_reason = getattr(result, "energy_null_reason", None)
    for dom in DOMAINS:
        value = energy.get(dom)
        why = energy_error or (  # too few samples, or a gap that could hide a wrap
            null_reason(dom, t0, t1) if null_reason is not None and dom in energy else None)
        m.set(f"{dom}_energy_uj", None if value is None else float(value),
              why or f"energy source {src!r} exposes no {dom} domain on this machine")
    total = m.columns["pkg_energy_uj"]
    m.set("total_energy_uj", total, m.null_reasons.get("pkg_energy_uj"))

    base_power = getattr(baseline, "power_w", None) or {}
    if baseline is None:
        why_base = "no idle baseline was measured"
    elif getattr(baseline, "energy_source", src) != src:
        why_base = (f"baseline was measured with {baseline.energy_source!r}, run with {src!r}")
        base_power = {}
    else:
        why_base = "baseline has no package power"
    m.set("baseline_id", getattr(baseline, "baseline_id", None) if base_power else None,
          why_base)
    pkg_idle_w = base_power.get("pkg")
    baseline_uj = pkg_idle_w * duration_s * 1e6 if pkg_idle_w is not None else None
    m.set("baseline_energy_uj", baseline_uj, why_base)
    if total is not None and baseline_uj is not None:
        dynamic = total - baseline_uj
        clipped = 0
        if dynamic < 0 and clip_negative:
            dynamic, clipped = 0.0, 1
        m.set("dynamic_energy_uj", dynamic)
        m.set("dynamic_clipped", clipped)
    else:
        why = m.null_reasons.get("total_energy_uj") or why_base
        m.set("dynamic_energy_uj", None, why)
        m.set("dynamic_clipped", None, why)
    dynamic = m.columns["dynamic_energy_uj"]
    # The idle baseline is a mean of n windows: its standard error × duration is the
    # uncertainty it adds to dynamic energy.
    pkg_sd = (getattr(baseline, "power_w_std", None) or {}).get("pkg") if base_power else None
    n_base = getattr(baseline, "repetitions", 0) or 0
    if dynamic is not None and pkg_sd is not None and n_base >= 2:
        m.set("dynamic_energy_se_uj", pkg_sd / math.sqrt(n_base) * duration_s * 1e6)
    else:
        m.set("dynamic_energy_se_uj", None, m.null_reasons.get("dynamic_energy_uj")
              or "the baseline has one window: no standard error")

    core = m.columns["core_energy_uj"]
    core_idle_w = base_power.get("core")
    if core is not None and core_idle_w is not None:
        m.set("reasoning_energy_uj", core - core_idle_w * duration_s * 1e6)
    else:
        m.set("reasoning_energy_uj", None,
              m.null_reasons.get("core_energy_uj") if core is None
              else "baseline has no idle core power")
    reasoning = m.columns["reasoning_energy_uj"]
    if dynamic is not None and reasoning is not None:
        m.set("orchestration_energy_uj", dynamic - reasoning)
    else:
        m.set("orchestration_energy_uj", None,
              m.null_reasons.get("reasoning_energy_uj") or m.null_reasons.get("dynamic_energy_uj"))

    if total is not None and duration_ns > 0:
        m.set("avg_power_watts", total / duration_ns * 1e3)
    else:
        m.set("avg_power_watts", None, m.null_reasons.get("total_energy_uj") or "zero duration")
    pkg = hw.float_column(table, "pkg_energy_uj")
    m.set("package_power_max_w", *hw.peak_power(t, pkg, t0, t1))
    _gpu(m, result, baseline, t0, t1, duration_s)

    # ---- hardware counters
    counters = hw.perf_metrics(m, result, t, t0, t1)
    ins = m.columns["instructions"]

    # ---- tokens and efficiency
    prompt_tokens = getattr(workflow, "prompt_tokens", None)
    completion_tokens = getattr(workflow, "completion_tokens", None)
    why_tokens = ("no workflow result (run failed)" if workflow is None
                  else "provider reported no token count")
    m.set("prompt_tokens", prompt_tokens, why_tokens)
    m.set("completion_tokens", completion_tokens, why_tokens)
    total_tokens = (prompt_tokens + completion_tokens
                    if prompt_tokens is not None and completion_tokens is not None else None)
    m.set("total_tokens", total_tokens, why_tokens)
    if dynamic is not None and total_tokens:
        m.set("energy_per_token_uj", dynamic / total_tokens)
    else:
        m.set("energy_per_token_uj", None, m.null_reasons.get("dynamic_energy_uj")
              or m.null_reasons.get("total_tokens") or "zero tokens")
    if dynamic is not None and ins:
        m.set("energy_per_instruction_uj", dynamic / ins)
    else:
        m.set("energy_per_instruction_uj", None, m.null_reasons.get("dynamic_energy_uj")
              or m.null_reasons.get("instructions") or "zero instructions")
    if ins is not None and total_tokens:
        m.set("instructions_per_token", ins / total_tokens)
    else:
        m.set("instructions_per_token", None, m.null_reasons.get("instructions")
              or m.null_reasons.get("total_tokens") or "zero tokens")

    # ---- timing
    _timing(m, result, workflow, workflow_type, t0, t1)

    # ---- thermal, C-states
    hw.thermal_metrics(m, t, table, t0, t1)
    hw.cstate_metrics(m, t, table, t0, t1)

    # ---- scheduler
    if process_before is not None and process_after is not None:
        m.set("context_switches_voluntary", process_after.voluntary - process_before.voluntary)
        m.set("context_switches_involuntary",
              process_after.involuntary - process_before.involuntary)
    else:
        for name in ("context_switches_voluntary", "context_switches_involuntary"):
            m.set(name, None, "process context-switch counters were not read")
    hw.scheduler_metrics(m, t, table, counters, t0, t1)

    # ---- agentic / workload
    for name in ("llm_calls", "tool_calls", "steps"):
        m.set(name, getattr(workflow, name, None), "no workflow result (run failed)")
    fallback = getattr(workflow, "plan_fallback", None)
    if workflow is not None and workflow_type == LINEAR:
        m.set("plan_fallback", None, "not applicable: linear workflow has no plan")
    elif workflow is not None and workflow_type not in ARMS:
        m.set("plan_fallback", None, "not applicable: a custom arm's plan is its own")
    else:
        m.set("plan_fallback", None if fallback is None else int(bool(fallback)),
              "no workflow result (run failed)")
    m.set("complexity_level", getattr(item, "complexity_level", None), "task item has no level")
    m.set("complexity_score", getattr(item, "complexity_score", None), "task item has no score")

    # ---- answer
    answer_text = getattr(workflow, "answer", None)
    m.set("response", answer_text, "no workflow result (run failed)")
    m.set("answer", extracted_answer,
          "no workflow result (run failed)" if workflow is None
          else "no answer could be extracted from the response")
    m.set("expected", getattr(item, "answer", None), "no task item")
    m.set("success", None if correct is None or workflow is None else int(bool(correct)),
          "run failed; not scored")

    # ---- sustainability
    if country is not None:
        m.set("country", country)
    if dynamic is None:
        why = m.null_reasons.get("dynamic_energy_uj")
        for name in ("carbon_g", "water_ml", "methane_mg"):
            m.set(name, None, why)
    elif dynamic < 0:
        for name in ("carbon_g", "water_ml", "methane_mg"):
            m.set(name, None, "dynamic energy is negative (below the idle baseline); "
                              "footprint undefined")
    elif footprint is None:
        for name in ("carbon_g", "water_ml", "methane_mg"):
            m.set(name, None, "sustainability factors unavailable")
    else:
        try:
            fp = footprint(dynamic, country)
        except Exception as exc:  # noqa: BLE001
            fp, why = {}, f"footprint failed: {exc}"
        else:
            why = f"no factor for country {country!r} in the grid factor table"
        for name in ("carbon_g", "water_ml", "methane_mg"):
            m.set(name, fp.get(name), why)

    # ---- sampling quality
    hw.sampling_metrics(m, result, t, t0, t1)
    summary = getattr(result, "summary", None) or {}
    m.set("max_sample_gap_ns", summary.get("max_gap_ns"),
          "fewer than 2 samples" if "max_gap_ns" in summary else "sampler reported no gaps")
    m.set("skipped_deadlines", summary.get("skipped_deadlines"),
          "sampler reported no skipped deadlines")
    return m


def _gpu(m: RunMetrics, result, baseline, t0: int, t1: int, duration_s: float) -> None:
    import json

    from alems.experiment.baseline import GPU, gpu_names
    from alems.measure.gpu_sampler import energy_uj

    total, why, gpus = energy_uj(result, t0, t1)
    m.set("gpu_energy_uj", total, why)
    methods = sorted({g["method"] for g in gpus})
    m.set("gpu_names", json.dumps([{k: g.get(k) for k in ("index", "name", "uuid", "method")}
                                   for g in gpus]) if gpus else None, why)
    m.set("gpu_energy_method", (methods[0] if len(methods) == 1 else "mixed") if gpus else None,
          why)
    idle_w = (getattr(baseline, "power_w", None) or {}).get(GPU)
    if total is None:
        base_why = why
    elif baseline is None:
        base_why = "no idle baseline was measured"
    elif idle_w is None:
        base_why = "the idle baseline has no GPU power (measured without GPUs)"
    elif (getattr(baseline, "state", None) or {}).get("gpus") != gpu_names(result):
        idle_w, base_why = None, "the idle baseline measured other GPUs"
    else:
        base_why = None
    gpu_base = idle_w * duration_s * 1e6 if base_why is None and idle_w is not None else None
    m.set("gpu_baseline_energy_uj", gpu_base, base_why)
    m.set("gpu_dynamic_energy_uj",
          None if gpu_base is None or total is None else total - gpu_base, base_why)


def _timing(m: RunMetrics, result, workflow, workflow_type, t0: int, t1: int) -> None:
    phases = list(getattr(result, "phases", None) or [])

    def total_ms(kind: str) -> float:
        return sum(((p.end_ns if p.end_ns is not None else t1) - p.start_ns)
                   for p in phases if p.kind == kind) / NS_PER_MS

    linear = workflow_type == LINEAR
    for kind in STAGE_KINDS:
        name = f"{kind}_time_ms"
        if linear:
            m.set(name, None, f"not applicable: linear workflow has no {kind} phase")
        elif any(p.kind == kind for p in phases):
            m.set(name, total_ms(kind))
        else:
            m.set(name, None, f"no {kind} phase was marked (run failed before it?)")
    if any(p.kind == "waiting" for p in phases):
        m.set("waiting_time_ms", total_ms("waiting"))
    elif linear:
        m.set("waiting_time_ms", None, "no waiting phase was marked in the linear run")
    elif phases:
        busy = _interval_union_ns([(p.start_ns, p.end_ns if p.end_ns is not None else t1)
                                   for p in phases if p.kind in ("llm", "tool")])
        m.set("waiting_time_ms", max((t1 - t0) - busy, 0) / NS_PER_MS)
    else:
        m.set("waiting_time_ms", None, "no phases were marked")
    if workflow is None:
        for name in ("api_latency_ms", "compute_time_ms"):
            m.set(name, None, "no workflow result (run failed)")
    else:
        m.set("api_latency_ms", workflow.api_latency_ns / NS_PER_MS)
        m.set("compute_time_ms", workflow.compute_ns / NS_PER_MS)


