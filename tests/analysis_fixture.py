"""Builds a small, realistic A-LEMS database for the analysis tests.

Schema from src/alems/store/schema.sql; one Parquet file of 1 kHz samples per run
(cumulative pkg/core energy in µJ, as the sampler writes them), phases with energy
integrated from those samples, paired tax rows, a baseline. Deterministic (fixed seed).
"""

from __future__ import annotations

import atexit
import json
import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = Path(__file__).resolve().parents[1] / "src" / "alems" / "store" / "schema.sql"

IDLE_W = 5.0           # baseline package power
HZ = 1000.0
# package power (W) while the process does each kind of thing
POWER_W = {"llm": 25.0, "tool": 9.0, "waiting": 6.5}


def create_empty_db(path: Path) -> Path:
    """A database with the project's schema and no batch (via alems.store.db.connect)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from alems.store.db import connect
    except ImportError:  # store engineer's module not there: plain schema.sql
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA.read_text())
        conn.commit()
    else:
        conn = connect(path)
    conn.close()
    return path


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _linear_plan(rng):
    return [("linear", "linear", None, [("llm", "llm", rng.uniform(0.25, 0.32))])]


def _agentic_plan(rng):
    plan_llm = rng.uniform(0.20, 0.26)
    return [
        ("planning", "planning", None, [("llm", "llm", plan_llm)]),
        ("execution", "execution", None, [
            ("tool:calculator", "tool", rng.uniform(0.02, 0.04)),
            ("waiting", "waiting", rng.uniform(0.02, 0.05)),
            ("llm", "llm", rng.uniform(0.18, 0.24)),
        ]),
        ("synthesis", "synthesis", None, [
            ("waiting", "waiting", rng.uniform(0.01, 0.03)),
            ("llm", "llm", rng.uniform(0.12, 0.16)),
        ]),
    ]


def _simulate(plan, t0_ns: int, rng):
    """Samples + phase rows for a run following `plan`."""
    # piecewise-constant power over leaf segments
    segments = []   # (start_ns, end_ns, watts)
    phases = []
    t = t0_ns
    seq = 0
    for name, kind, _, children in plan:
        top_seq = seq
        phases.append(dict(seq=top_seq, name=name, kind=kind, parent_seq=None,
                           start_ns=t, end_ns=None))
        seq += 1
        for cname, ckind, dur_s in children:
            dur_ns = int(dur_s * 1e9)
            watts = POWER_W[ckind] * rng.uniform(0.93, 1.07)
            segments.append((t, t + dur_ns, watts))
            phases.append(dict(seq=seq, name=cname, kind=ckind, parent_seq=top_seq,
                               start_ns=t, end_ns=t + dur_ns))
            seq += 1
            t += dur_ns
        phases[top_seq]["end_ns"] = t
    t_end = t
    n = int((t_end - t0_ns) / 1e9 * HZ) + 1
    t_ns = t0_ns + (np.arange(n) * (1e9 / HZ)).astype(np.int64)
    t_ns[-1] = t_end
    watts = np.full(n, IDLE_W)
    for s, e, w in segments:
        watts[(t_ns >= s) & (t_ns < e)] = w
    watts = watts * (1 + rng.normal(0, 0.03, n))
    dt_s = np.diff(t_ns, prepend=t_ns[0]) / 1e9
    pkg = np.cumsum(watts * dt_s * 1e6)
    core = np.cumsum(np.maximum(watts - 3.0, 0.5) * dt_s * 1e6)
    table = pa.table({"t_ns": pa.array(t_ns, pa.int64()),
                      "pkg_energy_uj": pa.array(pkg), "core_energy_uj": pa.array(core)})
    for p in phases:
        p["duration_ns"] = p["end_ns"] - p["start_ns"]
        p["energy_uj"] = float(np.interp(p["end_ns"], t_ns, pkg) - np.interp(p["start_ns"], t_ns, pkg))
    return table, phases, t_end


def build_fixture_db(path: Path, **kw) -> Path:
    """Write (or add to) a db at `path`; returns the path. `planned_reps` > `reps` leaves
    the batch unfinished (for `status`); other keywords as for _build.

    A new database is a copy of one built once per test session for the same keywords
    (building takes seconds, copying milliseconds; every caller still gets its own files
    to change). Adding to an existing database builds in place."""
    path = Path(path)
    if path.exists():
        return _build(path, **kw)
    key = repr(sorted(kw.items()))
    master = _MASTERS.get(key)
    if master is None:
        folder = Path(tempfile.mkdtemp(prefix="alems-fixture-db-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        master = _MASTERS[key] = _build(folder / "experiments.db", **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(master, path)
    shutil.copytree(master.parent / "samples", path.parent / "samples", dirs_exist_ok=True)
    return path


_MASTERS: dict[str, Path] = {}


def _build(path: Path, *, group_id: str = "g-20260110-100000",
                     tasks=("gsm8k_basic", "factual_qa"), provider: str = "local",
                     reps: int = 4, workflows=("linear", "agentic"),
                     energy_source: str = "powercap", with_error: bool = True,
                     planned_reps: int | None = None, status: str = "completed",
                     created_at: datetime | None = None, seed: int = 7,
                     baseline_age: timedelta = timedelta(minutes=10)) -> Path:
    path = Path(path)
    if not path.exists():
        create_empty_db(path)
    rng = np.random.default_rng(seed)
    created = created_at or datetime(2026, 1, 10, 10, 0, 0, tzinfo=timezone.utc)
    planned = planned_reps or reps
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys=ON")
    order = [f"{t}|{provider}|{w}|{r}" for r in range(1, planned + 1) for t in tasks for w in workflows]
    settings = {"tasks": list(tasks), "providers": [provider], "workflows": list(workflows),
                "repetitions": planned, "seed": seed, "temperature": 0.0, "max_tokens": 256,
                "cool_down_s": 1.0, "hz": HZ, "country": "US"}
    host = {"host": "fixture-host", "kernel": "6.1.0", "cpu_model": "Fixture CPU @ 2.0GHz",
            "governor": "performance", "sources": ["powercap"] if energy_source != "estimate" else []}
    conn.execute("INSERT INTO batch_sessions (group_id, created_at, updated_at, command, settings_json,"
                 " host_json, order_json, seed, status) VALUES (?,?,?,?,?,?,?,?,?)",
                 (group_id, _iso(created), _iso(created), "alems batch --tasks " + ",".join(tasks),
                  json.dumps(settings), json.dumps(host), json.dumps(order), seed, status))
    cur = conn.execute("INSERT INTO baselines (measured_at, measured_t_ns, duration_s, repetitions,"
                       " energy_source, pkg_power_w_mean, pkg_power_w_std, core_power_w_mean,"
                       " core_power_w_std, host, governor, load_1m) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (_iso(created - baseline_age), 1_000_000_000, 10.0, 3, energy_source,
                        IDLE_W, 0.12, 2.0, 0.05, "fixture-host", "performance", 0.05))
    baseline_id = cur.lastrowid
    db_dir = path.parent
    clock = created + timedelta(seconds=5)
    t_ns = 50_000_000_000
    order_index = 0
    from alems.catalog.sustainability import footprint  # noqa: E402 (test helper)

    for task in tasks:
        cur = conn.execute("INSERT INTO experiments (group_id, task_name, provider, model, workflows,"
                           " repetitions, seed, temperature, max_tokens, country, created_at)"
                           " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (group_id, task, provider, "smollm2-135m-instruct.gguf", ",".join(workflows),
                            planned, seed, 0.0, 256, "US", _iso(created)))
        exp_id = cur.lastrowid
        for rep in range(1, reps + 1):
            run_ids = {}
            for pos, wf in enumerate(workflows if rep % 2 else tuple(reversed(workflows))):
                plan = _linear_plan(rng) if wf == "linear" else _agentic_plan(rng)
                table, phases, t_end = _simulate(plan, t_ns, rng)
                duration_ns = t_end - t_ns
                pkg = float(table["pkg_energy_uj"][-1].as_py())
                core = float(table["core_energy_uj"][-1].as_py())
                baseline_uj = IDLE_W * duration_ns / 1e3  # W * ns -> µJ: 1e-9 s * 1e6
                dynamic = max(pkg - baseline_uj, 0.0)
                errored = with_error and wf == "agentic" and task == tasks[-1] and rep == reps
                success = None if errored else int(wf == "agentic" or rep != 2)
                fp = footprint(dynamic, "US")
                cur = conn.execute(
                    "INSERT INTO runs (exp_id, workflow_type, run_number, pair_order, order_index,"
                    " item_id, status, error, started_at, t_start_ns, t_end_ns, duration_ns,"
                    " energy_source, pkg_energy_uj, core_energy_uj, total_energy_uj, baseline_id,"
                    " baseline_energy_uj, dynamic_energy_uj, dynamic_clipped, avg_power_watts,"
                    " llm_calls, tool_calls, steps, answer, expected, success, country, carbon_g,"
                    " water_ml, methane_mg, sample_count, requested_hz, achieved_hz, null_reasons)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (exp_id, wf, rep, pos, order_index, f"{task}-{rep}",
                     "error" if errored else "ok", "provider timed out" if errored else None,
                     _iso(clock), t_ns, t_end, duration_ns, energy_source, pkg, core, pkg,
                     baseline_id, baseline_uj, dynamic, 0, pkg / (duration_ns / 1e3),
                     1 if wf == "linear" else 3, 0 if wf == "linear" else 1,
                     1 if wf == "linear" else 3, "42", "42", success, "US", fp["carbon_g"],
                     fp["water_ml"], fp["methane_mg"], table.num_rows, HZ, HZ * 0.998,
                     json.dumps({"methane_mg": "no methane factor for US"})))
                run_id = cur.lastrowid
                rel = Path("samples") / f"group_id={group_id}" / f"exp_id={exp_id}" / f"run_id={run_id}.parquet"
                (db_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table.replace_schema_metadata({"energy_source": energy_source}),
                               db_dir / rel)
                conn.execute("UPDATE runs SET samples_path=? WHERE run_id=?", (rel.as_posix(), run_id))
                for p in phases:
                    conn.execute("INSERT INTO phases (run_id, seq, name, kind, parent_seq, start_ns,"
                                 " end_ns, duration_ns, energy_uj, detail_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                 (run_id, p["seq"], p["name"], p["kind"], p["parent_seq"], p["start_ns"],
                                  p["end_ns"], p["duration_ns"], p["energy_uj"], None))
                if not errored:
                    run_ids[wf] = (run_id, dynamic)
                clock += timedelta(seconds=duration_ns / 1e9 + 1.0)
                t_ns = t_end + 1_000_000_000
                order_index += 1
            if "linear" in run_ids and "agentic" in run_ids:
                (lr, le), (ar, ae) = run_ids["linear"], run_ids["agentic"]
                conn.execute("INSERT INTO orchestration_tax_summary (exp_id, run_number, linear_run_id,"
                             " agentic_run_id, linear_dynamic_energy_uj, agentic_dynamic_energy_uj,"
                             " tax_ratio, tax_percent, energy_source) VALUES (?,?,?,?,?,?,?,?,?)",
                             (exp_id, rep, lr, ar, le, ae, ae / le if le > 0 else None,
                              (ae - le) / le * 100 if le > 0 else None, energy_source))
    conn.commit()
    conn.close()
    return path


if __name__ == "__main__":  # python tests/analysis_fixture.py /tmp/x/experiments.db
    import sys

    print(build_fixture_db(Path(sys.argv[1])))
