"""Carbon, water and methane of a run's dynamic energy from per-country grid factors.

The factors are data (``data/factors/grid_factors.csv``, units and sources in the README
beside it), overridable with a user CSV (``--factors PATH`` or ``ALEMS_FACTORS``). Nothing
here hard-codes a factor. A factor left empty in the file yields ``None``, never 0.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from alems import config
from alems.errors import AlemsError, UsageError

UJ_PER_KWH = 3.6e12  # 1 kWh = 3.6e6 J = 3.6e12 µJ

_COLUMNS = ("carbon_g_per_kwh", "water_ml_per_kwh", "methane_mg_per_kwh")
_OUTPUTS = {"carbon_g_per_kwh": "carbon_g", "water_ml_per_kwh": "water_ml",
            "methane_mg_per_kwh": "methane_mg"}


@dataclass(frozen=True)
class Factors:
    country: str
    carbon_g_per_kwh: float | None
    water_ml_per_kwh: float | None
    methane_mg_per_kwh: float | None
    source: str = ""


def default_factors_path() -> Path:
    """The shipped factor table (installed package data, else the source tree's data/)."""
    try:
        from alems.datafiles import data_path

        path = data_path("factors/grid_factors.csv")
        if path.is_file():
            return path
    except (ModuleNotFoundError, ImportError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "data" / "factors" / "grid_factors.csv"


def _number(text: str | None, *, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise AlemsError(f"{where}: {text!r} is not a number") from None
    if value < 0:
        raise AlemsError(f"{where}: factor {value} is negative")
    return value


def load_factors(path: str | os.PathLike | None = None) -> dict[str, Factors]:
    """Read a factor CSV; `path` None -> $ALEMS_FACTORS, else the shipped table."""
    if path is None:
        path = config.factors_path() or default_factors_path()
    path = Path(path)
    if not path.is_file():
        raise AlemsError(f"factor file not found: {path}; pass an existing CSV with --factors "
                         "or unset ALEMS_FACTORS")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("country", *_COLUMNS) if c not in header]
        if missing:
            raise AlemsError(f"factor file {path} lacks column(s) {', '.join(missing)}; "
                             f"expected header: country,{','.join(_COLUMNS)},source")
        table: dict[str, Factors] = {}
        for line_no, row in enumerate(reader, start=2):
            country = (row.get("country") or "").strip().upper()
            if not country:
                continue
            values = {c: _number(row.get(c), where=f"{path}:{line_no} {c}") for c in _COLUMNS}
            table[country] = Factors(country=country, source=(row.get("source") or "").strip(),
                                     **values)
    if not table:
        raise AlemsError(f"factor file {path} has no country rows")
    return table


def footprint(dynamic_energy_uj: float | None, country: str,
              factors: dict[str, Factors] | str | os.PathLike | None = None) -> dict:
    """{'carbon_g', 'water_ml', 'methane_mg'} for `dynamic_energy_uj` µJ used in `country`.

    A value is None when the energy is None or the country's factor is unknown (empty).
    """
    if factors is None or isinstance(factors, (str, os.PathLike)):
        factors = load_factors(factors)
    code = (country or "").strip().upper()
    if code not in factors:
        raise UsageError(f"no grid factors for country {country!r}; known: "
                         f"{', '.join(sorted(factors))} (add a row with --factors PATH)")
    row = factors[code]
    out: dict[str, float | None] = {}
    for column, name in _OUTPUTS.items():
        factor = getattr(row, column)
        if dynamic_energy_uj is None or factor is None:
            out[name] = None
        else:
            out[name] = per_kwh(float(dynamic_energy_uj), factor)
    return out


def per_kwh(energy_uj, factor: float):
    """`energy_uj` µJ (a float or a numpy array) × a per-kWh factor: the one formula of
    footprint(), also applied to a whole column at once (the same operations, the same
    values)."""
    return energy_uj / UJ_PER_KWH * factor


def footprint_factors(country: str, factors: dict[str, Factors]) -> dict[str, float | None]:
    """{'carbon_g', 'water_ml', 'methane_mg'} -> the country's per-kWh factor (None where
    unknown), for per_kwh over many runs; the country must be in `factors`."""
    row = factors[(country or "").strip().upper()]
    return {name: getattr(row, column) for column, name in _OUTPUTS.items()}
