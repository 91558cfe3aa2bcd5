"""ReplaySampler: deterministic samples for tests of the code above the sampler."""

from __future__ import annotations

import time

import pytest

import fakehw
from alems.errors import AlemsError
from alems.measure.replay import ReplaySampler, synthetic_table
from alems.measure.sampler import Sampler


def test_synthetic_replay_energy_per_phase():
    table = synthetic_table(5.0, 1000, {"pkg": 20.0, "dram": 2.0}, {"task_clock_ns": 1e9},
                            energy_source="powercap")
    r = ReplaySampler(table)
    with r:
        with r.phase("plan", kind="planning") as ph:
            time.sleep(0.2)
        time.sleep(0.05)
    res = r.result
    assert res.energy_source == "powercap" and res.domains == ["pkg", "dram"]
    dur = (ph.end_ns - ph.start_ns) / 1e9
    e = res.energy_uj(ph.start_ns, ph.end_ns)
    assert e["pkg"] == pytest.approx(20e6 * dur, rel=1e-6)
    assert e["dram"] == pytest.approx(2e6 * dur, rel=1e-6)
    assert res.t_start_ns <= ph.start_ns and res.t_end_ns <= time.monotonic_ns()
    assert res.summary["requested_hz"] == 1000.0
    assert res.summary["counters"]["task_clock_ns"] == pytest.approx(
        res.summary["duration_s"] * 1e9, abs=2e6)


def test_replay_of_a_recorded_parquet(fake_roots, tmp_path):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"])
    with fakehw.EnergyWriter(tree.targets):
        s = Sampler(500, sources=["powercap"], **fake_roots)
        with s:
            time.sleep(0.3)
    path = tmp_path / "rec.parquet"
    s.result.write_parquet(path)
    r = ReplaySampler(path)
    r.start()
    time.sleep(0.5)  # longer than the recording: every row is used
    res = r.stop()
    assert res.summary["samples"] == s.result.summary["samples"]
    assert res.summary["energy_j"]["pkg"] == pytest.approx(s.result.summary["energy_j"]["pkg"])
    assert res.energy_source == "powercap"


def test_replay_errors():
    with pytest.raises(AlemsError, match="cannot read samples"):
        ReplaySampler("/nonexistent.parquet")
    r = ReplaySampler(synthetic_table(1.0, 100))
    with pytest.raises(AlemsError, match="not started"):
        r.stop()


def test_write_parquet_unwritable_is_one_clear_error(tmp_path):
    r = ReplaySampler(synthetic_table(0.5, 100))
    r.start()
    res = r.stop()
    with pytest.raises(AlemsError, match="does not exist"):
        res.write_parquet(tmp_path / "no" / "such" / "x.parquet")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "x.parquet").mkdir()  # a folder where the file should go: rename fails
    with pytest.raises(AlemsError, match="cannot write"):
        res.write_parquet(ro / "x.parquet")
    assert [p.name for p in ro.iterdir()] == ["x.parquet"]  # temp file removed
