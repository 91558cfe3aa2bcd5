"""Per-run derivations over the runs frame (`alems.store.reads.runs_frame`): each run's
footprint from the grid factors, and the run shown for an arm (`median_run`)."""

from __future__ import annotations

import numpy as np
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
    from alems.catalog.sustainability import (footprint, footprint_factors, load_factors,
                                              per_kwh)

    out = runs[FOOTPRINT_COLUMNS].astype(float).copy()
    need = out.isna().any(axis=1) | (country is not None)
    if not need.any():
        return out
    table = factors if isinstance(factors, dict) else load_factors(factors)
    if country is not None and country.strip().upper() not in table:
        footprint(0.0, country, table)   # raises: unknown country, listing the known ones
    # Rows grouped by country, each group computed as one array (per_kwh: footprint()'s
    # formula): a per-row loop cost ~0.5 ms a run, seconds at 10⁴ runs (issue 23).
    run_country, exp_country = runs["country"].tolist(), runs["exp_country"].tolist()
    by_code: dict[str, list[int]] = {}
    fallback = None
    for pos in np.flatnonzero(need.to_numpy()):
        c = country or run_country[pos] or exp_country[pos]
        if not c:
            fallback = fallback or default_country()
            c = fallback
        code = str(c).strip().upper()
        if code not in table:
            if unknown is not None:
                unknown.add(str(c))
            continue
        by_code.setdefault(code, []).append(int(pos))
    energy_uj = runs["dynamic_energy_uj"].astype(float).to_numpy()
    for code, rows in by_code.items():
        at = np.asarray(rows)
        for k, factor in footprint_factors(code, table).items():
            values = (np.full(len(at), np.nan) if factor is None
                      else per_kwh(energy_uj[at], factor))
            col = out[k].to_numpy(copy=True)
            keep = np.zeros(len(at), dtype=bool) if country is not None else ~np.isnan(col[at])
            col[at] = np.where(keep, col[at], values)
            out[k] = col
    return out
