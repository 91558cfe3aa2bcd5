"""What each page shows, gathered from the database through the analysis API (the same
code as `alems summary` and `alems status`) and store/dashboard_reads (the page's own
queries). Nothing here builds SQL."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from pathlib import Path
from typing import Any

from alems.errors import AlemsError, UsageError
from alems.analysis.groups import resolve_group
from alems.analysis.stored_summary import stored
from alems.analysis.samples import samples_file
from alems.analysis.status import batch_status, format_duration, pick_group
from alems.analysis.tax import tax_between
from alems.analysis.views import (ESTIMATE_TAG, HOST_COLUMNS, accuracy_per_arm, arm_tax_rows,
                                  headline_lines, headline_row, host_tax_rows, phase_arms,
                                  several_arms)
from alems.dashboard import curves as curves_mod
from alems.dashboard import figures
from alems.dashboard import group_cache as cache
from alems.store import dashboard_reads as reads

ESTIMATE = "estimate"
# counters shown on the run page, in this order, with their units in the column names
COUNTER_COLUMNS = (
    "duration_ns", "energy_source", "pkg_energy_uj", "core_energy_uj", "uncore_energy_uj",
    "dram_energy_uj", "psys_energy_uj", "baseline_energy_uj", "dynamic_energy_uj",
    "avg_power_watts", "package_power_max_w", "instructions", "cycles", "ipc",
    "cache_references", "cache_misses", "cache_miss_rate", "branch_misses", "page_faults",
    "task_clock_ns", "llm_calls", "tool_calls", "steps", "prompt_tokens", "completion_tokens",
    "total_tokens", "energy_per_token_uj", "start_temp_c", "max_temp_c",
    "context_switches_voluntary", "context_switches_involuntary", "c6_time_seconds",
    "sample_count", "requested_hz", "achieved_hz", "late_samples", "dropped_samples",
    "carbon_g", "water_ml", "methane_mg")


def energy_label(sources: list[str]) -> dict:
    """'measured (powercap)' or 'ESTIMATE', never unlabelled."""
    if not sources:
        return {"text": "unknown (no runs yet)", "estimate": False}
    if ESTIMATE in sources:
        measured = [s for s in sources if s != ESTIMATE]
        extra = f" + measured ({', '.join(measured)})" if measured else ""
        return {"text": f"ESTIMATE (CPU time × W/core){extra}", "estimate": True}
    return {"text": f"measured ({', '.join(sources)})", "estimate": False}


def _progress(st: dict) -> dict:
    planned = st["planned"]
    pct = None if not planned else min(100.0, 100.0 * st["done"] / planned)
    return {"done": st["done"], "planned": planned, "percent": pct, "errors": st["errors"],
            "eta": format_duration(st["eta_s"]), "eta_s": st["eta_s"],
            "finished": st["finished"]}


# ----------------------------------------------------------------------------- groups
# Set once the dashboard's warm-up has imported the analysis stack (pandas, scipy: seconds
# on a cold start): until then the groups list shows what it has and reloads itself.
ANALYSIS_READY = threading.Event()


def groups_page(conn, db_path: Path) -> dict:
    """Every batch with its headline tax and interval, arms, accuracy, energy source, tags
    and notes (the summaries cached per group until its runs change: `summarize`; before
    the analysis stack is loaded, only those already cached, the others `pending`)."""
    facts = reads.group_facts(conn)
    labels = reads.labels(conn)
    ready = ANALYSIS_READY.is_set()
    rows, pending = [], False
    for gid in reads.group_ids(conn):
        group = resolve_group(conn, gid)
        st = batch_status(conn, group)
        f = facts.get(gid, {})
        stamp = reads.group_stamp(conn, gid)
        hit = _summaries.get((str(db_path), gid))
        if hit is not None and hit[0] != stamp:
            hit = None   # built before the group's runs changed
        digest = None if hit is not None else stored(conn, gid, stamp, part="digest_json")
        if hit is None and digest is None and not ready:
            pending = True
        quick = cache.QUICK.get((str(db_path), gid))
        if hit is not None:
            _, summary, why = hit
            head = headline_row(summary) if summary else None
            accuracy = accuracy_per_arm(summary) if summary else []
        elif digest is not None:   # kept in the database by the batch or merge
            head, accuracy = (digest[0]["headline"], digest[0]["accuracy"]) if digest[0] \
                else (None, [])
            why = digest[1]
        elif ready and quick is not None and quick[0] == stamp:
            head, accuracy, why = quick[1]
        elif ready:
            head, accuracy, why = cache.quick_headline(conn, group)
            if len(cache.QUICK) >= SUMMARY_CACHE_MAX:
                cache.QUICK.clear()
            cache.QUICK[(str(db_path), gid)] = (stamp, (head, accuracy, why))
        else:
            head, accuracy, why = None, [], None
        rows.append({"group_id": gid, "status": group.status, "created_at": group.created_at,
                     "updated_at": group.updated_at, "progress": _progress(st),
                     "energy": energy_label(f.get("energy_sources", [])),
                     "host": group.host.get("host") or group.host.get("hostname") or "–",
                     "cpu": group.host.get("cpu_model") or "",
                     "models": f.get("models", []), "providers": f.get("providers", []),
                     "tasks": f.get("tasks", []),
                     "arms": [w["workflow"] for w in st["workflows"]],
                     "headline": head, "summary_error": why, "accuracy": accuracy,
                     "tags": labels.get(gid, {}).get("tags", []),
                     "notes": labels.get(gid, {}).get("notes", []),
                     "pending": hit is None and digest is None and not ready})
    return {"groups": rows, "pending": pending}


# ----------------------------------------------------------------------------- a group
_summaries: dict[tuple[str, str], tuple[tuple, dict | None, str | None]] = {}
# groups whose summaries a dashboard keeps (a few kB each); above it the cache is emptied,
# so a groups list longer than it rebuilt every summary on every visit (1 000 batches: 55 s
# a request with 256, issue 23)
SUMMARY_CACHE_MAX = cache.CACHE_MAX


def cached_summary(conn, db_path: Path, group,
                   stamp: tuple | None = None) -> tuple[dict | None, str | None] | None:
    """`summarize`'s answer while the group's runs are unchanged since (kept here, or
    stored in the database by its batch or merge: analysis.stored_summary), else None."""
    key = (str(db_path), group.group_id)
    stamp = stamp or reads.group_stamp(conn, group.group_id)
    hit = _summaries.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    kept = stored(conn, group.group_id, stamp)
    if kept is not None:
        _keep(key, stamp, *kept)
    return kept


def _keep(key: tuple[str, str], stamp: tuple, summary: dict | None, why: str | None) -> None:
    if len(_summaries) >= SUMMARY_CACHE_MAX:
        _summaries.clear()
    _summaries[key] = (stamp, summary, why)


def summarize(conn, db_path: Path, group,
              stamp: tuple | None = None) -> tuple[dict | None, str | None]:
    """`alems summary`'s dict for the group (same function, same defaults), or why not;
    kept until the group's runs change (reads.group_stamp), so the groups list stays fast."""
    stamp = stamp or reads.group_stamp(conn, group.group_id)
    key = (str(db_path), group.group_id)
    # one build per group at a time: a page asked for while the warm-up builds the same
    # summary waits for it instead of building it again beside it (10⁵ runs: twice ~5 s)
    with _building_lock:
        lock = _building.setdefault(key, threading.Lock())
    with lock:
        hit = cached_summary(conn, db_path, group, stamp)
        if hit is not None:
            return hit
        from alems.analysis.summary import build_summary   # pandas, scipy: seconds cold

        try:
            summary, why = build_summary(conn, db_path, group), None
        except AlemsError as exc:
            summary, why = None, str(exc)
        _keep(key, stamp, summary, why)
    return summary, why


_building: dict[tuple[str, str], threading.Lock] = {}
_building_lock = threading.Lock()


# Runs listed on one group page; the others on the next pages (?page=2, …): a page listing
# all of 10⁵ runs took seconds to render and megabytes to send (issue 23).
RUNS_PER_PAGE = 200


def page_param(text: str | None) -> int:
    """The group page's `page` parameter: a whole number ≥ 1 (1 when absent)."""
    if text is None or text == "":
        return 1
    if not text.isdigit() or int(text) < 1:
        raise AlemsError(f"page {text[:40]!r}: give a whole number from 1")
    return int(text)


def group_page(conn, db_path: Path, group_id: str, page: int = 1) -> dict:
    group = resolve_group(conn, group_id)
    st = batch_status(conn, group)
    stamp = reads.group_stamp(conn, group.group_id)
    n_runs, sources, energy_fig = cache.group_figure(conn, db_path, group, stamp)
    n_pages = max(1, -(-n_runs // RUNS_PER_PAGE))
    if page > n_pages:
        raise AlemsError(f"page {page}: group {group.group_id!r} has {n_pages} page(s) of runs")
    runs = reads.group_runs(conn, group.group_id, RUNS_PER_PAGE, (page - 1) * RUNS_PER_PAGE)
    summary, why = summarize(conn, db_path, group, stamp)
    ctx: dict[str, Any] = {"group": group, "progress": _progress(st), "runs": runs,
                           "summary": summary,
           "summary_error": why,
           "energy": energy_label(sources),
           "runs_page": {"page": page, "pages": n_pages, "n_runs": n_runs,
                         "first": (page - 1) * RUNS_PER_PAGE + 1 if runs else 0,
                         "last": (page - 1) * RUNS_PER_PAGE + len(runs)},
           "figures": {}}
    if energy_fig:
        ctx["figures"]["energy"] = energy_fig
    if summary:
        ctx["headline"] = headline_row(summary)
        ctx["accuracy"] = accuracy_per_arm(summary)
        # every arm's line (labelled CPU / all devices with GPU data), as `alems summary`
        # prints them; every arm's tax rows; each host's tax when several
        ctx["headline_lines"] = headline_lines(summary)
        ctx["estimate_tag"] = ESTIMATE_TAG if summary["estimate"] else ""
        ctx["tax_rows"], ctx["several_arms"] = arm_tax_rows(summary), several_arms(summary)
        ctx["host_columns"], ctx["host_rows"] = HOST_COLUMNS, host_tax_rows(summary)
        if summary["phases"]:   # every non-linear arm's shares
            ctx["figures"]["phases"] = figures.to_json(figures.phase_figure(summary["phases"]))
            ctx["phase_arms"] = phase_arms(summary["phases"])
    return ctx


# ----------------------------------------------------------------------------- a run
def window_param(text: str | None) -> float | None:
    """A smoothing window from the URL (`?window_ms=`): one of the offered steps, or None
    (the default for the span shown)."""
    if text in (None, "", "auto"):
        return None
    try:
        w = float(text)
    except ValueError:
        w = math.nan
    if w not in curves_mod.WINDOW_STEPS_MS:
        steps = ", ".join(f"{s:g}" for s in curves_mod.WINDOW_STEPS_MS)
        raise UsageError(f"window_ms must be one of {steps} (or auto), not {text!r}")
    return w


def run_power(db_path: Path, run: dict, t_range_s=None,
              n_out: int = curves_mod.DEFAULT_POINTS, window_ms: float | None = None,
              host_cpus: int | None = None) -> tuple[dict, str | None]:
    """Smoothed and envelope power curves of a stored run (time 0 = run start;
    `t_range_s` a window in that time), clipped to the source's ceiling, or why there are
    none. `host_cpus`: the batch host's CPUs (the ceiling of files that do not state it)."""
    path = samples_file(db_path, run.get("samples_path"))
    if path is None:
        return {}, "this run has no samples file recorded"
    if not path.is_file():
        return {}, f"samples file {path} is missing"
    t0 = run.get("t_start_ns")
    table = curves_mod.read_samples_table(path, t_range_s, t0)
    curves = curves_mod.curves_from_table(
        table, n_out, t0_ns=t0, window_ms=window_ms,
        ceilings_w=curves_mod.read_power_ceilings(path, host_cpus))
    if not curves:
        return {}, f"samples file {path.name} holds no energy counter"
    return curves, None


def _trace_list(text: str | None) -> list:
    try:
        trace = json.loads(text) if text else None
    except json.JSONDecodeError:
        return [{"event": "trace", "raw": text}]
    return [trace] if isinstance(trace, dict) else (trace if isinstance(trace, list) else [])


def _trace_events(trace: list) -> list[dict]:
    events = []
    for ev in trace:
        if not isinstance(ev, dict):
            ev = {"event": "value", "value": ev}
        fields = {k: (v if isinstance(v, str) else json.dumps(v, default=str))
                  for k, v in ev.items() if k != "event" and v not in (None, "", [], {})}
        events.append({"event": str(ev.get("event", "?")), "fields": fields})
    return events


def _text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def tool_rows(trace: list) -> list[dict]:
    """One row per tool call of the stored trace (workflows.common: events 'tool' and
    'dropped', each {step, call: {name, input, …}, output | reason, error})."""
    rows = []
    for ev in trace:
        if not isinstance(ev, dict) or ev.get("event") not in ("tool", "dropped"):
            continue
        given = ev.get("call")
        call: dict = given if isinstance(given, dict) else {}
        if ev["event"] == "dropped":
            status = f"not run: {_text(ev.get('reason'))}"
        elif ev.get("malformed"):
            status = f"malformed: {_text(call.get('malformed'))}"
        else:
            status = "failed" if ev.get("error") else "ok"
        rows.append({"step": _text(ev.get("step")), "tool": _text(call.get("name")),
                     "input": _text(call.get("input")), "output": _text(ev.get("output")),
                     "status": status})
    return rows


def run_page(conn, db_path: Path, run_id: int, window_text: str | None = None) -> dict:
    run = reads.run_detail(conn, run_id)
    if run is None:
        raise AlemsError(f"no run {run_id} in this database")
    window_ms = window_param(window_text)
    phases = reads.run_phases(conn, run_id)
    cpus = resolve_group(conn, run["group_id"]).host.get("cpus")
    curves, why = run_power(db_path, run, window_ms=window_ms,
                            host_cpus=cpus if isinstance(cpus, int) else None)
    null_reasons = {}
    with contextlib.suppress(json.JSONDecodeError):
        null_reasons = json.loads(run.get("null_reasons") or "{}")
    counters = [{"name": c, "value": run.get(c), "why_null": null_reasons.get(c)}
                for c in COUNTER_COLUMNS if c in run]
    trace = _trace_list(run.get("trace_json"))
    events = _trace_events(trace)
    energy = energy_label([run["energy_source"]] if run.get("energy_source") else [])
    fig = figures.power_figure(curves, phases, run.get("t_start_ns"),
                               title=f"Run {run_id}: power per energy domain",
                               estimate=energy["estimate"]) if curves else None
    first = next(iter(curves.values()), None)
    return {"run": run, "phases": phases, "counters": counters, "events": events,
            "plan": [e for e in events if e["event"] == "plan"],
            "tool_calls": tool_rows(trace), "energy": energy,
            "power_note": why, "figure": figures.to_json(fig) if fig else None,
            "n_samples": max((c["n_samples"] for c in curves.values()), default=0),
            "window_ms": first["window_ms"] if first else None,
            "window_chosen": window_ms is not None,
            "window_steps": curves_mod.WINDOW_STEPS_MS,
            "n_smooth": max((len(c["smooth_w"]) for c in curves.values()), default=0),
            "clipped": [{"domain": d, "n": c["clipped"], "ceiling_w": c["ceiling_w"]}
                        for d, c in curves.items() if c["clipped"]],
            "ceilings": {d: c["ceiling_w"] for d, c in curves.items()
                         if c["ceiling_w"] is not None}}


# ----------------------------------------------------------------------------- compare
def compare_page(conn, db_path: Path, a: str | None, b: str | None) -> dict:
    ctx: dict[str, Any] = {"all_groups": reads.group_ids(conn), "a": a, "b": b, "sides": [],
                           "ratio": None}
    if not a or not b:
        return ctx
    for gid in (a, b):
        group = resolve_group(conn, gid)
        summary, why = summarize(conn, db_path, group)
        sources = summary["energy_sources"] if summary else []
        ctx["sides"].append({"group": group, "summary": summary, "summary_error": why,
                             "headline": headline_row(summary) if summary else None,
                             "headline_lines": headline_lines(summary) if summary else [],
                             "tax_rows": arm_tax_rows(summary) if summary else [],
                             "accuracy": accuracy_per_arm(summary) if summary else [],
                             "energy": energy_label(sources)})
    (sa, sb) = ctx["sides"]
    ctx["ratio"] = tax_between(sa["headline"], sb["headline"],
                               same_batch=sa["group"].group_id == sb["group"].group_id)
    series = [(f"{name}: {s['group'].group_id}", s["tax_rows"])
              for name, s in zip("AB", ctx["sides"], strict=True)]
    if any(rows for _, rows in series):
        ctx["figure"] = figures.to_json(figures.compare_figure(series))
    return ctx


# ----------------------------------------------------------------------------- live
def live_state(conn, db_path: Path, group_id: str | None) -> dict:
    """Progress, ETA and the power so far of the run in progress (from its .partial
    samples stream when the batch writes one; smoothed and clipped like the run page's),
    labelled ESTIMATE where it is one, as JSON-ready data. The stream carries no phases
    (they are stored when the run ends): the page shades those of the last stored run."""
    group = pick_group(conn, group_id)
    st = batch_status(conn, group)
    from alems.store.samples import samples_root

    partial = curves_mod.newest_partial(samples_root(db_path) / f"group_id={group.group_id}")
    facts = reads.group_facts(conn).get(group.group_id, {})
    live = {"group_id": group.group_id, "status": group.status, "progress": _progress(st),
            "workflows": st["workflows"],
            "last_run": reads.latest_run_started(conn, group.group_id),
            "energy": energy_label(facts.get("energy_sources", [])),
            "curve": None, "curve_note": None}
    if partial is None:
        live["curve_note"] = ("no samples stream of a run in progress (batch between runs, "
                              "finished, or not writing .partial files): progress only")
        return live
    table = curves_mod.read_partial(partial)
    meta = (table.schema.metadata or {}) if table is not None else {}
    cpus = group.host.get("cpus")
    curves = curves_mod.curves_from_table(
        table, ceilings_w=curves_mod.ceilings_from_metadata(
            meta, cpus if isinstance(cpus, int) else None)) if table is not None else {}
    if not curves:
        live["curve_note"] = f"{partial.name}: no complete samples yet"
        return live
    source = meta.get(b"energy_source", b"").decode("utf-8", "replace")
    if source:
        live["energy"] = energy_label([source])
    live["curve"] = {d: {"t_s": c["smooth_t_s"].tolist(), "w": c["smooth_w"].tolist(),
                         "window_ms": c["window_ms"], "ceiling_w": c["ceiling_w"],
                         "clipped": c["clipped"], "n_samples": c["n_samples"]}
                     for d, c in curves.items()}
    live["curve_file"] = partial.name
    return live


def run_figure(conn, db_path: Path, run_id: int) -> str:
    """A stored run's power figure with its phases shaded (the live page's last run)."""
    ctx = run_page(conn, db_path, run_id)
    if ctx["figure"] is None:
        raise AlemsError(f"run {run_id}: {ctx['power_note']}")
    return ctx["figure"]
