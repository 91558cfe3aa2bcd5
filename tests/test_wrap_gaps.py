"""Issue 8 item 2: a gap between samples that could hold a whole counter range makes the
affected energy NULL with a reason, never silently low; a rate at which an ordinary gap
could do so is refused. Item 3: zero or one sample gives NULL energy, not 0 J."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import fakehw
from alems.errors import AlemsError
from alems.measure.gaps import check_rate, plausible_w, wrap_gaps
from alems.measure.names import PLAUSIBLE_MAX_W
from alems.measure.sources import powercap
from alems.measure.sources.base import Roots
from alems.measure.columns import build_columns
from alems.measure.result import SampleResult
from alems.measure.arrow import table_from_columns
from alems.measure.sampler import Sampler
from alems.measure.sources.base import Column
from test_cli_sample import alems_argv, alems_env


def _wrapping_column(range_uj: int = 10_000_000) -> Column:
    return Column("zone_pkg", [], "energy", 1.0, range_uj, "pkg", "package-0")


def _result_with_gap(gap_s: float, power_w: float = 30.0, range_uj: int = 10_000_000,
                     col: Column | None = None, edge_s: float = 0.5):
    """1 kHz samples of a counter at `power_w` wrapping at `range_uj` (or as `col` says),
    `edge_s` of them on each side of one gap."""
    t = np.concatenate([np.arange(0, edge_s, 1e-3),
                        edge_s + gap_s + np.arange(0, edge_s, 1e-3)])
    col = col or _wrapping_column(range_uj)
    raw = (np.round(t * power_w * 1e6).astype(np.int64) % col.wrap_raw)[:, None]
    t_ns = (t * 1e9).astype(np.int64)
    out, _ = build_columns(t_ns, raw, [col], None)
    extra = {"wrap_gaps": wrap_gaps(t_ns, [col])}
    return SampleResult(table_from_columns(out), [], "powercap", 1000.0, {}, {}, extra)


def test_gap_holding_a_whole_range_nulls_the_energy_with_a_reason():
    res = _result_with_gap(0.9)  # 0.9 s at 30 W = 27 J: the 10 J counter wrapped twice
    assert res.summary["energy_j"]["pkg"] is None
    assert res.energy_uj()["pkg"] is None
    why = res.energy_null_reason("pkg")
    assert "0.901 s gap" in why
    assert any("gap" in w and "pkg" in w for w in res.summary["warnings"])
    assert res.summary["max_gap_ns"] == pytest.approx(0.901e9, rel=1e-3)
    # A span that does not contain the gap keeps its energy.
    t0 = res.t_start_ns
    assert res.energy_uj(t0, t0 + 400_000_000)["pkg"] == pytest.approx(12e6, rel=1e-3)


def test_short_gap_keeps_the_energy():
    res = _result_with_gap(0.01)  # 11 ms; 10 J at the 500 W ceiling takes 20 ms
    assert res.summary["energy_j"]["pkg"] == pytest.approx(30.0 * 1.009, rel=1e-3)
    assert res.summary["warnings"] == []


def _discovered_pkg(fake_roots, **tree_kw) -> Column:
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False, **tree_kw)
    disc = powercap.discover(Roots.resolve(**fake_roots))
    return next(c for c in disc.columns if c.domain == "pkg")


def test_zone_power_limits_are_read_through_the_sysfs_root(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    cols = powercap.discover(Roots.resolve(**fake_roots)).columns
    # the highest of each zone's constraints (pkg: long_term 40 W, short_term 50 W)
    assert {c.domain: c.max_power_w for c in cols} == {"pkg": 50.0, "core": 20.0, "dram": 5.0}


def test_zone_without_power_limits_falls_back_to_the_domain_ceiling(fake_roots):
    col = _discovered_pkg(fake_roots, max_power_uw={"pkg": (0,)})  # 0: limit not stated
    assert col.max_power_w is None
    assert plausible_w(col) == PLAUSIBLE_MAX_W["pkg"]


@pytest.mark.parametrize("limits", [fakehw.MAX_POWER_UW, None])
def test_stall_that_dominates_a_run_gives_null_energy_not_a_low_number(fake_roots, limits):
    """A 50 J counter at 35 W, the sampler stalled 1.55 s of a 1.65 s run: one whole range
    passes unseen, and the run's own mean power (4.7 W of what was seen) would let the gap
    pass as harmless. The zone's power limit (50 W), or without one the domain ceiling,
    cannot be shrunk by the stall: the energy is NULL with the gap as reason."""
    col = _discovered_pkg(fake_roots, pkg_range_uj=50_000_000, max_power_uw=limits)
    assert col.max_power_w == (50.0 if limits else None)
    res = _result_with_gap(1.55, power_w=35.0, col=col, edge_s=0.05)
    truth_j = 35.0 * (res.t_end_ns - res.t_start_ns) / 1e9
    seen_j = float(res.table.column("pkg_energy_uj").to_numpy()[-1]) / 1e6
    assert truth_j == pytest.approx(57.7, abs=0.1) and seen_j < truth_j / 5   # the lost range
    assert res.summary["energy_j"]["pkg"] is None
    assert res.energy_uj()["pkg"] is None
    assert "1.55 s gap" in res.energy_null_reason("pkg")


def test_rate_at_which_an_ordinary_gap_could_hold_a_range_is_refused():
    col = _wrapping_column(10_000_000)  # 10 J: 20 ms at 500 W
    check_rate(1000.0, [col])
    with pytest.raises(AlemsError, match="--hz 2 is too low"):
        check_rate(2.0, [col])


def test_sampler_refuses_a_low_rate_on_a_fast_wrapping_counter(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    with pytest.raises(AlemsError, match="too low"):
        Sampler(2, sources=["powercap"], **fake_roots).start()


@pytest.mark.parametrize("n", [0, 1])
def test_zero_or_one_sample_gives_null_energy_not_zero(n):
    t_ns = np.arange(n, dtype=np.int64) * 1_000_000
    raw = np.full((n, 1), 5, dtype=np.int64)
    out, _ = build_columns(t_ns, raw, [_wrapping_column()], None)
    res = SampleResult(table_from_columns(out), [], "powercap", 1000.0, {}, {}, {})
    assert res.summary["energy_j"]["pkg"] is None
    assert res.energy_uj()["pkg"] is None
    assert "sample" in res.energy_null_reason("pkg")


@pytest.mark.signals
def test_alems_sample_paused_across_wraps_reports_null_and_names_the_gap(fake_roots,
                                                                         tmp_path):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    env = alems_env(Path(fake_roots["sysfs_root"]), fake_roots["proc_root"],
                    fake_roots["msr_path"])
    out = tmp_path / "s.json"
    marker = tmp_path / "started"
    with fakehw.EnergyWriter(tree.targets) as _writer:
        proc = subprocess.Popen(alems_argv("sample", "--sources", "powercap", "--hz", "1000",
                                           "--quiet", "--summary-json", str(out),
                                           "--output", str(tmp_path / "s.parquet"),
                                           "--", "sh", "-c", f"touch {marker}; sleep 2.5"),
                                env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the command runs: so does the sampler
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGSTOP)  # the sampler misses ~3 wraps of pkg
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out.read_text())
    assert summary["max_gap_ns"] >= 0.9e9, summary
    assert summary["energy_j"]["pkg"] is None
    assert any("energy_j.pkg is null" in w and "gap" in w for w in summary["warnings"])
    assert summary["max_gap_ns"] >= 0.9e9
