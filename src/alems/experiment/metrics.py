"""From one run's measurements to its `runs` row.

Inputs: the sampler's `SampleResult` (table + phases + energy), the workflow's
`WorkflowResult`, the idle `Baseline`, the scored answer and the process's own
context-switch counters. Output: `RunMetrics(columns, null_reasons)`: every metric column of
``runs`` the platform could supply; a column it could not is None and `null_reasons[column]`
says why. Nothing unavailable is ever reported as 0.

Definitions (one each, see DESIGN.md):

- run span: the sampler's start..stop (`t_start_ns`..`t_end_ns`), the workflow inside it.
- ``total_energy_uj`` = package energy over the span (`pkg`, of whichever source ran).
- ``baseline_energy_uj`` = idle package power × duration; ``dynamic_energy_uj`` = total −
  baseline (negative values kept unless clip_negative, then 0 with ``dynamic_clipped`` = 1).
- ``reasoning_energy_uj`` = core energy − idle core power × duration;
  ``orchestration_energy_uj`` = dynamic − reasoning.
- ``avg_power_watts`` = total energy ÷ duration; ``package_power_max_w`` = the highest
  package power over any window of `POWER_WINDOW_NS` (single 1 ms steps are counter noise).
- Perf counters are deltas over the span; ``ipc`` only when instructions and cycles were
  both measured; ``cache_miss_rate`` = cache_misses ÷ cache_references (a fraction).
- Thermal from ``package_temp_c``: mean (``package_temp_celsius``), first (start), max,
  delta = max − start, gradient = least-squares slope in °C/s.
- C-states: ``cstate_<STATE>_time_us`` deltas summed by class of the cpuidle state name —
  C2* → c2, C3* → c3, C4*/C5*/C6* (C6, C6S, C6-SKX …) → c6, C7* and deeper (C7s, C8, C9,
  C10) → c7. POLL and C1/C1E are shallow states with no column. Seconds, summed over CPUs.
- Scheduler: voluntary/involuntary context switches of this process (getrusage deltas, all
  threads); ``thread_migrations`` from the ``cpu_migrations`` perf counter;
  ``run_queue_length`` = mean of /proc/stat ``procs_running``; ``interrupt_rate`` =
  /proc/stat ``intr`` delta ÷ duration (per second, whole machine).
- Phase times: sums of phases of kind planning/execution/synthesis; waiting = marked
  ``waiting`` phases, or if an agentic run marked none, the span not covered by an ``llm``
  or ``tool`` phase. Linear runs have no planning/execution/synthesis: NULL, "not
  applicable".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alems.measure.names import DOMAINS

PERF_COUNTERS = ("instructions", "cycles", "cache_references", "cache_misses",
                 "branch_misses", "page_faults", "task_clock_ns")
POWER_WINDOW_NS = 10_000_000  # 10 ms
CSTATE_BUCKETS = ("c2", "c3", "c6", "c7")
NS_PER_MS = 1e6


@dataclass
class RunMetrics:
    columns: dict[str, Any] = field(default_factory=dict)
    null_reasons: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value, reason: str | None = None) -> None:
        """Store `value`; a None value needs the reason it is missing."""
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            value = None
            reason = reason or "not a finite number"
        self.columns[name] = value
        if value is None:
            self.null_reasons[name] = reason or "not measured"
        else:
            self.null_reasons.pop(name, None)


@dataclass(frozen=True)
class ProcessCounters:
    """This process's context switches so far: every thread, exited ones included, except
    `exclude_tids` (the sampler's own: Sampler.instrument_tids). Take both snapshots while
    the sampler runs, so that its threads can be told apart."""

    voluntary: int
    involuntary: int

    @staticmethod
    def now(exclude_tids=()) -> "ProcessCounters":
        from alems.measure.ctxsw import process_switches

        sw = process_switches(exclude_tids)
        return ProcessCounters(sw.voluntary, sw.involuntary)


# ---------------------------------------------------------------- table helpers

def _float_column(table: pa.Table, name: str) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    col = pc.cast(table.column(name), pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)


def _span_mask(t: np.ndarray, t0: int, t1: int) -> np.ndarray:
    return (t >= t0) & (t <= t1)


def _cumulative_delta(t: np.ndarray, values: np.ndarray | None, t0: int, t1: int) -> float | None:
    if values is None:
        return None
    v = values[_span_mask(t, t0, t1)]
    v = v[~np.isnan(v)]
    if v.size < 2:
        return None
    return float(v[-1] - v[0])


def cstate_bucket(state: str) -> str | None:
    """Map a cpuidle state name (C1E, C6, C6S, C7s, C10, C3_ACPI, POLL …) to c2/c3/c6/c7."""
    import re

    m = re.match(r"^C(\d+)", state.strip().upper())
    if not m:
        return None
    n = int(m.group(1))
    if n == 2:
        return "c2"
    if n == 3:
        return "c3"
    if 4 <= n <= 6:
        return "c6"
    if n >= 7:
        return "c7"
    return None


def _interval_union_ns(intervals: list[tuple[int, int]]) -> int:
    total = 0
    end = None
    start = None
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
    """The sampler's phases as rows (seq, parent_seq by containment, pkg energy)."""
    end_default = t_end_ns if t_end_ns is not None else result.t_end_ns
    marks = []
    for ph in result.phases or []:
        end = ph.end_ns if ph.end_ns is not None else end_default
        marks.append((int(ph.start_ns), int(end), ph))
    marks.sort(key=lambda m: (m[0], -m[1]))
    rows: list[dict] = []
    stack: list[dict] = []
    for seq, (start, end, ph) in enumerate(marks, start=1):
        while stack and not (stack[-1]["start_ns"] <= start and end <= stack[-1]["end_ns"]):
            stack.pop()
        energy = None
        try:
            energy = result.energy_uj(start, end).get("pkg")
        except Exception:  # noqa: BLE001 - a phase outside the samples has no energy
            energy = None
        row = {"seq": seq, "name": ph.name, "kind": ph.kind,
               "parent_seq": stack[-1]["seq"] if stack else None,
               "start_ns": start, "end_ns": end, "duration_ns": end - start,
               "energy_uj": None if energy is None else float(energy),
               "detail": dict(ph.detail or {})}
        rows.append(row)
        stack.append(row)
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
    t = _float_column(table, "t_ns")
    if t is None:
        t = np.zeros(0)

    m.set("t_start_ns", t0)
    m.set("t_end_ns", t1)
    m.set("duration_ns", duration_ns)
    m.set("energy_source", src, "sampler reported no energy source")

    # ---- energy
    energy = {}
    try:
        energy = result.energy_uj(t0, t1) or {}
    except Exception as exc:  # noqa: BLE001
        energy = {}
        energy_error = str(exc)
    else:
        energy_error = None
    for dom in DOMAINS:
        value = energy.get(dom)
        m.set(f"{dom}_energy_uj", None if value is None else float(value),
              energy_error or f"energy source {src!r} exposes no {dom} domain on this machine")
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
    m.set("package_power_max_w", *_peak_power(t, _float_column(table, "pkg_energy_uj"), t0, t1))

    # ---- perf counters
    counters: dict[str, float | None] = {}
    for name in PERF_COUNTERS + ("cpu_migrations",):
        if name not in table.column_names:
            counters[name] = None
            continue
        value = None
        try:
            value = result.counter_delta(name, t0, t1)
        except Exception:  # noqa: BLE001 - fall back to the table
            value = None
        if value is None:
            value = _cumulative_delta(t, _float_column(table, name), t0, t1)
        counters[name] = value
    for name in PERF_COUNTERS:
        value = counters[name]
        m.set(name, None if value is None else int(round(value)),
              f"perf counter {name} not measured (no '{name}' column: hardware/software perf "
              "events unavailable here; see `alems doctor`)")
    ins, cyc = m.columns["instructions"], m.columns["cycles"]
    if ins is not None and cyc:
        m.set("ipc", ins / cyc)
    else:
        m.set("ipc", None, "needs both instructions and cycles measured"
              + ("" if cyc is None or ins is None else " (cycles = 0)"))
    refs, misses = m.columns["cache_references"], m.columns["cache_misses"]
    if refs and misses is not None:
        m.set("cache_miss_rate", misses / refs)
    else:
        m.set("cache_miss_rate", None, "needs cache_references (> 0) and cache_misses measured")

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

    # ---- thermal
    _thermal(m, t, _float_column(table, "package_temp_c"), t0, t1)

    # ---- C-states
    _cstates(m, t, table, t0, t1)

    # ---- scheduler
    if process_before is not None and process_after is not None:
        m.set("context_switches_voluntary", process_after.voluntary - process_before.voluntary)
        m.set("context_switches_involuntary",
              process_after.involuntary - process_before.involuntary)
    else:
        for name in ("context_switches_voluntary", "context_switches_involuntary"):
            m.set(name, None, "process context-switch counters were not read")
    mig = counters.get("cpu_migrations")
    m.set("thread_migrations", None if mig is None else int(round(mig)),
          "cpu_migrations perf event not measured (see `alems doctor`)")
    procs = _float_column(table, "procs_running")
    if procs is not None:
        v = procs[_span_mask(t, t0, t1)]
        v = v[~np.isnan(v)]
        m.set("run_queue_length", float(v.mean()) if v.size else None,
              "no procs_running sample inside the run")
    else:
        m.set("run_queue_length", None, "/proc/stat procs_running not sampled")
    intr = _cumulative_delta(t, _float_column(table, "interrupts"), t0, t1)
    if intr is not None and duration_s > 0:
        m.set("interrupt_rate", intr / duration_s)
    else:
        m.set("interrupt_rate", None, "/proc/stat intr not sampled (or fewer than 2 reads)")

    # ---- agentic / workload
    for name in ("llm_calls", "tool_calls", "steps"):
        m.set(name, getattr(workflow, name, None), "no workflow result (run failed)")
    fallback = getattr(workflow, "plan_fallback", None)
    if workflow is not None and workflow_type == "linear":
        m.set("plan_fallback", None, "not applicable: linear workflow has no plan")
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
    summary = getattr(result, "summary", None) or {}
    m.set("sample_count", int(table.num_rows))
    m.set("requested_hz", summary.get("requested_hz"), "sampler summary has no requested_hz")
    span_t = t[_span_mask(t, t0, t1)] if t.size else t
    if span_t.size >= 2 and span_t[-1] > span_t[0]:
        m.set("achieved_hz", (span_t.size - 1) / ((span_t[-1] - span_t[0]) / 1e9))
    else:
        m.set("achieved_hz", summary.get("achieved_hz"), "fewer than 2 samples")
    for name in ("late_samples", "dropped_samples"):
        m.set(name, summary.get(name), f"sampler summary has no {name}")
    return m


def _peak_power(t: np.ndarray, pkg: np.ndarray | None, t0: int, t1: int):
    if pkg is None:
        return None, "no package energy column in the samples"
    mask = _span_mask(t, t0, t1) & ~np.isnan(pkg)
    tt, ee = t[mask], pkg[mask]
    if tt.size < 2 or tt[-1] - tt[0] < POWER_WINDOW_NS:
        return None, f"run shorter than the {POWER_WINDOW_NS / 1e6:g} ms power window"
    ends = np.searchsorted(tt, tt + POWER_WINDOW_NS, side="left")
    ok = ends < tt.size
    starts = np.nonzero(ok)[0]
    ends = ends[ok]
    dt = tt[ends] - tt[starts]
    power = (ee[ends] - ee[starts]) / dt * 1e3  # µJ/ns -> W
    return float(power.max()), None


def _timing(m: RunMetrics, result, workflow, workflow_type, t0: int, t1: int) -> None:
    phases = list(getattr(result, "phases", None) or [])

    def total_ms(kind: str) -> float:
        return sum(((p.end_ns if p.end_ns is not None else t1) - p.start_ns)
                   for p in phases if p.kind == kind) / NS_PER_MS

    linear = workflow_type == "linear"
    for kind in ("planning", "execution", "synthesis"):
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


def _thermal(m: RunMetrics, t: np.ndarray, temp: np.ndarray | None, t0: int, t1: int) -> None:
    names = ("package_temp_celsius", "start_temp_c", "max_temp_c", "thermal_delta_c",
             "thermal_gradient")
    if temp is None:
        for name in names:
            m.set(name, None, "no package temperature sensor readable (thermal zones / "
                              "coretemp hwmon absent)")
        return
    mask = _span_mask(t, t0, t1) & ~np.isnan(temp)
    tt, vv = t[mask], temp[mask]
    if vv.size == 0:
        for name in names:
            m.set(name, None, "no temperature read inside the run")
        return
    m.set("package_temp_celsius", float(vv.mean()))
    m.set("start_temp_c", float(vv[0]))
    m.set("max_temp_c", float(vv.max()))
    m.set("thermal_delta_c", float(vv.max() - vv[0]))
    if vv.size >= 2 and tt[-1] > tt[0]:
        x = (tt - tt[0]) / 1e9
        slope = float(np.polyfit(x, vv, 1)[0])
        m.set("thermal_gradient", slope)
    else:
        m.set("thermal_gradient", None, "fewer than 2 temperature reads in the run")


def _cstates(m: RunMetrics, t: np.ndarray, table: pa.Table, t0: int, t1: int) -> None:
    states = {}
    for name in table.column_names:
        if name.startswith("cstate_") and name.endswith("_time_us"):
            states[name[len("cstate_"):-len("_time_us")]] = name
    if not states:
        for b in CSTATE_BUCKETS:
            m.set(f"{b}_time_seconds", None, "cpuidle residency not available "
                                             "(no cpuidle states in sysfs)")
        return
    sums: dict[str, float] = {}
    seen: dict[str, bool] = {}
    for state, col in states.items():
        bucket = cstate_bucket(state)
        if bucket is None:
            continue
        seen[bucket] = True
        delta = _cumulative_delta(t, _float_column(table, col), t0, t1)
        if delta is not None:
            sums[bucket] = sums.get(bucket, 0.0) + delta / 1e6
    listed = ", ".join(sorted(states))
    for b in CSTATE_BUCKETS:
        if b in sums:
            m.set(f"{b}_time_seconds", sums[b])
        elif seen.get(b):
            m.set(f"{b}_time_seconds", None, "fewer than 2 cpuidle reads inside the run")
        else:
            m.set(f"{b}_time_seconds", None,
                  f"this CPU has no {b.upper()}-class idle state (states: {listed})")
