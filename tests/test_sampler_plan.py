"""One choice of sources (alems.measure.plan) shared by Sampler, `alems doctor` and the
batch; the SamplerProtocol both samplers satisfy; notes from the C core reach the summary."""

from __future__ import annotations

import dataclasses
import sys
import time

import pytest

import fakehw
from alems.cli.doctor_cmd import collect
from alems.errors import AlemsError
from alems.measure import ReplaySampler, SamplerProtocol, synthetic_table
from alems.measure import _native as native
from alems.measure.plan import energy_source_label, plan_sources
from alems.measure.sampler import Sampler
from alems.measure.spawn import spawn_gated
from alems.measure.sources import SOURCES, Roots


def _doctor_label(roots: dict) -> str:
    return collect(roots["sysfs_root"], roots["proc_root"], roots["msr_path"])["energy_source"]


def test_sampler_doctor_and_batch_label_agree_on_a_live_counter(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    with fakehw.EnergyWriter(tree.targets):
        label = energy_source_label(**fake_roots)
        with Sampler(hz=200, **fake_roots) as s:
            time.sleep(0.05)
        doctor = _doctor_label(fake_roots)
    assert label == s.energy_source == doctor == "powercap"


def test_sampler_doctor_and_batch_label_agree_on_a_frozen_counter(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)  # never advances
    plan = plan_sources(None, Roots.resolve(fake_roots["sysfs_root"], fake_roots["proc_root"],
                                            fake_roots["msr_path"]))
    assert plan.energy_source == energy_source_label(**fake_roots) == _doctor_label(fake_roots) \
        == "estimate"
    assert any("did not advance" in n for n in plan.notes)
    assert "estimate" in plan.used and plan.estimate["w_per_core"] > 0


def test_energy_source_label_of_named_sources(fake_roots):
    assert energy_source_label(["perf", "slow"], **fake_roots) == "estimate"
    with pytest.raises(AlemsError, match="source 'powercap' is not readable here"):
        energy_source_label(["powercap"], **fake_roots)  # named: an error, not a fallback
    with pytest.raises(AlemsError, match="choose one energy source"):
        energy_source_label(["powercap", "msr"], **fake_roots)


def test_both_samplers_satisfy_the_protocol(fake_roots):
    assert isinstance(Sampler(100, **fake_roots), SamplerProtocol)
    replay = ReplaySampler(synthetic_table(duration_s=0.1))
    assert isinstance(replay, SamplerProtocol)
    with replay as s:  # used only through the protocol's members
        with s.phase("step", kind="llm") as ph:
            assert ph.start_ns <= s.now_ns()
    assert s.result is not None and s.result.phases[0].name == "step"
    assert s.energy_source == "powercap"

    class NotASampler:
        def start(self) -> None: ...

    assert not isinstance(NotASampler(), SamplerProtocol)


def test_a_perf_grouping_fallback_reaches_the_summary(fake_roots, monkeypatch):
    """The C core's note (a counter read outside its group) is in source_notes, so the
    summary says how the counters were read (fault injection: ALEMS_PERF_TEST_NO_JOIN)."""
    perf = SOURCES["perf"]

    def refusing(roots, **ctx):
        disc = perf.discover(roots, **ctx)
        for col in disc.columns:
            col.inputs = [dataclasses.replace(
                spec, perf_flags=spec.perf_flags | native.PERF_TEST_NO_JOIN) for spec in col.inputs]
        return disc

    monkeypatch.setitem(SOURCES, "perf", dataclasses.replace(perf, discover=refusing))
    proc, release = spawn_gated([sys.executable, "-c", "pass"])
    s = Sampler(500, pid=proc.pid, sources=["perf"], **fake_roots)
    s.start()
    release()
    proc.wait()
    result = s.stop()
    notes = result.summary["source_notes"]
    assert any("could not join its group" in n and "read on its own" in n for n in notes), notes
    assert result.summary["counters"]["task_clock_ns"] > 0


def test_no_grouping_note_when_the_group_forms(fake_roots):
    with Sampler(500, sources=["perf"], **fake_roots) as s:
        time.sleep(0.02)
    assert not any("group" in n for n in s.result.summary["source_notes"])
