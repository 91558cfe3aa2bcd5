"""`alems status`: progress of the running (or last) batch, from the database alone.

Planned runs per workflow come from the experiments rows (repetitions × each listed
workflow); the total also from batch_sessions.order_json when present. ETA = runs left
per workflow × that workflow's mean run time × the observed wall-clock overhead (cool-down,
model loading, …: elapsed wall time ÷ summed run time). A session still marked 'running'
whose batch process is gone (its lock file is not held: killed, machine rebooted) is shown
as such, without an ETA, and counts as finished for `--watch`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from alems.errors import AlemsError
from alems.analysis.groups import Group, resolve_group
from alems.store import reads
from alems.catalog.arms import ordered_arms


def _parse(text):
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def pick_group(conn: sqlite3.Connection, group_id: str | None) -> Group:
    """The given group; else the newest running batch; else the newest batch."""
    if group_id and group_id.lower() != "latest":
        return resolve_group(conn, group_id)
    return resolve_group(conn, reads.running_group_id(conn) or "latest")


def batch_status(conn: sqlite3.Connection, group: Group, db_path=None) -> dict:
    # a batch run with --start-from K plans (and `alems batch` counts) repetitions K… only
    first_rep = int((group.settings or {}).get("start_from") or 1)
    planned: dict[str, int] = {}
    last_rep = 0
    for workflows, reps in reads.planned_workflows(conn, group.group_id):
        last_rep = max(last_rep, int(reps or 0))
        for wf in [w.strip() for w in (workflows or "").split(",") if w.strip()]:
            planned[wf] = planned.get(wf, 0) + max(int(reps or 0) - first_rep + 1, 0)
    rows = reads.workflow_progress(conn, group.group_id, first_rep)
    per_wf = {}
    first = last = None
    sum_ns = 0.0
    for wf, done, errors, correct, wrong, avg_ns, tot_ns, t_first, t_last in rows:
        per_wf[wf] = {"workflow": wf, "planned": planned.get(wf), "done": int(done),
                      "errors": int(errors or 0), "correct": int(correct or 0),
                      "wrong": int(wrong or 0),
                      "mean_run_s": None if avg_ns is None else avg_ns / 1e9}
        sum_ns += tot_ns or 0
        a, b = _parse(t_first), _parse(t_last)
        first = a if first is None or (a and a < first) else first
        last = b if last is None or (b and b > last) else last
    for wf, n in planned.items():
        per_wf.setdefault(wf, {"workflow": wf, "planned": n, "done": 0, "errors": 0, "correct": 0,
                               "wrong": 0, "mean_run_s": None})
    done_total = sum(v["done"] for v in per_wf.values())
    planned_total = sum(planned.values()) if planned else None
    if group.order:
        planned_total = sum(1 for key in group.order if _rep(key) >= first_rep)
    # wall-clock overhead factor: elapsed between first and last start ÷ run time spent
    # by all runs but the last (the last one's duration is not inside that span)
    overhead = 1.0
    if first and last and done_total >= 2 and sum_ns > 0:
        elapsed_s = (last - first).total_seconds()
        mean_all_s = sum_ns / 1e9 / done_total
        spent_s = mean_all_s * (done_total - 1)
        if spent_s > 0 and elapsed_s > spent_s:
            overhead = elapsed_s / spent_s
    eta_s = 0.0
    eta_known = True
    for v in per_wf.values():
        left = max((v["planned"] or 0) - v["done"], 0)
        v["remaining"] = left
        if left:
            mean = v["mean_run_s"]
            if mean is None:  # no run of this workflow yet: use the other workflows' mean
                known = [x["mean_run_s"] for x in per_wf.values() if x["mean_run_s"] is not None]
                mean = sum(known) / len(known) if known else None
            if mean is None:
                eta_known = False
            else:
                eta_s += left * mean * overhead
    gone = False
    if group.status == "running" and db_path is not None:
        from alems.store.locks import holder_alive

        gone = holder_alive(db_path, group.group_id) is False
    finished = (group.status != "running" or gone
                or (planned_total is not None and done_total >= planned_total))
    return {"group_id": group.group_id, "status": group.status, "created_at": group.created_at,
            "first_repetition": first_rep, "last_repetition": last_rep or None,
            "planned": planned_total, "done": done_total,
            "errors": sum(v["errors"] for v in per_wf.values()),
            "wrong": sum(v["wrong"] for v in per_wf.values()),
            "workflows": [per_wf[k] for k in ordered_arms(per_wf)],   # as the batch shows them
            "last_run_started_at": last.isoformat() if last else None,
            "overhead_factor": overhead,
            "eta_s": (None if gone else 0.0 if finished else (eta_s if eta_known else None)),
            "finished": finished, "process_gone": gone}


def _rep(key) -> int:
    """The repetition of one stored run-order entry ([task, provider, workflow, rep, …])."""
    try:
        return int(key[3])
    except (TypeError, ValueError, IndexError):
        return 1


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def status_lines(st: dict) -> list[str]:
    planned = st["planned"] if st["planned"] is not None else "?"
    lines = [f"batch {st['group_id']} ({st['status']}, started {st['created_at']}): "
             f"{st['done']}/{planned} runs done"
             + (f" (repetitions {st['first_repetition']}–{st['last_repetition'] or '?'}: "
                f"--start-from {st['first_repetition']})"
                if st.get("first_repetition", 1) > 1 else "")
             + f", {st['errors']} failed, {st['wrong']} wrong answers"]
    width = max([8] + [len(v["workflow"]) for v in st["workflows"]])   # custom arms' names
    for v in st["workflows"]:
        mean = "-" if v["mean_run_s"] is None else f"{v['mean_run_s']:.2f} s"
        lines.append(f"  {v['workflow']:<{width}} "
                     f"{v['done']:>4}/{v['planned'] if v['planned'] is not None else '?':<4}"
                     f" failed {v['errors']:<3} wrong {v['wrong']:<3} mean run {mean}")
    if st.get("process_gone"):
        lines.append("  the batch process is gone (killed or the machine restarted); run the "
                     "same `alems batch` command again to resume")
    elif st["finished"]:
        if st["status"] == "interrupted":
            lines.append("  interrupted: run the same `alems batch` command again to resume")
        else:
            lines.append("  finished" if st["status"] != "running" else "  all planned runs done")
    else:
        lines.append(f"  ETA {format_duration(st['eta_s'])} (wall-clock overhead "
                     f"×{st['overhead_factor']:.2f})")
    return lines


def require_runs_table(conn: sqlite3.Connection) -> None:
    if reads.count_groups(conn) == 0:
        from alems.analysis.groups import BATCH_HINT

        raise AlemsError(f"the database has no batch sessions yet; start one with `{BATCH_HINT}`")
