"""The group's runs and phases as pandas DataFrames (one query each)."""

from __future__ import annotations

import sqlite3

import pandas as pd

RUN_COLUMNS_SQL = """
SELECT r.*, e.group_id, e.task_name, e.provider, e.model, e.temperature, e.max_tokens,
       e.repetitions AS planned_repetitions, e.seed AS exp_seed, e.country AS exp_country,
       e.created_at AS exp_created_at,
       b.measured_at AS baseline_measured_at, b.energy_source AS baseline_energy_source,
       b.pkg_power_w_mean AS baseline_pkg_power_w_mean,
       b.pkg_power_w_std AS baseline_pkg_power_w_std, b.repetitions AS baseline_repetitions,
       b.duration_s AS baseline_duration_s
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
LEFT JOIN baselines b ON r.baseline_id = b.baseline_id
WHERE e.group_id = ?
ORDER BY e.task_name, e.provider, r.run_number, r.workflow_type
"""


def runs_frame(conn: sqlite3.Connection, group_id: str) -> pd.DataFrame:
    return pd.read_sql_query(RUN_COLUMNS_SQL, conn, params=(group_id,))


def phases_frame(conn: sqlite3.Connection, group_id: str) -> pd.DataFrame:
    return pd.read_sql_query(
        """SELECT p.*, r.exp_id, r.workflow_type, r.status AS run_status
           FROM phases p JOIN runs r ON p.run_id = r.run_id
           JOIN experiments e ON r.exp_id = e.exp_id
           WHERE e.group_id = ? ORDER BY p.run_id, p.seq""",
        conn, params=(group_id,))


def experiments_frame(conn: sqlite3.Connection, group_id: str) -> pd.DataFrame:
    return pd.read_sql_query("SELECT * FROM experiments WHERE group_id = ? ORDER BY exp_id",
                             conn, params=(group_id,))


FOOTPRINT_COLUMNS = ["carbon_g", "water_ml", "methane_mg"]


def run_footprints(runs: pd.DataFrame, country: str | None, factors=None,
                   unknown: set | None = None) -> pd.DataFrame:
    """carbon_g/water_ml/methane_mg per run: the stored values, or computed from the grid
    factors where one is missing, or for every run when `country` is given. A run whose
    country has no factor keeps NULL (its name goes into `unknown`); an unknown `country`
    raises, listing the known ones."""
    from alems.config import default_country
    from alems.experiment.sustainability import footprint, load_factors

    out = runs[FOOTPRINT_COLUMNS].astype(float).copy()
    need = out.isna().any(axis=1) | (country is not None)
    if not need.any():
        return out
    table = factors if isinstance(factors, dict) else load_factors(factors)
    if country is not None and country.strip().upper() not in table:
        footprint(0.0, country, table)   # raises: unknown country, listing the known ones
    for idx in runs.index[need]:
        c = country or runs.at[idx, "country"] or runs.at[idx, "exp_country"] or default_country()
        if str(c).strip().upper() not in table:
            if unknown is not None:
                unknown.add(str(c))
            continue
        energy_uj = runs.at[idx, "dynamic_energy_uj"]
        fp = footprint(None if pd.isna(energy_uj) else float(energy_uj), str(c), table)
        for k, v in fp.items():
            if country is not None or pd.isna(out.at[idx, k]):
                out.at[idx, k] = float("nan") if v is None else v
    return out
