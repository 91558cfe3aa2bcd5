"""Footprint from per-country factors held as data."""

import pytest

from alems.errors import AlemsError
from alems.catalog.sustainability import UJ_PER_KWH, default_factors_path, footprint, load_factors


def test_shipped_factors_have_units_and_sources():
    path = default_factors_path()
    assert path.is_file()
    header = path.read_text().splitlines()[0]
    assert header.startswith("country,carbon_g_per_kwh,water_ml_per_kwh,methane_mg_per_kwh")
    readme = (path.parent / "README.md").read_text()
    assert "g CO₂ per kWh" in readme and "389 g/kWh" in readme
    table = load_factors()
    assert {"US", "IN", "FR", "CN"} <= set(table)
    assert all(f.source for f in table.values())


def test_one_kwh_in_us_uses_the_table():
    table = load_factors()
    fp = footprint(UJ_PER_KWH, "us", table)
    assert fp["carbon_g"] == pytest.approx(table["US"].carbon_g_per_kwh)
    assert fp["water_ml"] == pytest.approx(table["US"].water_ml_per_kwh)
    # no methane factor is shipped: unknown, not zero
    assert fp["methane_mg"] is None


def test_scales_linearly_and_none_energy():
    a = footprint(1e6, "FR")
    b = footprint(2e6, "FR")
    assert b["carbon_g"] == pytest.approx(2 * a["carbon_g"])
    assert footprint(None, "FR") == {"carbon_g": None, "water_ml": None, "methane_mg": None}


def test_user_factor_file_overrides(tmp_path, monkeypatch):
    f = tmp_path / "mine.csv"
    f.write_text("country,carbon_g_per_kwh,water_ml_per_kwh,methane_mg_per_kwh,source\n"
                 "XX,100,1000,50,test\n")
    fp = footprint(UJ_PER_KWH / 2, "XX", str(f))
    assert fp == {"carbon_g": pytest.approx(50), "water_ml": pytest.approx(500),
                  "methane_mg": pytest.approx(25)}
    monkeypatch.setenv("ALEMS_FACTORS", str(f))
    assert set(load_factors()) == {"XX"}


def test_bad_factor_input(tmp_path):
    with pytest.raises(AlemsError, match="no grid factors for country"):
        footprint(1.0, "ZZ")
    bad = tmp_path / "bad.csv"
    bad.write_text("country,carbon\nUS,1\n")
    with pytest.raises(AlemsError, match="lacks column"):
        load_factors(bad)
    with pytest.raises(AlemsError, match="not found"):
        load_factors(tmp_path / "missing.csv")
