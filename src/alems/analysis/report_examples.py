"""The report's "Examples" section: for each task, one run of each arm, shown whole.

A reader should see what the arms really did before trusting their energy: for each task
(its first provider, by name) and each arm, the ok run at the median of that arm's dynamic
energy (the lower median; ties by run id — the same run every time the report is built):
its prompt and expected answer, its answer and verdict, its dynamic energy, its plan and
tool calls (from `runs.trace_json`) and its phases with their share of the run's package
energy. Reads only the group's runs and phases frames (`alems.store.reads`); the prompt comes
from the task set when it can still be loaded.
"""

from __future__ import annotations

import json
import math

from alems.analysis.blocks import Block, Folded
from alems.analysis.frames import median_run
from alems.catalog.arms import ordered_arms
from alems.errors import AlemsError

TEXT_LIMIT = 400   # characters of a prompt, answer or model text shown; the rest is cut "…"
FULL_TEXT_LIMIT = 20_000   # characters of a run's full response folded under its answer
EMPTY_PHASE_NS = 50_000   # shorter than this it prints as 0.0 ms
SHOWN_EVENTS = ("plan", "tool", "dropped", "step", "synthesis", "refusal", "answer")


def _cut(text, limit: int = TEXT_LIMIT) -> str:
    s = "" if _missing(text) else " ".join(str(text).split())
    if not s:
        return "–"
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _call(c: dict) -> str:
    if not isinstance(c, dict):
        return _cut(c, 120)
    args = c.get("input")
    args = (", ".join(f"{k}={v}" for k, v in args.items()) if isinstance(args, dict)
            else "" if args is None else str(args))
    bad = f" [malformed: {c['malformed']}]" if c.get("malformed") else ""
    return f"{c.get('name') or '?'}({_cut(args, 120)}){bad}"


def trace_lines(text, response=None) -> list[list[str]]:
    """[event, what happened] rows for the plan, tool calls, steps and model text of a trace;
    an `answer` event, or model text equal to `response`, is left to the answer row."""
    if _missing(text) or not str(text).strip():
        return [["trace", "– (none recorded)"]]
    try:
        trace = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return [["trace", f"unreadable: {_cut(text, 120)}"]]
    rows = []
    for ev in trace if isinstance(trace, list) else [trace]:
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind not in SHOWN_EVENTS or (kind in ("answer", "synthesis") and response is not None
                                        and _cut(ev.get("text")) == _cut(response)):
            continue
        if kind in ("plan", "step"):
            calls = "; ".join(_call(c) for c in ev.get("calls") or []) or "no tool calls"
            flags = [f for f in ("fallback", "truncated", "refusal") if ev.get(f)]
            if kind == "step" and ev.get("answer") is not None:
                calls += f"; answer: {_cut(ev['answer'], 120)}"
            label = ("plan" if kind == "plan"
                     else f"step {ev.get('step', '?')} ({ev.get('mode', '?')})")
            rows.append([label, calls + (f" [{', '.join(flags)}]" if flags else "")])
        elif kind == "tool":
            flag = " [error]" if ev.get("error") else ""
            rows.append([f"tool call {ev.get('step', '?')}",
                         f"{_call(ev.get('call') or {})} → {_cut(ev.get('output'), 160)}{flag}"])
        elif kind == "dropped":
            rows.append([f"dropped {ev.get('step', '?')}",
                         f"{_call(ev.get('call') or {})}: {_cut(ev.get('reason'), 160)}"])
        else:   # synthesis, refusal, answer: the model's text
            rows.append([kind, _cut(ev.get("text"))])
    return rows or [["trace", "– (no plan, tool call or answer events)"]]


def pick_example(cell):
    """`frames.median_run`, else the first ok run when none has a dynamic energy; None when
    the arm has no ok run."""
    run = median_run(cell)
    if run is not None:
        return run
    ok = cell[cell["status"] == "ok"]
    return None if ok.empty else ok.sort_values("run_id").iloc[0]


def phase_rows(phases, pkg_energy_uj) -> list[list[str]]:
    """[phase, kind, duration ms, energy J, share of the run's package energy] per phase;
    nested phases (inside a stage) are indented. An empty phase (under 0.05 ms, no energy:
    a `waiting` that never waited) is left out."""
    total = None if _missing(pkg_energy_uj) or not pkg_energy_uj else float(pkg_energy_uj)
    rows = []
    for p in phases.sort_values("seq").itertuples():
        e = None if _missing(p.energy_uj) else float(p.energy_uj)
        if p.duration_ns < EMPTY_PHASE_NS and not e:
            continue
        nested = "parent_seq" in phases and not _missing(p.parent_seq)
        rows.append([("  · " if nested else "") + str(p.name), str(p.kind),
                     f"{p.duration_ns / 1e6:.1f}", "–" if e is None else f"{e / 1e6:.4g}",
                     "–" if e is None or total is None else f"{e / total:.1%}"])
    return rows


class _Prompts:
    """Item prompts of each task set, loaded once; None where the set cannot be loaded."""

    def __init__(self) -> None:
        self._sets: dict[str, dict | None] = {}

    def get(self, task: str, item_id) -> str:
        if task not in self._sets:
            from alems.catalog.tasks import load_task_set
            try:
                self._sets[task] = {i.id: i.prompt for i in load_task_set(task).items}
            except AlemsError:
                self._sets[task] = None
        items = self._sets[task]
        if items is None:
            return f"– (task set {task!r} not loadable here)"
        if _missing(item_id) or item_id not in items:
            return f"– (item {item_id!r} not in task set {task!r})"
        return _cut(items[item_id])


def _answer_cell(answer, response):
    """The extracted answer, with the model's full text folded under it."""
    short = _cut(answer, 120)
    if _missing(response) or not str(response).strip():
        return short
    full = str(response)
    if len(full) > FULL_TEXT_LIMIT:
        full = full[:FULL_TEXT_LIMIT - 1] + "…"
    return Folded(short if short != "–" else "– (none extracted)", full)


def example_blocks(runs, phases, est_tag: str = "") -> list:
    """The Examples heading, a note on how runs were chosen, and per task × arm a table of
    facts (prompt … trace) and a table of its phases."""
    out = [Block("h2", "Examples"),
           Block("p", "For each task (first provider by name), one run per arm: the ok run at "
                      "the median of that arm's dynamic energy. Stages contain their llm, tool "
                      "and waiting phases, so phase shares overlap.")]
    prompts = _Prompts()
    for task in sorted(runs["task_name"].unique()):
        of_task = runs[runs["task_name"] == task]
        provider = sorted(of_task["provider"].unique())[0]
        cell = of_task[of_task["provider"] == provider]
        present = set(cell["workflow_type"])
        for arm in ordered_arms(present):
            run = pick_example(cell[cell["workflow_type"] == arm])
            title = f"Example: {task} / {provider} / {arm}"
            if run is None:
                out.append(Block("warn", f"{title}: no ok run to show"))
                continue
            success = run.get("success")
            verdict = "–" if _missing(success) else ("correct" if int(success) else "wrong")
            dyn = run.get("dynamic_energy_uj")
            facts = [["run", f"#{int(run['run_id'])} (repetition {int(run['run_number'])})"],
                     ["prompt", prompts.get(task, run.get("item_id"))],
                     ["expected", _cut(run.get("expected"))],
                     ["answer", _answer_cell(run.get("answer"), run.get("response"))],
                     ["verdict", verdict],
                     ["dynamic energy J", "–" if _missing(dyn) else f"{dyn / 1e6:.4g}"]]
            response = None if _missing(run.get("response")) else run.get("response")
            facts += trace_lines(run.get("trace_json"), response)
            out.append(Block("table", f"{title}{est_tag}", ["item", "value"], facts))
            mine = phases[phases["run_id"] == run["run_id"]]
            out.append(Block("table", f"Phases of run #{int(run['run_id'])} ({task} / {arm})"
                                      f"{est_tag}",
                             ["phase", "kind", "duration ms", "energy J", "share of run's pkg"],
                             phase_rows(mine, run.get("pkg_energy_uj"))))
    return out
