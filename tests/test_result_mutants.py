"""Exact rules of `alems.measure.result` that mutation testing found unguarded
(docs/TESTING.md): phase rows (a traced span's parent span over containment, an equal end is
still inside, the open phase's end), each phase's energy and its null reason asked for that
phase, counter deltas over perf columns with nulls (the span's last sample, at least two
non-null samples inside the span), and a masked column's first and last values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from alems.measure.names import PHASES_METADATA_KEY
from alems.measure.phases import PARENT_SPAN_ID, SPAN_ID, Phase
from alems.measure.result import SampleResult, _first_last, phase_rows

S = 1_000_000_000


def _result(n=3, phases=(), counter=None):
    cols = {"t_ns": pa.array([i * S for i in range(n)], pa.int64()),
            "pkg_energy_uj": pa.array([10e6 * i for i in range(n)], pa.float64())}
    if counter is not None:
        cols["c"] = pa.array(counter, pa.int64())
    return SampleResult(pa.table(cols), list(phases), "powercap", 1.0)


def test_phase_rows_parents_ends_and_energy():
    phases = [Phase("outer", "step", 0, 2 * S), Phase("inner", "step", S, 2 * S),
              Phase("open", "step", S // 2, None),
              Phase("a", "span", 0, S, {SPAN_ID: "a"}),
              Phase("b", "span", S // 5, S * 4 // 5, {SPAN_ID: "b", PARENT_SPAN_ID: "gone"}),
              Phase("c", "span", S * 3 // 10, S * 4 // 10, {SPAN_ID: "c", PARENT_SPAN_ID: "a"})]
    rows = {r["name"]: r for r in phase_rows(_result(phases=phases))}
    seq = {name: r["seq"] for name, r in rows.items()}
    assert [r["name"] for r in phase_rows(_result(phases=phases))] == [
        "outer", "a", "b", "c", "open", "inner"]
    assert rows["inner"]["parent_seq"] == seq["open"]        # same end: still inside
    assert rows["open"]["end_ns"] == 2 * S and rows["open"]["parent_seq"] == seq["outer"]
    assert rows["b"]["parent_seq"] == seq["outer"]           # unknown parent span: containment
    assert rows["c"]["parent_seq"] == seq["a"]               # its parent span, not `b` around it
    assert rows["inner"]["energy_uj"] == pytest.approx(10e6)
    assert rows["inner"]["domains_energy_uj"] == {"pkg": pytest.approx(10e6)}
    closed = {r["name"]: r for r in phase_rows(_result(phases=phases), t_end_ns=S * 3 // 2)}
    assert closed["open"]["end_ns"] == S * 3 // 2 and closed["open"]["duration_ns"] == S
    assert closed["inner"]["end_ns"] == 2 * S                 # a closed phase keeps its end


def test_phase_energy_from_two_samples_and_none_without_samples():
    two = phase_rows(_result(n=2, phases=[Phase("p", "step", 0, S)]))
    assert two[0]["energy_uj"] == pytest.approx(10e6)
    one = phase_rows(_result(n=1, phases=[Phase("p", "step", 0, S)]))
    assert one[0]["energy_uj"] is None
    bare = SimpleNamespace(phases=[Phase("p", "step", 0, S)], t_end_ns=S)   # no domains
    assert phase_rows(bare)[0]["domains_energy_uj"] == {}
    no_table = SimpleNamespace(phases=[Phase("p", "step", 0, S)], t_end_ns=S,
                               domains=["pkg"], table=None)
    assert phase_rows(no_table)[0]["energy_uj"] is None


def test_each_phase_asks_for_its_own_null_reason():
    base = _result()
    asked = []

    def reason(domain, t0_ns, t1_ns):
        asked.append((domain, t0_ns, t1_ns))
        return "a gap" if (domain, t0_ns, t1_ns) == ("pkg", 0, S) else None

    fake = SimpleNamespace(phases=[Phase("gap", "step", 0, S), Phase("ok", "step", S, 2 * S)],
                           t_end_ns=2 * S, domains=["pkg"], table=base.table,
                           energy_null_reason=reason)
    rows = phase_rows(fake)
    assert rows[0]["energy_uj"] is None and rows[1]["energy_uj"] == pytest.approx(10e6)
    assert asked == [("pkg", 0, S), ("pkg", S, 2 * S)]


def test_counter_delta_over_nulls():
    r = _result(n=5, counter=[10, 15, None, 30, 40])
    assert r.counter_delta("missing", 0, S) is None
    assert r.counter_delta("c", 0, 3 * S) == pytest.approx(20)     # ends on a sample: its own
    assert r.counter_delta("c", 0, S * 5 // 2) is None             # ends where it is null
    assert r.counter_delta("c", S * 7 // 2, 4 * S) is None         # one non-null sample inside
    assert r.counter_delta("c", 3 * S, 4 * S) == pytest.approx(10)


def test_first_and_last_of_a_masked_column():
    assert _first_last(np.ma.masked_array([1, 2, 3, 4], mask=[1, 0, 0, 1])) == (2, None)
    assert _first_last(np.ma.masked_array([1, 2, 3, 4], mask=[1, 0, 1, 0])) == (2, 4)
    assert _first_last(np.ma.masked_array([1, 2], mask=[1, 1])) == (None, None)
    assert _first_last(np.array([5, 6, 7])) == (5, 7)


def test_whole_run_counter_delta_and_every_domains_energy():
    r = _result(n=5, counter=[10, 15, None, 30, 40])
    assert r.counter_delta("c") == 30                        # last minus the first value
    cols = {"t_ns": pa.array([0, S], pa.int64()), "pkg_energy_uj": [0.0, 5e6],
            "core_energy_uj": [0.0, 2e6], "x_energy_uj": pa.array([0, 7], pa.int64())}
    two = SampleResult(pa.table(cols), [], "powercap", 1.0)
    assert two.energy_uj() == {"pkg": 5e6, "core": 2e6}
    assert "x_energy_uj" not in two.counter_columns()         # an energy column, not a counter


def test_a_counter_that_never_ran_is_warned_about_exactly():
    r = _result(n=3, counter=[None, None, None])
    assert r.summary["counters"]["c"] is None
    assert ("counters.c is null: the perf counter has no value at the run's end (it never "
            "ran: time_running = 0, no free hardware counter for it)") in r.summary["warnings"]


def test_write_failures_name_the_path_and_the_reason(tmp_path, monkeypatch):
    from alems.errors import AlemsError
    from alems.measure import result as result_mod
    from alems.measure import stream

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result_mod, "write_parquet_atomic", full)
    out = tmp_path / "s.parquet"
    with pytest.raises(AlemsError) as ei:
        _result().write_parquet(out)
    assert str(ei.value) == (f"cannot write {out}: No space left on device; choose a writable "
                             "location")
    monkeypatch.setattr(stream, "stream_to_parquet", full)
    streamed = SampleResult(_result().table, [], "powercap", 1.0, partial_path="/x/part.arrow")
    with pytest.raises(AlemsError) as ei:
        streamed.write_parquet(out)
    assert str(ei.value) == (f"cannot write {out}: No space left on device; the samples stay "
                             "in /x/part.arrow")


def test_longest_gap_of_two_samples_at_one_instant_is_zero():
    same = SampleResult(pa.table({"t_ns": pa.array([S, S], pa.int64()),
                                  "pkg_energy_uj": [0.0, 0.0]}), [], "powercap", 1.0)
    assert same.summary["max_gap_ns"] == 0


# ------------------------------------------------------------------ columns (measure/columns.py)

def test_null_bits_mask_counters_and_gauges_and_counters_stay_integers():
    from alems.measure.columns import build_columns
    from alems.measure.sources.base import Column

    cols = [Column("page_faults", [], "counter"), Column("procs_running", [], "gauge")]
    t = np.array([0, S, 2 * S], np.int64)
    raw = np.array([[0, 3], [100, 4], [150, 5]], np.int64)
    nulls = np.array([0b01, 0b10, 0], np.uint64)      # bit i: slot i has no value in that row
    out, _ = build_columns(t, raw, cols, None, nulls)
    faults, procs = out["page_faults"], out["procs_running"]
    assert faults.dtype == np.int64                   # an integer column stays a counter
    assert list(np.ma.getmaskarray(faults)) == [True, False, False]
    assert list(faults.compressed()) == [0, 50]       # counted from its first non-null value
    assert list(np.ma.getmaskarray(procs)) == [False, True, False]
    assert list(np.ma.getdata(procs)) == [3, 4, 5]
    plain, _ = build_columns(t, raw, cols, None)
    assert plain["page_faults"].dtype == np.int64 and list(plain["page_faults"]) == [0, 100, 150]


def test_a_loaded_result_reads_its_table_once_asked_and_json_takes_any_value(tmp_path):
    from alems.measure.result import Ends

    table = _result().table
    loads = []
    lazy = SampleResult(lambda: loads.append(1) or table, [], "powercap", 1.0,
                        ends=Ends.of_table(table))
    assert loads == [] and lazy.table.equals(table) and lazy.table.equals(table)
    assert loads == [1]                                     # loaded once, kept
    r = _result(phases=[Phase("p", "step", 0, S, {"file": tmp_path / "x"})])
    assert f'"file": "{tmp_path / "x"}"' in r.file_metadata()[PHASES_METADATA_KEY]
    r.update_summary(output=tmp_path / "o.parquet")
    assert f'"output": "{tmp_path / "o.parquet"}"' in r.metadata["summary"]


def test_read_time_per_sample_needs_samples():
    r = SampleResult(_result().table, [], "powercap", 1.0,
                     {"thread_cpu_ns": 5, "read_ns_total": 0, "samples": 0})
    assert r.summary["read_ns_per_sample"] is None and r.summary["sampler_cpu_s"] == 5e-9
