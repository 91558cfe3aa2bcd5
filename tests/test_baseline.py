"""Idle baselines: mean/std/n per domain, storage, reuse when fresh, re-measure when stale."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import pytest

from alems.experiment import baseline as bl
from alems.errors import AlemsError
from alems.store import db as store_db

from _fake_sampling import idle_sampler


class CountingFactory:
    """Samplers whose idle package power follows `watts` (one value per window)."""

    def __init__(self, watts, core=None, source="powercap"):
        self.watts = list(watts)
        self.core = core
        self.source = source
        self.made = 0

    def __call__(self):
        w = self.watts[self.made % len(self.watts)]
        self.made += 1
        return idle_sampler(w, self.core, energy_source=self.source)


def test_measure_mean_std_n():
    f = CountingFactory([4.0, 5.0, 6.0], core=1.5)
    b = bl.measure(f, duration_s=0.02, repetitions=3)
    assert f.made == 3
    assert b.repetitions == 3 and b.duration_s == 0.02
    assert b.power_w["pkg"] == pytest.approx(5.0)
    assert b.power_w_std["pkg"] == pytest.approx(statistics.stdev([4.0, 5.0, 6.0]))
    assert b.power_w["core"] == pytest.approx(1.5)
    assert b.energy_source == "powercap"
    assert b.state["host"] and "governor" in b.state and "load_1m" in b.state


def test_single_window_has_no_std():
    b = bl.measure(CountingFactory([3.0]), duration_s=0.01, repetitions=1)
    assert b.power_w_std["pkg"] is None


@pytest.mark.parametrize("kw", [dict(duration_s=0), dict(repetitions=0), dict(duration_s=-1)])
def test_bad_settings(kw):
    with pytest.raises(AlemsError):
        bl.measure(CountingFactory([1.0]), **{"duration_s": 0.01, "repetitions": 1, **kw})


@pytest.fixture
def quiet_machine(monkeypatch):
    """Nothing else runnable (alems.measure.quiet): a baseline may be reused by a later
    batch only if it was measured quiet, and this test machine is shared."""
    from alems.measure import quiet

    monkeypatch.setattr(quiet, "read_stat", lambda proc_root=None: (1, 0, 100))
    monkeypatch.setattr(quiet, "own_running", lambda pid=None, proc_root=None: 1)


def test_save_and_reuse_while_fresh(tmp_path, quiet_machine):
    conn = store_db.connect(tmp_path / "x.db")
    f = CountingFactory([4.0, 6.0])
    b1 = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=2)
    assert f.made == 2 and b1.baseline_id is not None
    row = conn.execute("SELECT repetitions, pkg_power_w_mean, pkg_power_w_std, host, "
                       "energy_source FROM baselines").fetchone()
    assert row[0] == 2 and row[1] == pytest.approx(5.0) and row[2] == pytest.approx(2 ** 0.5)
    assert row[4] == "powercap"
    b2 = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=2)
    assert f.made == 2, "a fresh baseline must be reused, not re-measured"
    assert b2.baseline_id == b1.baseline_id and b2.power_w["pkg"] == pytest.approx(5.0)


def test_stale_or_changed_state_is_remeasured(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    f = CountingFactory([4.0])
    b1 = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1)
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    conn.execute("UPDATE baselines SET measured_at = ? WHERE baseline_id = ?", (old, b1.baseline_id))
    conn.commit()
    b2 = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1, max_age_s=3600)
    assert f.made == 2 and b2.baseline_id != b1.baseline_id
    # governor changed -> re-measure, even though fresh
    conn.execute("UPDATE baselines SET state_json = json_set(state_json, '$.governor', 'powersave-x')")
    conn.commit()
    b3 = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1)
    assert f.made == 3 and b3.baseline_id != b2.baseline_id
    # another energy source never reuses a powercap baseline
    g = CountingFactory([0.0], source="estimate")
    b4 = bl.get_or_measure(conn, g, "estimate", duration_s=0.01, repetitions=1)
    assert g.made == 1 and b4.energy_source == "estimate"


def test_staleness_reasons():
    now = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    b = bl.Baseline("powercap", 1.0, 1, {"pkg": 1.0},
                    measured_at=(now - timedelta(minutes=30)).isoformat(),
                    state={"host": "h", "governor": "performance", "energy_source": "powercap"})
    same = {"host": "h", "governor": "performance", "energy_source": "powercap", "load_1m": 9.0}
    assert bl.staleness(b, same, max_age_s=3600, now=now) is None
    assert "old" in bl.staleness(b, same, max_age_s=600, now=now)
    assert "governor" in bl.staleness(b, {**same, "governor": "powersave"}, now=now)
    assert "host" in bl.staleness(b, {**same, "host": "other"}, now=now)
    assert bl.staleness(None, same) == "no stored baseline"


def test_source_mismatch_is_an_error(tmp_path):
    conn = store_db.connect(tmp_path / "x.db")
    with pytest.raises(AlemsError, match="energy source"):
        bl.get_or_measure(conn, CountingFactory([1.0], source="estimate"), "powercap",
                          duration_s=0.01, repetitions=1)


def test_real_sampler_idle_baseline(tmp_path):
    from alems.measure import sampler as sampler_mod
    b = bl.measure(lambda: sampler_mod.Sampler(hz=100), duration_s=0.2, repetitions=2)
    assert b.repetitions == 2
    assert b.power_w["pkg"] >= 0.0      # estimate: only the sampler's own thread, near 0 W
