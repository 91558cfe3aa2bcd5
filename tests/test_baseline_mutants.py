"""Exact rules of baseline reuse that mutation testing found unguarded (docs/TESTING.md):
the per-CPU busy margin, window length and count, age, state changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from alems.errors import AlemsError
from alems.experiment import baseline as bl

READ_LOAD_1M = bl.read_load_1m     # the real reader (the fixture below replaces it)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
STATE = {"host": "h", "governor": "performance", "energy_source": "powercap"}


def _b(**kw) -> bl.Baseline:
    args = dict(energy_source="powercap", duration_s=5.0, repetitions=3,
                power_w={"pkg": 4.0}, measured_at=(NOW - timedelta(seconds=10)).isoformat(),
                state=dict(STATE, load_1m=0.0, cpus=4))
    args.update(kw)
    return bl.Baseline(**args)


def test_not_quiet_is_the_runs_rule_stored_with_the_baseline():
    """(The per-CPU load margin of earlier versions is gone: a baseline is judged by the
    runs' quiet rule over its own windows, alems.measure.quiet.)"""
    assert bl.not_quiet({"quiet": 0, "not_quiet_reason": "2.00 other"}) == (
        "the machine was not quiet (2.00 other)")
    assert bl.not_quiet({"quiet": 1}) is None and bl.not_quiet({}) is None
    assert bl.not_quiet({"quiet": None}) is None


def test_staleness_reasons_in_order_and_exact():
    now_state = dict(STATE, load_1m=0.0)
    assert bl.staleness(None, now_state) == "no stored baseline"
    assert bl.staleness(_b(), now_state, now=NOW) is None
    assert bl.staleness(_b(), now_state, now=NOW, duration_s=5.0, repetitions=3) is None
    assert bl.staleness(_b(duration_s=4.99), now_state, now=NOW, duration_s=5.0) == (
        "stored baseline used 4.99 s windows, 5 s requested")
    assert bl.staleness(_b(repetitions=2), now_state, now=NOW, repetitions=3) == (
        "stored baseline has 2 window(s), 3 requested")
    busy = _b(state=dict(STATE, quiet=0, not_quiet_reason="3.00 other"))
    assert bl.staleness(busy, now_state, now=NOW) == (
        "stored baseline #None was measured while the machine was not quiet (3.00 other)")
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
    for bad in (0, -1.0, float("nan"), bl.MAX_DURATION_S + 1):
        with pytest.raises(AlemsError, match="baseline duration must be > 0"):
            bl.measure(lambda: None, duration_s=bad)
    for bad in (0, 1.5, -2):
        with pytest.raises(AlemsError, match="repetitions must be a positive integer"):
            bl.measure(lambda: None, repetitions=bad)


# ------------------------------------------------------------------ measuring

class _Result:
    """A window of an idle machine: pkg_w on the package, gpu_w on one GPU (µJ = W × ns / 1e3);
    energies are only given for the window's own bounds."""

    def __init__(self, pkg_w, gpu_w, span_ns, source):
        self.energy_source = source
        self.t_start_ns, self.t_end_ns = 7_000_000_000, 7_000_000_000 + span_ns
        self.summary = {} if gpu_w is None else {
            "gpus": [{"index": 0, "name": "H200", "column": "gpu0_energy_uj"}]}
        self.pkg_w, self.gpu_w = pkg_w, gpu_w

    def _span(self, t0, t1):
        assert (t0, t1) == (self.t_start_ns, self.t_end_ns)
        return t1 - t0

    def energy_uj(self, t0, t1):
        return {"pkg": self.pkg_w * self._span(t0, t1) / 1e3, "dram": None, "bogus": 1e12}

    def counter_delta(self, name, t0, t1):
        assert name == "gpu0_energy_uj"
        return self.gpu_w * self._span(t0, t1) / 1e3


class _Factory:
    def __init__(self, pkg_w, gpu_w=None, span_ns=500_000_000, source="powercap"):
        self.pkg_w, self.gpu_w, self.span_ns, self.source = pkg_w, gpu_w, span_ns, source
        self.made = 0

    def __call__(self):
        i = self.made
        self.made += 1
        f = self

        class Sampler:
            def start(self):
                pass

            def stop(self):
                return _Result(f.pkg_w[i % len(f.pkg_w)],
                               None if f.gpu_w is None else f.gpu_w[i % len(f.gpu_w)],
                               f.span_ns, f.source)
        return Sampler()


def test_measure_powers_per_domain_and_gpu_exactly():
    slept = []
    b = bl.measure(_Factory([4.0, 6.0], [50.0, 70.0]), duration_s=0.5, repetitions=2,
                   sleep=slept.append)
    assert slept == [0.5, 0.5]
    assert b.power_w == {"pkg": 5.0, "gpu": 60.0}
    assert b.power_w_std["pkg"] == pytest.approx(2 ** 0.5, rel=1e-12)
    assert b.power_w_std["gpu"] == pytest.approx(200 ** 0.5, rel=1e-12)
    assert (b.energy_source, b.duration_s, b.repetitions) == ("powercap", 0.5, 2)
    assert isinstance(b.duration_s, float) and isinstance(b.measured_t_ns, int)
    assert b.state["gpus"] == ["0:H200"] and b.state["energy_source"] == "powercap"
    one = bl.measure(_Factory([3.0]), duration_s=bl.MAX_DURATION_S, repetitions=1,
                     sleep=lambda s: None)
    assert one.power_w == {"pkg": 3.0} and one.power_w_std == {"pkg": None}
    assert "gpus" not in one.state
    unknown = bl.measure(_Factory([3.0], source=None), duration_s=1, repetitions=1,
                         sleep=lambda s: None)
    assert unknown.energy_source == "unknown" and unknown.state["energy_source"] == "unknown"
    with pytest.raises(AlemsError) as ei:
        bl.measure(_Factory([3.0], span_ns=0), duration_s=1, repetitions=1,
                   sleep=lambda s: None)
    assert str(ei.value) == ("baseline window had zero duration; the sampler clock did not "
                             "advance")


def test_machine_state_and_readers(tmp_path):
    import os

    state = bl.machine_state("powercap", ["0:H200"])
    assert state["gpus"] == ["0:H200"] and state["energy_source"] == "powercap"
    assert state["kernel"] == os.uname().release and state["cpus"] == os.cpu_count()
    assert "gpus" not in bl.machine_state("powercap") and "gpus" not in bl.machine_state(
        "powercap", [])
    gov = tmp_path / "devices/system/cpu/cpu0/cpufreq/scaling_governor"
    assert bl.read_governor(str(tmp_path)) is None
    gov.parent.mkdir(parents=True)
    gov.write_text("performance\n")
    assert bl.read_governor(str(tmp_path)) == "performance"
    gov.write_text("\n")
    assert bl.read_governor(str(tmp_path)) is None
    assert READ_LOAD_1M(str(tmp_path)) is None
    (tmp_path / "loadavg").write_text("1.25 0.5 0.1 2/300 77\n")
    assert READ_LOAD_1M(str(tmp_path)) == 1.25
    (tmp_path / "loadavg").write_text("busy\n")
    assert READ_LOAD_1M(str(tmp_path)) is None
    (tmp_path / "loadavg").write_text("")
    assert READ_LOAD_1M(str(tmp_path)) is None


def test_gpu_names():
    r = _Result(1.0, 2.0, 10, "powercap")
    r.summary["gpus"].append({"index": 3, "name": "A100", "column": "x"})
    assert bl.gpu_names(r) == ["0:H200", "3:A100"]
    assert bl.gpu_names(_Result(1.0, None, 10, "powercap")) is None
    assert bl.gpu_names(object()) is None


# ------------------------------------------------------------------ reuse and the keeper

def _db(tmp_path):
    from alems.store import db as store_db

    return store_db.connect(tmp_path / "e.db")


class _Probe:
    """The background load over the baseline's windows, as set by the test."""
    quiet, reason = 1, None

    def start(self):
        return self

    def stop(self):
        return {"other_procs_running": (0.0 if self.quiet else 5.0, None),
                "steal_fraction": (None, "none"), "load_1m": (0.0, None),
                "quiet": (self.quiet, self.reason),
                "not_quiet_reason": (self.reason, self.reason)}


@pytest.fixture(autouse=True)
def _idle_machine(monkeypatch):
    """The machine state as the baselines see it: quiet, whatever this machine is doing."""
    from alems.measure import quiet

    monkeypatch.setattr(bl, "read_load_1m", lambda proc_root=None: 0.0)
    monkeypatch.setattr(quiet, "LoadProbe", _Probe)
    _Probe.quiet, _Probe.reason = 1, None


def test_get_or_measure_logs_why_and_reuses_exactly(tmp_path, monkeypatch):
    conn = _db(tmp_path)
    log = []
    f = _Factory([4.0, 6.0])
    b = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=2, log=log.append)
    assert log == ["measuring idle baseline (2 x 0.01 s): no stored baseline"]
    assert f.made == 2 and b.baseline_id is not None
    again = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=2,
                              log=log.append)
    assert f.made == 2 and again.baseline_id == b.baseline_id and again.power_w == b.power_w
    bl.get_or_measure(conn, f, "powercap", duration_s=0.02, repetitions=2, log=log.append)
    assert log[-1] == ("measuring idle baseline (2 x 0.02 s): stored baseline used 0.01 s "
                       "windows, 0.02 s requested")
    bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=3, log=log.append)
    assert log[-1] == ("measuring idle baseline (3 x 0.01 s): stored baseline has 2 window(s), "
                       "3 requested")
    bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1, log=log.append,
                      force=True)
    assert log[-1] == "measuring idle baseline (1 x 0.01 s): re-measure requested"
    bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1, log=log.append,
                      force="the runs said so")
    assert log[-1] == "measuring idle baseline (1 x 0.01 s): the runs said so"
    gpu = bl.get_or_measure(conn, _Factory([4.0], [9.0]), "powercap", duration_s=0.01,
                            repetitions=1, log=log.append, gpus=["0:H200"])
    assert gpu.state["gpus"] == ["0:H200"] and log[-1].endswith(
        "gpus changed (None -> ['0:H200'])")


def test_busy_baseline_is_trusted_only_by_the_process_that_measured_it(tmp_path):
    conn = _db(tmp_path)
    _Probe.quiet, _Probe.reason = 0, "5.00 other runnable task(s)"
    log, trusted = [], set()
    f = _Factory([4.0])
    b = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1,
                          log=log.append, trusted_ids=trusted)
    assert trusted == {b.baseline_id}
    assert log[-1] == (f"warning: idle baseline #{b.baseline_id} measured while the machine "
                       "was not quiet (5.00 other runnable task(s)); it overstates idle "
                       "power: this batch uses it, later batches measure their own")
    _Probe.quiet, _Probe.reason = 1, None
    same = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1,
                             log=log.append, trusted_ids=trusted)
    assert same.baseline_id == b.baseline_id and f.made == 1
    other = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1,
                              log=log.append, trusted_ids=set())
    assert other.baseline_id != b.baseline_id and f.made == 2
    assert log[-1] == (f"measuring idle baseline (1 x 0.01 s): stored baseline "
                       f"#{b.baseline_id} was measured while the machine was not quiet "
                       "(5.00 other runnable task(s))")
    with pytest.raises(AlemsError) as ei:
        bl.get_or_measure(conn, _Factory([4.0], source="estimate"), "powercap",
                          duration_s=0.01, repetitions=1, force=True)
    assert str(ei.value) == ("baseline sampler used energy source 'estimate', runs use "
                             "'powercap'; pass the same --sources to both")


def test_keeper_remeasures_once_per_bad_baseline(tmp_path):
    conn = _db(tmp_path)
    log = []
    f = _Factory([4.0])
    keeper = bl.BaselineKeeper(conn, f, "powercap", duration_s=0.01, repetitions=1,
                               max_age_s=3600.0, log=log.append)
    b1 = keeper.current()
    assert keeper.current().baseline_id == b1.baseline_id and f.made == 1
    keeper.check_run([1, "t"], {"dynamic_energy_uj": 5.0}, b1)
    assert keeper.current().baseline_id == b1.baseline_id and f.made == 1
    keeper.check_run([2, "t"], {"dynamic_energy_uj": -5.0}, b1)
    assert log[-1].startswith("warning: run [2, 't'] has negative dynamic energy")
    b2 = keeper.current()
    assert b2.baseline_id != b1.baseline_id and f.made == 2
    assert log[-1].startswith("measuring idle baseline (1 x 0.01 s): run [2, 't'] has negative")
    keeper.check_run([3, "t"], {"dynamic_energy_uj": -1.0}, b1)   # b1 was replaced already
    assert keeper.current().baseline_id == b2.baseline_id and f.made == 2
    keeper.check_run([4, "t"], {"dynamic_energy_uj": -1.0}, b2)
    assert keeper.current().baseline_id not in (b1.baseline_id, b2.baseline_id)
    assert f.made == 3 and keeper.trusted >= {b1.baseline_id, b2.baseline_id}


def test_measure_keeps_the_quiet_rules_fields_of_the_windows(monkeypatch):
    """The baseline stores what the runs' quiet rule read over its windows, and only that."""
    from alems.measure import quiet

    class Probe:
        def start(self):
            return self

        def stop(self):
            return {"other_procs_running": (1.5, ""), "steal_fraction": (0.25, ""),
                    "quiet": (False, ""), "not_quiet_reason": ("steal 25 %", ""),
                    "load_mean": (3.0, "")}

    monkeypatch.setattr(quiet, "LoadProbe", Probe)
    b = bl.measure(_Factory([3.0]), duration_s=1, repetitions=1, sleep=lambda s: None)
    assert (b.state["other_procs_running"], b.state["steal_fraction"], b.state["quiet"],
            b.state["not_quiet_reason"]) == (1.5, 0.25, False, "steal 25 %")
    assert "load_mean" not in b.state
