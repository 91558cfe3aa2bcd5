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
from alems.measure.gaps import check_rate, wrap_gaps
from alems.measure.columns import build_columns
from alems.measure.result import SampleResult, table_from_columns
from alems.measure.sampler import Sampler
from alems.measure.sources.base import Column
from test_cli_sample import alems_argv, alems_env


def _wrapping_column(range_uj: int = 10_000_000) -> Column:
    return Column("zone_pkg", [], "energy", 1.0, range_uj, "pkg", "package-0")


def _result_with_gap(gap_s: float, power_w: float = 30.0, range_uj: int = 10_000_000):
    """1 kHz samples of a counter at `power_w` wrapping at `range_uj`, with one gap."""
    t = np.concatenate([np.arange(0, 0.5, 1e-3), 0.5 + gap_s + np.arange(0, 0.5, 1e-3)])
    raw = (np.round(t * power_w * 1e6).astype(np.int64) % range_uj)[:, None]
    t_ns = (t * 1e9).astype(np.int64)
    cols = [_wrapping_column(range_uj)]
    out, _ = build_columns(t_ns, raw, cols, None)
    extra = {"wrap_gaps": wrap_gaps(t_ns, cols, {"pkg": out["pkg_energy_uj"]})}
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
    res = _result_with_gap(0.02)
    assert res.summary["energy_j"]["pkg"] == pytest.approx(30.0 * 1.019, rel=1e-3)
    assert res.summary["warnings"] == []


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
