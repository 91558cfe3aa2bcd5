"""Per-run derivations over the runs frame (`alems.store.reads.runs_frame`): each run's
footprint from the grid factors, and the run shown for an arm (`median_run`)."""

from __future__ import annotations

import pandas as pd

FOOTPRINT_COLUMNS = ["carbon_g", "water_ml", "methane_mg"]


def median_run(runs: pd.DataFrame):
    """The ok run at the lower median of dynamic energy, ties by run id: the run a report
    shows for an arm (its example, its power curve), the same one every time it is built.
    None when no ok run has a dynamic energy."""
    ok = runs[(runs["status"] == "ok") & runs["dynamic_energy_uj"].notna()]
    if ok.empty:
        return None
    ok = ok.sort_values(["dynamic_energy_uj", "run_id"])
    return ok.iloc[(len(ok) - 1) // 2]


def run_footprints(runs: pd.DataFrame, country: str | None, factors=None,
                   unknown: set | None = None) -> pd.DataFrame:
    """carbon_g/water_ml/methane_mg per run: the stored values, or computed from the grid
    factors where one is missing, or for every run when `country` is given. A run whose
    country has no factor keeps NULL (its name goes into `unknown`); an unknown `country`
    raises, listing the known ones."""
    from alems.config import default_country
    from alems.catalog.sustainability import footprint, load_factors

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
