"""Idle baselines in the index: one row per measured baseline, per-domain power columns
``<domain>_power_w_mean`` / ``<domain>_power_w_std`` (plus ``gpu``: all measured GPUs).

`insert_baseline` executes only; the caller owns the transaction.
"""

from __future__ import annotations

import json
import sqlite3

from alems.measure.names import DOMAINS
from alems.store.runs import insert_row


def insert_baseline(conn: sqlite3.Connection, *, measured_at: str, measured_t_ns: int | None,
                    duration_s: float, repetitions: int, energy_source: str, state: dict,
                    power_w: dict, power_w_std: dict) -> int:
    """Store one baseline (state: host, governor, load_1m, …); returns its baseline_id."""
    row = {"measured_at": measured_at, "measured_t_ns": measured_t_ns,
           "duration_s": duration_s, "repetitions": repetitions,
           "energy_source": energy_source, "host": state.get("host"),
           "governor": state.get("governor"), "load_1m": state.get("load_1m"),
           "state_json": json.dumps(state)}
    for dom in (*DOMAINS, "gpu"):
        row[f"{dom}_power_w_mean"] = power_w.get(dom)
        row[f"{dom}_power_w_std"] = power_w_std.get(dom)
    return insert_row(conn, "baselines", row)


def latest_baseline(conn: sqlite3.Connection, energy_source: str, host: str) -> dict | None:
    """The newest baseline of (energy source, host) as a dict with baseline_id,
    measured_at, measured_t_ns, duration_s, repetitions, energy_source, state (the stored
    state, host/governor/energy_source filled from their columns where missing), power_w
    and power_w_std (domain -> W, only domains with a mean); None if there is none."""
    cur = conn.execute("SELECT * FROM baselines WHERE energy_source = ? AND host = ? "
                       "ORDER BY baseline_id DESC LIMIT 1", (energy_source, host))
    found = cur.fetchone()
    if found is None:
        return None
    row = dict(zip([d[0] for d in cur.description], found, strict=True))
    state = json.loads(row.get("state_json") or "{}")
    for key in ("host", "governor", "energy_source"):
        state.setdefault(key, row.get(key))
    power = {d: row[f"{d}_power_w_mean"] for d in (*DOMAINS, "gpu")
             if row.get(f"{d}_power_w_mean") is not None}
    return {"baseline_id": row["baseline_id"], "measured_at": row["measured_at"],
            "measured_t_ns": row.get("measured_t_ns"), "duration_s": row["duration_s"],
            "repetitions": row["repetitions"], "energy_source": row["energy_source"],
            "state": state, "power_w": power,
            "power_w_std": {d: row.get(f"{d}_power_w_std") for d in power}}
