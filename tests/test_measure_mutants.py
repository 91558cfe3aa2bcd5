"""Exact-value tests of the measuring rules that mutation testing found unguarded
(docs/TESTING.md): a gap between two drained chunks, a wrap across a chunk boundary, the
gap rule's headroom term, the run's plausible power, and the quiet flag's steal time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from alems.errors import AlemsError
from alems.measure import gaps, quiet
from alems.measure.columns import ColumnBuilder, build_columns
from alems.measure.arrow import table_from_columns
from alems.measure.result import Ends, SampleResult
from alems.measure.sources.base import Column

MS = 1_000_000


def _energy(range_uj=10_000_000, domain="pkg", zone="package-0", name="zone_pkg", scale=1.0):
    return Column(name, [], "energy", scale, range_uj, domain, zone)


# ------------------------------------------------------------------ chunked processing

def test_gap_exactly_between_two_drained_chunks_is_kept():
    """The gap from the last sample of one drained chunk to the first of the next is a gap
    like any other: `Ends` must join the chunks before it differences them."""
    ends = Ends(schema=None, gap_floor_ns=50 * MS)
    ends.update({"t_ns": np.array([0, MS, 2 * MS], np.int64)})
    ends.update({"t_ns": np.array([102 * MS, 103 * MS], np.int64)})
    ends.update({"t_ns": np.array([104 * MS], np.int64)})
    assert ends.gaps == [(2 * MS, 102 * MS)]
    assert ends.max_gap_ns == 100 * MS
    assert ends.samples == 6
    assert ends.first == {"t_ns": 0} and ends.last == {"t_ns": 104 * MS}


def test_gap_floor_is_inclusive_and_short_gaps_are_not_kept():
    ends = Ends(schema=None, gap_floor_ns=10 * MS)
    ends.update({"t_ns": np.array([0, 9 * MS, 19 * MS, 28 * MS], np.int64)})
    assert ends.gaps == [(9 * MS, 19 * MS)]      # exactly the floor: kept
    assert ends.max_gap_ns == 10 * MS


def test_ends_without_a_floor_keep_only_the_longest_gap():
    ends = Ends(schema=None)
    ends.update({"t_ns": np.array([5, 7], np.int64)})
    ends.update({"t_ns": np.zeros(0, np.int64)})   # an empty drain changes nothing
    ends.update({"t_ns": np.array([20], np.int64)})
    assert ends.gaps == [] and ends.max_gap_ns == 13 and ends.samples == 3


def test_wrap_between_two_chunks_is_corrected_like_within_one():
    """A counter that wraps between the last sample of one chunk and the first of the
    next: the chunked result equals the one-piece result, at every split point."""
    raw = np.array([[90], [95], [3], [8], [1], [6], [99]], np.int64)  # wraps at 100
    t = np.arange(len(raw), dtype=np.int64) * MS
    cols = [_energy(range_uj=100)]
    whole, _ = build_columns(t, raw, cols, None)
    np.testing.assert_array_equal(whole["pkg_energy_uj"], [0, 5, 13, 18, 111, 116, 209])
    for split in range(1, len(raw)):
        b = ColumnBuilder(cols, None)
        a1 = b.add(t[:split], raw[:split])["pkg_energy_uj"]
        a2 = b.add(t[split:], raw[split:])["pkg_energy_uj"]
        np.testing.assert_array_equal(np.concatenate([a1, a2]), whole["pkg_energy_uj"])


def test_counters_keep_the_run_origin_across_chunks_and_gauges_stay_raw():
    cols = [Column("ctx_switches", [], "counter", 1.0, None, None),
            Column("procs_running", [], "gauge", 1.0, None, None)]
    b = ColumnBuilder(cols, None)
    c1 = b.add(np.array([0, 1]), np.array([[100, 3], [104, 1]]))
    c2 = b.add(np.array([2, 3]), np.array([[110, 2], [111, 5]]))
    np.testing.assert_array_equal(c1["ctx_switches"], [0, 4])
    np.testing.assert_array_equal(c2["ctx_switches"], [10, 11])
    np.testing.assert_array_equal(c2["procs_running"], [2, 5])
    assert b.units["ctx_switches"] == "count" and b.units["procs_running"] == "count"


def test_domain_energy_sums_its_zones_and_keeps_each_zone():
    cols = [_energy(name="zone_a", zone="package-0"), _energy(name="zone_b", zone="package-1",
                                                               scale=2.0)]
    out, units = build_columns(np.array([0, 1, 2]), np.array([[5, 1], [8, 2], [9, 4]]), cols,
                               None)
    np.testing.assert_array_equal(out["zone_a"], [0.0, 3.0, 4.0])
    np.testing.assert_array_equal(out["zone_b"], [0.0, 2.0, 6.0])
    np.testing.assert_array_equal(out["pkg_energy_uj"], [0.0, 5.0, 10.0])
    assert units["zone_a"] == units["pkg_energy_uj"] == "uJ"


def test_hottest_zone_is_the_package_temperature():
    cols = [Column("t0", [], "temp", 0.001, None, None), Column("t1", [], "temp", 0.001, None,
                                                                None)]
    out, units = build_columns(np.array([0, 1]), np.array([[40000, 52000], [61000, 50000]]),
                               cols, None)
    np.testing.assert_array_equal(out["package_temp_c"], [52.0, 61.0])
    assert units["package_temp_c"].startswith("degC")


def test_estimate_columns_from_cpu_ticks_or_task_clock():
    import os

    from alems.measure import estimate

    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    cols = [Column(estimate.CPU_TICKS_COLUMN, [], "counter", 1.0, None, None)]
    out, units = build_columns(np.array([0, 1, 2]), np.array([[50], [52], [57]]), cols,
                               {"w_per_core": 10.0})
    np.testing.assert_array_equal(out["pkg_energy_uj"], [0.0, 2 * tick_ns * 1e-2,
                                                         7 * tick_ns * 1e-2])
    assert estimate.CPU_TICKS_COLUMN not in out and estimate.CPU_TICKS_COLUMN not in units
    assert units["pkg_energy_uj"] == "uJ (estimate: CPU time x W/core)"
    cols = [Column("task_clock_ns", [], "counter", 1.0, None, None)]
    out, units = build_columns(np.array([0, 1]), np.array([[1000], [3000]]), cols,
                               {"w_per_core": 5.0})
    np.testing.assert_array_equal(out["pkg_energy_uj"], [0.0, 10.0])
    np.testing.assert_array_equal(out["task_clock_ns"], [0, 2000])
    assert units["task_clock_ns"] == "ns"


def test_units_and_schema_before_any_sample():
    cols = [_energy(), _energy(domain="dram", name="zone_dram", zone="dram"),
            Column("busy_us", [], "counter", 1.0, None, None),
            Column("procs_running", [], "gauge", 1.0, None, None),
            Column("t0", [], "temp", 0.001, None, None)]
    b = ColumnBuilder(cols, None)
    assert b.units == {"t_ns": "ns (CLOCK_MONOTONIC)", "pkg_energy_uj": "uJ",
                       "dram_energy_uj": "uJ", "busy_us": "us", "procs_running": "count",
                       "package_temp_c": "degC (hottest package zone)"}
    schema = b.schema()
    assert schema.names == ["t_ns", "pkg_energy_uj", "dram_energy_uj", "busy_us",
                            "procs_running", "package_temp_c"]
    assert [str(t) for t in schema.types] == ["int64", "double", "double", "int64", "int64",
                                              "double"]
    # computing the schema consumed nothing: the first chunk still starts the run
    out = b.add(np.array([0, 1]), np.array([[5, 7, 10, 1, 40000], [9, 8, 13, 2, 41000]]))
    np.testing.assert_array_equal(out["pkg_energy_uj"], [0.0, 4.0])
    np.testing.assert_array_equal(out["busy_us"], [0, 3])


# ------------------------------------------------------------------ the gap rule

def _zone(range_uj=10_000_000, max_power_w=None, domain="pkg", zone="package-0",
          name="zone_pkg"):
    col = _energy(range_uj=range_uj, domain=domain, zone=zone, name=name)
    col.max_power_w = max_power_w
    return col


def test_plausible_power_is_the_zone_ceiling_else_the_domain_cap():
    assert gaps.plausible_w(_zone(max_power_w=120.0)) == 120.0
    assert gaps.plausible_w(_zone(max_power_w=None)) == 500.0
    assert gaps.plausible_w(_zone(max_power_w=0.0)) == 500.0          # no ceiling reported
    assert gaps.plausible_w(_zone(domain="dram", max_power_w=-1.0)) == 60.0
    assert gaps.plausible_w(_zone(domain="gpu")) is None               # no cap for it


def test_gap_rule_uses_the_zone_ceiling():
    """A 10 J counter under a 120 W ceiling can wrap in 10/120 s = 83.3 ms: a 90 ms gap
    is flagged (the 500 W domain cap alone would say 20 ms), an 80 ms gap is not."""
    col = _zone(max_power_w=120.0)
    t = np.array([0, 90 * MS, 170 * MS, 250 * MS, 330 * MS, 400 * MS], np.int64)
    out = gaps.wrap_gaps(t, [col])
    assert [(g["start_ns"], g["end_ns"]) for g in out] == [(0, 90 * MS)]
    g = out[0]
    assert g["limit_s"] == pytest.approx(10.0 / 120.0, rel=1e-12)
    assert g["gap_s"] == 0.09 and g["domain"] == "pkg" and g["zone"] == "package-0"
    assert gaps.gap_reason(g) == ("a 0.09 s gap between samples could hide a whole pkg "
                                  "counter wrap (zone package-0 can wrap in 0.0833 s at "
                                  "plausible maximum power); energy unknown")


def test_gaps_from_streamed_ends_match_the_gaps_of_the_whole_run():
    col = _zone(max_power_w=120.0)
    t = np.array([0, 90 * MS, 170 * MS, 250 * MS, 330 * MS, 400 * MS], np.int64) + 7 * MS
    floor = gaps.min_gap_floor_ns([col])
    assert floor == int(10.0 / 120.0 * 1e9)
    ends = Ends(schema=None, gap_floor_ns=floor)
    ends.update({"t_ns": t[:2]})
    ends.update({"t_ns": t[2:]})
    assert gaps.wrap_gaps_from_ends(ends, [col]) == gaps.wrap_gaps(t, [col])
    assert [(g["start_ns"], g["gap_s"]) for g in gaps.wrap_gaps_from_ends(ends, [col])] == [
        (7 * MS, 0.09)]
    one = Ends(schema=None, gap_floor_ns=floor)
    one.update({"t_ns": t[:1]})
    assert gaps.wrap_gaps_from_ends(one, [col]) == []


def test_min_safe_gap_takes_the_fastest_wrapping_zone_of_a_domain():
    cols = [_zone(range_uj=20_000_000, zone="package-0"),
            _zone(range_uj=10_000_000, zone="package-1", name="z1"),
            _zone(range_uj=15_000_000, zone="package-2", name="z2"),
            _zone(range_uj=None, zone="package-3", name="z3"),
            Column("ctx", [], "counter", 1.0, 100, None)]
    assert gaps.range_j(cols[0]) == 20.0 and gaps.range_j(cols[3]) is None
    assert gaps.range_j(cols[4]) is None
    assert gaps.range_j(_energy(range_uj=1000, scale=61.0)) == 0.061
    assert gaps.min_safe_gap_ns(cols) == {"pkg": (20 * MS, "package-1", 500.0)}
    assert gaps.min_gap_floor_ns(cols[3:]) is None


def test_gap_rule_boundaries_are_exact():
    """A gap exactly as long as the limit could hold a whole range (>=), on a run of only
    two samples too."""
    col = _zone()                                      # 10 J at the 500 W cap: 20 ms
    t0 = 5_000_000_000
    t = np.array([t0, t0 + 20 * MS], np.int64)
    out = gaps.wrap_gaps(t, [col])
    assert out == [{"domain": "pkg", "zone": "package-0", "start_ns": t0,
                    "end_ns": t0 + 20 * MS, "gap_s": 0.02, "limit_s": 0.02}]
    assert gaps.wrap_gaps(t[:1], [col]) == []
    assert gaps.wrap_gaps(np.array([t0, t0 + 20 * MS - 1]), [col]) == []
    ends = Ends(schema=None, gap_floor_ns=gaps.min_gap_floor_ns([col]))
    ends.update({"t_ns": t})
    assert gaps.wrap_gaps_from_ends(ends, [col]) == out


def test_min_safe_gap_skips_non_wrapping_columns_and_keeps_the_first_of_equal_zones():
    cols = [Column("ctx", [], "counter", 1.0, None, None),
            _zone(range_uj=None, name="zn", zone="package-9"),
            _zone(range_uj=10_000_000, name="za", zone="package-0"),
            _zone(range_uj=10_000_000, name="zb", zone="package-1"),
            _zone(range_uj=10_000_000, domain="dram", name="zd", zone=None)]
    assert gaps.min_safe_gap_ns(cols) == {"pkg": (20 * MS, "package-0", 500.0),
                                          "dram": (10.0 / 60.0 * 1e9, "zd", 60.0)}


def test_check_rate_boundary_and_message():
    col = _energy(range_uj=10_000_000)        # wraps in 20 ms at 500 W; a gap is 2 periods
    gaps.check_rate(100.00000005, [col])      # gap 19.999999990 ms: fine
    with pytest.raises(AlemsError) as ei:
        gaps.check_rate(100.0, [col])         # gap exactly 20 ms: could hold a range
    assert str(ei.value) == (
        "--hz 100 is too low for pkg zone package-0: its counter wraps after 10 J, "
        "0.02 s at 500 W, so a skipped sample could hide a whole wrap; use --hz above 100")


def test_gaps_within_overlap_only():
    g = [{"domain": "pkg", "start_ns": 10, "end_ns": 20},
         {"domain": "dram", "start_ns": 10, "end_ns": 20}]
    assert gaps.gaps_within(g, "pkg", 0, 10) == []        # touches the start only
    assert gaps.gaps_within(g, "pkg", 20, 30) == []       # touches the end only
    assert gaps.gaps_within(g, "pkg", 19, 30) == [g[0]]
    assert gaps.gaps_within(g, "pkg", 0, 11) == [g[0]]


def test_summary_of_a_short_run_is_exact():
    t = np.array([0, 500 * MS, 1000 * MS], np.int64)
    out, _ = build_columns(t, np.array([[0], [2_000_000], [5_000_000]]), [_energy()], None)
    res = SampleResult(table_from_columns(out), [], "powercap", 50.0,
                       {"late": 2, "dropped": 3, "skipped": 4, "max_lateness_ns": 7,
                        "thread_cpu_ns": 3_000_000, "read_ns_total": 900, "samples": 3}, {}, {})
    s = res.summary
    assert s["duration_s"] == 1.0 and s["samples"] == 3 and s["achieved_hz"] == 2.0
    assert s["energy_j"] == {"pkg": 5.0} and s["avg_power_w"] == {"pkg": 5.0}
    assert (s["late_samples"], s["dropped_samples"], s["skipped_deadlines"],
            s["max_lateness_ns"]) == (2, 3, 4, 7)
    assert s["sampler_cpu_s"] == 0.003 and s["read_ns_per_sample"] == 300.0
    assert s["max_gap_ns"] == 500 * MS
    assert res.energy_uj(250 * MS, 750 * MS) == {"pkg": 2_500_000.0}


# ------------------------------------------------------------------ the quiet flag

def _write_stat(root, running: int, cpu: list[int]) -> None:
    (root / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + "\n"
                               "cpu0 1 2 3\nprocs_running " + str(running) + "\n")


def test_read_stat_total_excludes_guest_time(tmp_path):
    # user nice system idle iowait irq softirq steal guest guest_nice
    _write_stat(tmp_path, 3, [100, 1, 20, 500, 5, 2, 3, 9, 40, 50])
    assert quiet.read_stat(str(tmp_path)) == (3, 9, 640)
    _write_stat(tmp_path, 2, [100, 1, 20, 500])          # old kernel: no steal field
    assert quiet.read_stat(str(tmp_path)) == (2, None, 621)
    assert quiet.read_stat(str(tmp_path / "absent")) == (None, None, None)


def test_assess_thresholds_are_inclusive_and_steal_counts():
    assert quiet.assess(0.5, 0.02) == (1, None)
    assert quiet.assess(0.0, None) == (1, None)
    assert quiet.assess(0.51, 0.0) == (0, "0.51 other runnable task(s) on average "
                                          "(quiet: <= 0.5)")
    assert quiet.assess(0.0, 0.025) == (0, "2.5% of CPU time stolen by the hypervisor "
                                           "(quiet: <= 2%)")
    assert quiet.assess(1.0, 0.1)[1] == ("1.00 other runnable task(s) on average "
                                         "(quiet: <= 0.5); 10.0% of CPU time stolen by the "
                                         "hypervisor (quiet: <= 2%)")
    assert quiet.assess(None, 0.0) == (None, "background load unknown (/proc/stat unreadable)")


def test_load_probe_steal_fraction_makes_a_run_not_quiet(tmp_path):
    """Steal ticks over the run ÷ all CPU ticks over the run: 30 of 1000 = 3 % > 2 %."""
    (tmp_path / "loadavg").write_text("0.25 0.2 0.1 1/100 42\n")
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 0])
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    _write_stat(tmp_path, 0, [400, 0, 0, 1570, 0, 0, 0, 30, 999])
    cols = probe.stop()
    assert cols["steal_fraction"] == (0.03, None)
    assert cols["other_procs_running"][0] == 0
    assert cols["load_1m"] == (0.25, "/proc/loadavg unreadable")
    assert cols["quiet"][0] == 0
    assert cols["not_quiet_reason"][0] == ("3.0% of CPU time stolen by the hypervisor "
                                           "(quiet: <= 2%)")


def test_load_probe_quiet_run_and_missing_steal(tmp_path):
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 5])
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    _write_stat(tmp_path, 0, [600, 0, 0, 1380, 0, 0, 0, 25])   # 20 of 1000: exactly 2 %
    cols = probe.stop()
    assert cols["steal_fraction"] == (0.02, None)
    assert cols["quiet"] == (1, None)
    assert cols["not_quiet_reason"] == (None, "the run was quiet")
    _write_stat(tmp_path, 0, [100, 0, 0, 900])                # no steal field
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    cols = probe.stop()
    assert cols["steal_fraction"] == (None, "the kernel reports no steal time here")
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 5])    # no CPU time passed
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    assert probe.stop()["steal_fraction"] == (None, "no CPU time passed")


def _fake_threads(root, pid: int, states: str) -> None:
    """A fake proc root's `<pid>/task/<tid>/stat` with one thread per state letter."""
    for tid, state in enumerate(states, start=1):
        d = root / str(pid) / "task" / str(tid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{tid} (w) x) {state} 1 2 3\n")


def test_own_running_reads_the_given_proc_root(tmp_path):
    _fake_threads(tmp_path, 4242, "RSRD")
    assert quiet.own_running(4242, str(tmp_path)) == 2     # each running thread counts
    assert quiet.own_running(4243, str(tmp_path)) == 0


def test_load_probe_subtracts_our_running_threads_and_names_its_thread(tmp_path):
    import os

    _fake_threads(tmp_path, os.getpid(), "RRS")
    _write_stat(tmp_path, 5, [100, 0, 0, 900])             # no steal field at the start
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    assert probe._thread.name == "alems-load"
    _write_stat(tmp_path, 5, [200, 0, 0, 1800, 0, 0, 0, 7])   # …but at the end
    cols = probe.stop()
    assert cols["other_procs_running"] == (3.0, "/proc/stat unreadable")   # 5 − our 2
    assert cols["steal_fraction"] == (None, "the kernel reports no steal time here")


def test_wait_for_quiet_stops_when_the_timeout_is_reached_exactly():
    ticks = iter([0.0, 1.0, 2.0])
    looks = []

    def window(w):
        looks.append(w)
        return 0, "busy"

    assert quiet.wait_for_quiet(1.0, window=window, clock=lambda: next(ticks),
                                window_s=0.5) == (False, 1.0, "busy")
    assert looks == [0.5]


# ------------------------------------------------------------------ SampleResult

def _result(n=3, counter=True, phases=()):
    t = np.arange(n, dtype=np.int64) * 500 * MS
    cols = [_energy()] + ([Column("ctx_switches", [], "counter", 1.0, None, None),
                           Column("procs_running", [], "gauge", 1.0, None, None)]
                          if counter else [])
    raw = np.array([[i * 1_000_000, 100 + 10 * i * i, 2] for i in range(n)],
                   np.int64).reshape(n, 3)[:, :len(cols)]
    out, _ = build_columns(t, raw, cols, None)
    return SampleResult(table_from_columns(out), list(phases), "powercap", 2.0, {}, {},
                        {"note": "x"})


def test_counter_columns_and_deltas_are_exact():
    res = _result()
    assert res.counter_columns() == ["ctx_switches"]          # not t_ns, energy or gauges
    assert res.summary["counters"] == {"ctx_switches": 40}
    assert res.counter_delta("ctx_switches") == 40
    assert res.counter_delta("ctx_switches", 250 * MS, 750 * MS) == 20.0   # 105 -> 125
    assert res.counter_delta("ctx_switches", None, 500 * MS) == 10.0
    assert res.counter_delta("absent") is None
    assert res.summary["note"] == "x" and res.domains == ["pkg"]
    assert (res.t_start_ns, res.t_end_ns) == (0, 1000 * MS)
    assert res.energy_uj(None, 500 * MS) == {"pkg": 1_000_000.0}
    assert res.energy_uj(500 * MS, None) == {"pkg": 1_000_000.0}


def test_one_sample_reason_and_summary_are_exact():
    res = _result(n=1)
    assert res.energy_null_reason("pkg") == (
        "only 1 sample(s): energy needs two (the run was shorter than one sampling period, "
        "or the sampler failed)")
    s = res.summary
    assert (s["duration_s"], s["achieved_hz"], s["energy_j"], s["avg_power_w"]) == (
        0.0, 0.0, {"pkg": None}, {"pkg": None})
    assert s["warnings"] == ["energy_j.pkg is null: " + res.energy_null_reason("pkg")]
    assert res.counter_delta("ctx_switches") == 0
    empty = _result(n=0)
    assert empty.counter_delta("ctx_switches") is None
    assert (empty.t_start_ns, empty.t_end_ns, empty.summary["samples"]) == (0, 0, 0)
    assert "read_ns_per_sample" not in empty.summary


def test_metadata_carries_summary_and_phases(tmp_path):
    import json

    import pyarrow.parquet as pq

    from alems.errors import AlemsError
    from alems.measure.names import PHASES_METADATA_KEY
    from alems.measure.result import Phase

    res = _result(phases=[Phase("llm", "llm", 0, 5, {"tokens": 3})])
    res.update_summary(extra_key=7)
    assert json.loads(res.metadata["summary"])["extra_key"] == 7
    assert res.metadata["energy_source"] == "powercap"
    meta = res.file_metadata()
    # the phases as rows (alems.measure.result.phase_rows), as the store writes them
    [row] = json.loads(meta[PHASES_METADATA_KEY])
    assert {k: row[k] for k in ("seq", "name", "kind", "parent_seq", "start_ns", "end_ns",
                                "duration_ns", "detail")} == {
        "seq": 1, "name": "llm", "kind": "llm", "parent_seq": None, "start_ns": 0,
        "end_ns": 5, "duration_ns": 5, "detail": {"tokens": 3}}
    assert row["energy_uj"] == row["domains_energy_uj"]["pkg"] == res.energy_uj(0, 5)["pkg"]
    out = tmp_path / "r.parquet"
    res.write_parquet(out)
    back = pq.read_table(out)
    assert back.num_rows == 3
    assert back.schema.metadata[PHASES_METADATA_KEY.encode()] == meta[PHASES_METADATA_KEY].encode()
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]
    with pytest.raises(AlemsError) as ei:
        res.write_parquet(tmp_path / "no" / "r.parquet")
    assert str(ei.value) == (f"cannot write {tmp_path / 'no' / 'r.parquet'}: folder "
                             f"{tmp_path / 'no'} does not exist; create it")


def test_arrow_numpy_round_trip_keeps_offsets_and_nulls():
    import pyarrow as pa

    from alems.measure.arrow import arrow_to_numpy, numpy_to_arrow

    arr = pa.array(np.arange(10, dtype=np.int64)).slice(3, 4)
    np.testing.assert_array_equal(arrow_to_numpy(arr), [3, 4, 5, 6])
    chunked = pa.chunked_array([pa.array([1.5, 2.5]), pa.array([3.5])])
    np.testing.assert_array_equal(arrow_to_numpy(chunked), [1.5, 2.5, 3.5])
    assert arrow_to_numpy(pa.array([], pa.int32())).dtype == np.int32
    with_null = arrow_to_numpy(pa.array([1, None, 3], pa.int64()))
    assert with_null[0] == 1 and np.isnan(with_null[1])
    assert numpy_to_arrow(np.array([7, 8], np.uint32)).type == pa.uint32()
    assert numpy_to_arrow(np.array([True, False])).to_pylist() == [True, False]
    ends = Ends.of_table(pa.table({"t_ns": pa.array([0, 30, 40], pa.int64())}),
                         gap_floor_ns=25)
    assert (ends.samples, ends.gaps, ends.max_gap_ns) == (3, [(0, 30)], 30)
    assert Ends.of_table(pa.table({"t_ns": pa.array([], pa.int64())})).samples == 0


def test_own_running_counts_running_threads_of_a_process():
    import subprocess
    import sys

    assert quiet.own_running() >= 1                 # the caller runs while it reads
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        def state():
            with open(f"/proc/{child.pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0]
        deadline = time.monotonic() + 60
        while state() != "S" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert quiet.own_running(child.pid) == 0     # asleep: not running
    finally:
        child.kill()
        child.wait()
    assert quiet.own_running(child.pid) == 0         # gone


def test_wait_for_quiet_polls_windows_until_quiet_or_timeout(tmp_path):
    (tmp_path / "loadavg").write_text("0.5 0.4 0.3 1/99 9\n")
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 0])
    slept = []
    ok, waited, why = quiet.wait_for_quiet(5, proc_root=str(tmp_path), window_s=0.25,
                                           sleep=slept.append)
    assert (ok, why, slept) == (True, None, [0.25]) and 0 <= waited < 5
    _write_stat(tmp_path, 1000, [100, 0, 0, 900, 0, 0, 0, 0])
    slept.clear()
    ok, waited, why = quiet.wait_for_quiet(0, proc_root=str(tmp_path), sleep=slept.append)
    assert (ok, slept) == (False, [quiet.WAIT_WINDOW_S]) and waited >= 0
    # the fake root shows no thread of ours, so all 1000 running tasks are others'
    assert why == "1000.00 other runnable task(s) on average (quiet: <= 0.5)", why
    slept.clear()
    ok, _, why = quiet.wait_for_quiet(0, proc_root=str(tmp_path / "none"),
                                      sleep=slept.append)
    assert (ok, why) == (False, "background load unknown (/proc/stat unreadable)")


def test_own_running_reads_the_state_after_the_last_parenthesis(tmp_path):
    """A spinning single-threaded child is always runnable ('R'), even named like
    `x) S y` (the state field is the one after the *last* ')' of /proc/PID/stat)."""
    import os
    import subprocess
    import sys

    link = tmp_path / "x) S y"
    os.symlink(sys.executable, link)
    child = subprocess.Popen([str(link), "-c", "print('go', flush=True)\nwhile True: pass"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "go\n"      # spinning from here on
        with open(f"/proc/{child.pid}/stat") as fh:
            assert "(x) S y)" in fh.read()
        assert quiet.own_running(child.pid) == 1
        assert quiet.own_running(child.pid) == 1
    finally:
        child.kill()
        child.wait()


def test_load_probe_polls_in_an_instrument_thread_and_means_the_polls(tmp_path):
    from alems.measure import threads as instrument_threads

    _write_stat(tmp_path, 1000, [100, 0, 0, 900, 0, 0, 0, 0])
    probe = quiet.LoadProbe(str(tmp_path), poll_s=0.001).start()
    deadline = time.monotonic() + 60
    while len(probe._others) < 5 and time.monotonic() < deadline:
        time.sleep(0.001)
    tid = probe._thread.native_id
    assert tid in instrument_threads.instrument_tids()   # never counted as workload
    assert probe._thread.daemon                         # never keeps the process alive
    cols = probe.stop()
    assert not probe._thread.is_alive()
    assert tid not in instrument_threads.instrument_tids()
    assert len(probe._others) >= 6                      # start, >= 4 in the thread, stop
    assert 990 <= cols["other_procs_running"][0] <= 1000   # the mean of the polls
    assert cols["quiet"][0] == 0
    assert cols["not_quiet_reason"] == (cols["quiet"][1], cols["quiet"][1])


def test_load_probe_with_nothing_readable_and_a_one_tick_run(tmp_path):
    cols = quiet.LoadProbe(str(tmp_path / "none"), poll_s=3600).start().stop()
    assert cols == {"other_procs_running": (None, "/proc/stat unreadable"),
                    "steal_fraction": (None, "the kernel reports no steal time here"),
                    "load_1m": (None, "/proc/loadavg unreadable"),
                    "quiet": (None, "background load unknown (/proc/stat unreadable)"),
                    "not_quiet_reason": ("background load unknown (/proc/stat unreadable)",
                                         "background load unknown (/proc/stat unreadable)")}
    (tmp_path / "stat").write_text("intr 5\nctxt 9\n")
    assert quiet.read_stat(str(tmp_path)) == (None, None, None)
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 0])
    probe = quiet.LoadProbe(str(tmp_path), poll_s=3600).start()
    _write_stat(tmp_path, 0, [100, 0, 0, 900, 0, 0, 0, 1])      # one tick, stolen
    assert probe.stop()["steal_fraction"] == (1.0, None)


def test_summary_defaults_and_rates_are_exact():
    import json

    t = np.array([0, 250 * MS, 500 * MS], np.int64)
    out, _ = build_columns(t, np.array([[0], [1_000_000], [3_000_000]]), [_energy()], None)
    res = SampleResult(table_from_columns(out), [], "rapl", 100.0, {}, None,
                       {"where": __import__("pathlib").Path("/x")})
    s = res.summary
    assert (s["duration_s"], s["achieved_hz"], s["requested_hz"]) == (0.5, 4.0, 100.0)
    assert (s["late_samples"], s["dropped_samples"], s["skipped_deadlines"],
            s["max_lateness_ns"]) == (0, 0, 0, 0)
    assert s["energy_source"] == "rapl" and s["avg_power_w"] == {"pkg": 6.0}
    assert res.metadata["summary"] == json.dumps(s, default=str, sort_keys=True)
    assert json.loads(res.metadata["summary"])["where"] == "/x"
    two = SampleResult(table_from_columns({k: v[:2] for k, v in out.items()}), [], "rapl",
                       1.0, {}, {}, {})
    assert two.summary["duration_s"] == 0.25 and two.summary["energy_j"] == {"pkg": 1.0}
    assert two.summary["achieved_hz"] == 4.0
    flat = SampleResult(table_from_columns({"t_ns": np.array([5, 5], np.int64),
                                            "pkg_energy_uj": np.array([0.0, 1.0])}),
                        [], "rapl", 1.0, {}, {}, {})
    assert flat.summary["avg_power_w"] == {"pkg": None} and flat.summary["achieved_hz"] == 0.0


def test_spans_after_a_gap_and_several_gaps_and_domains():
    t = np.array([0, 100 * MS, 400 * MS, 500 * MS, 900 * MS, 1000 * MS], np.int64)
    out = {"t_ns": t, "pkg_energy_uj": np.arange(6, dtype=np.float64) * 1e6,
           "dram_energy_uj": np.arange(6, dtype=np.float64) * 2e5}
    gaps_ = [{"domain": "pkg", "zone": "z", "start_ns": 100 * MS, "end_ns": 400 * MS,
              "gap_s": 0.3, "limit_s": 0.1},
             {"domain": "pkg", "zone": "z", "start_ns": 500 * MS, "end_ns": 900 * MS,
              "gap_s": 0.4, "limit_s": 0.1}]
    res = SampleResult(table_from_columns(out), [], "rapl", 10.0, {}, {}, {"wrap_gaps": gaps_})
    assert res.energy_uj() == {"pkg": None, "dram": 1e6}
    assert res.energy_uj(400 * MS, 500 * MS) == {"pkg": 1e6, "dram": 2e5}   # between gaps
    assert res.energy_uj(900 * MS, None) == {"pkg": 1e6, "dram": 2e5}       # after both
    assert res.energy_null_reason("pkg").startswith("a 0.4 s gap")          # the longest
    assert res.energy_null_reason("pkg", 0, 450 * MS).startswith("a 0.3 s gap")
    assert res.summary["energy_j"] == {"pkg": None, "dram": 1.0}
    assert res.counter_delta("pkg_energy_uj", 500 * MS, None) == 2e6


def test_streamed_result_is_converted_and_reloaded(tmp_path):
    import json

    import pyarrow.parquet as pq

    from alems.errors import AlemsError
    from alems.measure.names import PHASES_METADATA_KEY
    from alems.measure.stream import PartialWriter

    t = np.array([0, MS, 2 * MS], np.int64)
    cols, _ = build_columns(t, np.array([[0], [5], [9]]), [_energy()], None)
    final = tmp_path / "s.parquet"
    partial = tmp_path / "s.parquet.partial"
    schema = table_from_columns(cols).schema
    w = PartialWriter(partial, schema)
    w.write(cols)
    w.close()
    ends = Ends(schema)
    ends.update(cols)
    loads = []
    res = SampleResult(lambda: loads.append(1) or pq.read_table(final), [], "rapl", 1000.0,
                       {}, {}, {}, ends=ends, partial_path=str(partial))
    assert res.summary["energy_j"] == {"pkg": 9e-6} and loads == []   # never read
    res.write_parquet(final)
    assert res.partial_path is None and not partial.exists()
    meta = pq.read_schema(final).metadata
    assert json.loads(meta[b"summary"]) == json.loads(res.metadata["summary"])
    assert meta[PHASES_METADATA_KEY.encode()] == b"[]"
    np.testing.assert_array_equal(res.table.column("pkg_energy_uj").to_numpy(), [0, 5, 9])
    assert loads == []                                 # reloaded from the Parquet file
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]
    broken = SampleResult(lambda: None, [], "rapl", 1.0, {}, {}, {}, ends=ends,
                          partial_path=str(tmp_path / "gone.partial"))
    with pytest.raises(AlemsError) as ei:
        broken.write_parquet(tmp_path / "b.parquet")
    assert str(ei.value) == f"cannot read {tmp_path / 'gone.partial'}: No such file or directory"
    assert not (tmp_path / "b.parquet").exists()
