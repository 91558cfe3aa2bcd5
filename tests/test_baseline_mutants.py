"""Exact rules of baseline reuse that mutation testing found unguarded (docs/TESTING.md):
the per-CPU busy margin, window length and count, age, state changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from alems.experiment import baseline as bl

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
STATE = {"host": "h", "governor": "performance", "energy_source": "powercap"}


def _b(**kw) -> bl.Baseline:
    args = dict(energy_source="powercap", duration_s=5.0, repetitions=3,
                power_w={"pkg": 4.0}, measured_at=(NOW - timedelta(seconds=10)).isoformat(),
                state=dict(STATE, load_1m=0.0, cpus=4))
    args.update(kw)
    return bl.Baseline(**args)


def test_busy_margin_is_per_cpu():
    """4 CPUs: busy above 0.5 × 4 = 2.0; reusable while now's load is within 2.0 of it."""
    assert bl.QUIET_LOAD_PER_CPU == 0.5
    assert bl.not_quiet({"load_1m": 2.0, "cpus": 4}) is None          # at the bound: quiet
    assert bl.not_quiet({"load_1m": 2.01, "cpus": 4}) == (
        "the machine was busy (1-minute load 2.01 on 4 CPU(s))")
    assert bl.not_quiet({"load_1m": 0.6, "cpus": None}) == (          # unknown: 1 CPU
        "the machine was busy (1-minute load 0.60 on 1 CPU(s))")
    assert bl.not_quiet({"load_1m": None, "cpus": 4}) is None
    # given now's load: busy only when the baseline's load exceeds now's by the margin
    assert bl.not_quiet({"load_1m": 3.0, "cpus": 4}, {"load_1m": 1.0}) is None   # 3 <= 1 + 2
    assert bl.not_quiet({"load_1m": 3.01, "cpus": 4}, {"load_1m": 1.0}) is not None
    assert bl.not_quiet({"load_1m": 3.01, "cpus": 4}, {"load_1m": None}) is not None
    assert bl.not_quiet({"load_1m": 3.01, "cpus": 4}, {}) is not None


def test_staleness_reasons_in_order_and_exact():
    now_state = dict(STATE, load_1m=0.0)
    assert bl.staleness(None, now_state) == "no stored baseline"
    assert bl.staleness(_b(), now_state, now=NOW) is None
    assert bl.staleness(_b(), now_state, now=NOW, duration_s=5.0, repetitions=3) is None
    assert bl.staleness(_b(duration_s=4.99), now_state, now=NOW, duration_s=5.0) == (
        "stored baseline used 4.99 s windows, 5 s requested")
    assert bl.staleness(_b(repetitions=2), now_state, now=NOW, repetitions=3) == (
        "stored baseline has 2 window(s), 3 requested")
    busy = _b(state=dict(STATE, load_1m=9.0, cpus=4))
    assert bl.staleness(busy, now_state, now=NOW) == (
        "stored baseline is unsafe: the machine was busy (1-minute load 9.00 on 4 CPU(s))")
    assert bl.staleness(busy, now_state, now=NOW, trusted=True) is None
    old = _b(measured_at=(NOW - timedelta(seconds=3601)).isoformat())
    assert bl.staleness(old, now_state, now=NOW) == "baseline is 3601 s old (limit 3600 s)"
    assert bl.staleness(old, now_state, now=NOW, max_age_s=3601) is None
    future = _b(measured_at=(NOW + timedelta(seconds=61)).isoformat())
    assert bl.staleness(future, now_state, now=NOW) == (
        "baseline is dated in the future (clock changed)")
    assert bl.staleness(_b(measured_at=(NOW + timedelta(seconds=60)).isoformat()),
                        now_state, now=NOW) is None
    assert bl.staleness(_b(), dict(now_state, governor="powersave"), now=NOW) == (
        "governor changed ('performance' -> 'powersave')")


def test_state_change_names_the_first_key_that_differs():
    assert bl.state_change({"host": "a", "gpus": ["0:x"]}, {"host": "a"}) == (
        "gpus changed (['0:x'] -> None)")
    assert bl.state_change({"host": "a", "load_1m": 1}, {"host": "a", "load_1m": 9}) is None


def test_negative_run_note_exact():
    base = _b(power_w={"pkg": 4.0, "dram": 1.25})
    assert bl.negative_run_note([1], {"dynamic_energy_uj": 0}, base) is None
    assert bl.negative_run_note([1], {"dynamic_energy_uj": None}, base) is None
    assert bl.negative_run_note([1], {}, base) is None
    note = bl.negative_run_note([1, "t"], {"dynamic_energy_uj": -1}, base)
    assert note == (f"run [1, 't'] has negative dynamic energy: the idle baseline "
                    f"(dram 1.25 W, pkg 4.00 W, measured {base.measured_at}) is above its power")
    assert bl.negative_run_note([2], {"dynamic_energy_uj": 5, "dynamic_clipped": 1}, base)


def test_measure_refuses_bad_windows():
    from alems.errors import AlemsError

    for bad in (0, -1.0, float("nan"), bl.MAX_DURATION_S + 1):
        with pytest.raises(AlemsError, match="baseline duration must be > 0"):
            bl.measure(lambda: None, duration_s=bad)
    for bad in (0, 1.5, -2):
        with pytest.raises(AlemsError, match="repetitions must be a positive integer"):
            bl.measure(lambda: None, repetitions=bad)
