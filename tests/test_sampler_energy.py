"""Energy through the real C core on fake hardware driven by a writer process."""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest

import fakehw
from alems.measure.names import POWER_CEILING_METADATA_KEY
from alems.measure.sampler import Sampler


def _run(sampler: Sampler, seconds: float):
    sampler.start()
    time.sleep(seconds)
    return sampler.stop()


def _check_truth(result, writer, domains, tol=0.01):
    t0, t1 = result.t_start_ns, result.t_end_ns
    for dom in domains:
        truth = writer.energy_j(dom, t0, t1)
        got = result.summary["energy_j"][dom]
        assert truth > 0
        assert got == pytest.approx(truth, rel=tol), (dom, got, truth)


def test_powercap_integrates_profile_with_wraps_and_mirrors(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"])
    with fakehw.EnergyWriter(tree.targets + tree.mirrors) as writer:
        time.sleep(0.05)
        result = _run(Sampler(1000, sources=["powercap"], **fake_roots), 1.6)
    assert result.energy_source == "powercap"
    assert result.domains == ["pkg", "core", "dram"]
    # The counters wrapped several times during the run (range 10 J at 20-35 W).
    raw_pkg_wraps = writer.energy_j("pkg", result.t_start_ns, result.t_end_ns) / 10.0
    assert raw_pkg_wraps > 3
    _check_truth(result, writer, ["pkg", "core", "dram"])
    # energy_uj over a sub-interval matches the profile too (interpolated bounds).
    mid = (result.t_start_ns + result.t_end_ns) // 2
    part = result.energy_uj(mid, result.t_end_ns)["pkg"] / 1e6
    assert part == pytest.approx(writer.energy_j("pkg", mid, result.t_end_ns), rel=0.01)
    # Cumulative column starts at 0 and never decreases.
    pkg = result.table.column("pkg_energy_uj").to_numpy()
    assert pkg[0] == 0 and (pkg[1:] >= pkg[:-1]).all()
    assert result.summary["dropped_samples"] == 0


def test_die_mirror_counted_once(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=True, die_mirror=True)
    with fakehw.EnergyWriter(tree.targets + tree.mirrors) as writer:
        time.sleep(0.05)
        result = _run(Sampler(500, sources=["powercap"], **fake_roots), 0.8)
    _check_truth(result, writer, ["pkg", "core"])


def test_two_sockets_summed(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], sockets=2, mmio_mirror=True)
    with fakehw.EnergyWriter(tree.targets + tree.mirrors) as writer:
        time.sleep(0.05)
        result = _run(Sampler(500, sources=["powercap"], **fake_roots), 0.8)
    _check_truth(result, writer, ["pkg", "core", "dram"])
    assert "zone_intel_rapl_1_energy_uj" in result.table.column_names  # per-socket detail


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_msr_layouts_with_32bit_wrap(fake_roots, vendor, monkeypatch):
    fakehw.make_cpus(fake_roots["sysfs_root"], packages=[0, 0], core_ids=[0, 0])
    stride = 8 if vendor == "amd" else 1  # AMD registers are adjacent numbers
    monkeypatch.setenv("ALEMS_MSR_STRIDE", str(stride))
    fakehw.make_proc(fake_roots["proc_root"],
                     vendor_id="AuthenticAMD" if vendor == "amd" else "GenuineIntel")
    targets = fakehw.make_msr(fake_roots["msr_path"], [0], vendor=vendor, esu=28, stride=stride)
    with fakehw.EnergyWriter(targets) as writer:
        time.sleep(0.05)
        result = _run(Sampler(1000, sources=["msr"], **fake_roots), 1.2)
    assert result.energy_source == "msr"
    domains = ["pkg", "core", "dram"] if vendor == "intel" else ["pkg", "core"]
    assert result.domains == domains
    # 2^32 counts of 2^-28 J = 16 J per wrap; the counter started just below the wrap.
    assert writer.energy_j("pkg", result.t_start_ns, result.t_end_ns) > 16
    _check_truth(result, writer, domains)


def test_parquet_roundtrip_with_phases(fake_roots, tmp_path):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"])
    with fakehw.EnergyWriter(tree.targets) as writer:
        s = Sampler(1000, sources=["powercap"], **fake_roots)
        with s:
            with s.phase("plan", kind="planning", step=1) as ph:
                time.sleep(0.3)
            time.sleep(0.1)
    result = s.result
    assert ph.end_ns - ph.start_ns >= 0.3e9
    got = result.energy_uj(ph.start_ns, ph.end_ns)["pkg"] / 1e6
    assert got == pytest.approx(writer.energy_j("pkg", ph.start_ns, ph.end_ns), rel=0.02)
    out = tmp_path / "run.parquet"
    result.write_parquet(out)
    t = pq.read_table(out)
    meta = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
    assert meta["energy_source"] == "powercap"
    assert '"planning"' in meta["alems.phases"] and "host" in meta and "kernel" in meta
    assert fake_roots["sysfs_root"] in meta["roots"]
    # the most each domain's zones can report: their highest powercap limit (plots clip to it)
    assert json.loads(meta[POWER_CEILING_METADATA_KEY]) == {
        d: max(uw) / 1e6 for d, uw in fakehw.MAX_POWER_UW.items()}
    assert t.num_rows == result.table.num_rows
    assert [p.name for p in result.phases] == ["plan"]
    assert not list(tmp_path.glob(".run.parquet*"))  # no temp file left behind
