"""Issue 18 items 4 and 9: one meaning of "quiet" (alems.measure.quiet) for runs, idle
baselines and --require-quiet; a baseline announced as not reused is not reused; waiting
for quiet on a machine that never gets quiet costs one stated timeout, not one per run.
No test here waits on the real machine: /proc, the clock and the probe are injected."""

from __future__ import annotations

import json

import pytest

from alems.experiment import baseline as bl
from alems.experiment import conditions
from alems.experiment.batch import BatchRunner
from alems.experiment.plan import BatchConfig
from alems.experiment.providers.scripted import ScriptedProvider
from alems.measure import quiet
from alems.store import db as store_db

import fakehw
from _fake_sampling import BusyReplaySampler
from test_baseline import CountingFactory
from test_batch import three_step_reply


def _machine(tmp_path, monkeypatch, *, procs_running: int, load_1m: float):
    """A /proc whose stat says `procs_running` (ours: 1 of them) and loadavg `load_1m`."""
    root = fakehw.make_proc(tmp_path / "proc", procs_running=procs_running)
    (root / "loadavg").write_text(f"{load_1m:.2f} 0.00 0.00 1/100 4242\n")
    monkeypatch.setenv("ALEMS_PROC_ROOT", str(root))
    monkeypatch.setattr(quiet, "own_running", lambda pid=None, proc_root=None: 1)


# ---------------------------------------------------------------- item 9: one meaning

@pytest.mark.parametrize("procs_running, load_1m, is_quiet", [
    (3, 0.0, False),     # two other tasks running, though the load average is still 0
    (1, 40.0, True),     # a load average left over from earlier work, nothing running now
])
def test_baseline_is_judged_quiet_as_a_run_is(tmp_path, monkeypatch, procs_running, load_1m,
                                              is_quiet):
    _machine(tmp_path, monkeypatch, procs_running=procs_running, load_1m=load_1m)
    run = quiet.LoadProbe().start().stop()            # what a run's row would say
    assert run["quiet"][0] == int(is_quiet)
    conn = store_db.connect(tmp_path / "x.db")
    f = CountingFactory([4.0])
    b = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1)
    assert b.state["quiet"] == int(is_quiet)
    assert b.state["not_quiet_reason"] == run["quiet"][1]
    stored = json.loads(conn.execute("SELECT state_json FROM baselines").fetchone()[0])
    assert stored["quiet"] == int(is_quiet)
    # a later batch (nothing trusted) reuses it exactly when it was quiet
    again = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1)
    assert (again.baseline_id == b.baseline_id) == is_quiet
    assert f.made == (1 if is_quiet else 2)


# ---------------------------------------------------------------- item 4: say = do

def test_busy_baseline_is_announced_as_not_reused_and_is_not(tmp_path, monkeypatch):
    _machine(tmp_path, monkeypatch, procs_running=6, load_1m=5.0)
    conn = store_db.connect(tmp_path / "x.db")
    f = CountingFactory([4.0])
    log: list[str] = []
    this_batch: set = set()
    b = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1, log=log.append,
                          trusted_ids=this_batch)
    assert any("this batch uses it, later batches measure their own" in m for m in log)
    # the batch that measured it keeps it …
    same = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1,
                             log=log.append, trusted_ids=this_batch)
    assert same.baseline_id == b.baseline_id and f.made == 1
    # … the next batch, on the same busy machine, does not reuse it, and says why
    log.clear()
    nxt = bl.get_or_measure(conn, f, "powercap", duration_s=0.01, repetitions=1,
                            log=log.append, trusted_ids=set())
    assert nxt.baseline_id != b.baseline_id and f.made == 2
    assert any(f"stored baseline #{b.baseline_id} was measured while the machine was not "
               "quiet" in m for m in log), log


# ---------------------------------------------------------------- item 9: waiting

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_wait_for_quiet_looks_until_quiet_or_timeout_without_sleeping():
    clock = FakeClock()
    verdicts = iter([(0, "busy a"), (0, "busy b"), (1, None)])

    def window(w):
        clock.t += w
        return next(verdicts)

    assert quiet.wait_for_quiet(10.0, window=window, clock=clock) == (True, 3.0, None)
    clock.t, looks = 0.0, []

    def never(w):
        looks.append(w)
        clock.t += w
        return 0, "3.00 other runnable task(s) on average (quiet: <= 0.5)"

    ok, waited, why = quiet.wait_for_quiet(5.0, window=never, clock=clock)
    assert not ok and waited == 5.0 and len(looks) == 5 and "other runnable" in why


def test_require_quiet_on_a_never_quiet_machine_waits_once_and_says_so(tmp_path, monkeypatch):
    clock = FakeClock()
    waits: list[float] = []

    def never_quiet(timeout_s, **kw):
        waits.append(timeout_s)
        clock.t += timeout_s
        return False, timeout_s, "2.00 other runnable task(s) on average (quiet: <= 0.5)"

    monkeypatch.setattr(conditions, "wait_for_quiet", never_quiet)
    log: list[str] = []
    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], repetitions=2, seed=5,
                      hz=200.0, db_path=tmp_path / "e.db", baseline_duration_s=0.02,
                      baseline_reps=1, group_id="g-q", require_quiet=True,
                      quiet_timeout_s=300.0)
    runner = BatchRunner(cfg, sampler_factory=lambda: BusyReplaySampler(
        pkg_w=2.0, core_w=None, busy_w=30.0, hz=200.0),
        provider_factory=lambda name: ScriptedProvider(three_step_reply, delay_s=0.001),
        log=log.append, progress=False)
    summary = runner.run()
    assert summary.ran == 4
    assert waits == [300.0] and clock.t == 300.0      # one timeout for the batch, not 4
    text = "\n".join(log)
    assert "waiting up to 300 s for a quiet machine" in text and quiet.QUIET_RULE in text
    assert text.count("machine not quiet after 300 s") == 1
    assert "every later run without waiting" in text


def test_quiet_gate_waits_before_every_run_while_the_machine_gets_quiet():
    calls: list[float] = []

    def quiet_soon(timeout_s, **kw):
        calls.append(timeout_s)
        return True, 1.0, None

    log: list[str] = []
    gate = conditions.QuietGate(60.0, log.append, wait=quiet_soon)
    assert [gate.before_run() for _ in range(3)] == [True, True, True]
    assert calls == [60.0] * 3 and len(log) == 1 and "up to 60 s" in log[0]


def test_fleet_node_keeps_its_own_busy_baseline_and_only_its_own(tmp_path, monkeypatch):
    """A node that measured its baseline on a busy machine runs its pairs with it (the
    driver sends it back); it does not loop re-measuring, and a baseline it did not
    measure (a previous batch's) is not reused."""
    from types import SimpleNamespace

    from alems.experiment.fleet.node import NodeWorker

    _machine(tmp_path, monkeypatch, procs_running=6, load_1m=5.0)

    class Executor:
        cfg = SimpleNamespace(baseline_max_age_s=3600.0, baseline_duration_s=0.01,
                              baseline_reps=1, cool_down_s=0.0)
        sampler_factory = CountingFactory([4.0])

        def measure(self, key, base):
            return SimpleNamespace(key=key, baseline_id=base.baseline_id, stop_batch=False)

    def node() -> NodeWorker:
        n = object.__new__(NodeWorker)   # the actor's body, without a Ray runtime
        n.executor, n.energy_source, n.runs_done, n.own_baselines = Executor(), "powercap", 0, set()
        return n

    a = node()
    fresh = a.run_pair(["k1"], None)["baseline"]
    assert fresh.state["quiet"] == 0
    fresh.baseline_id = 7                 # stored by the driver, sent back with the pair
    runs = a.run_pair(["k1", "k2"], fresh)["runs"]
    assert [(r.key, r.baseline_id) for r in runs] == [("k1", 7), ("k2", 7)]
    later = node()                        # a later batch's node on the same machine
    out = later.run_pair(["k1"], fresh)
    assert "baseline" in out and "not quiet" in out["why"]
