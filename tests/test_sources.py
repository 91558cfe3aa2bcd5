"""Source discovery: which inputs, counted once, and why not (with the fix)."""

from __future__ import annotations

import errno
import os
import time

import pytest

import fakehw
from alems.measure._native import NativeError
from alems.measure.sources import ALL_SOURCES, availability_of, list_sources, msr, perf, powercap, slow
from alems.measure.sources.base import Roots
from conftest import perf_hw


def _roots(fr) -> Roots:
    return Roots.resolve(fr["sysfs_root"], fr["proc_root"], fr["msr_path"])


def test_powercap_counts_each_zone_once(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=True, die_mirror=True)
    disc = powercap.discover(_roots(fake_roots))
    zones = sorted(c.zone for c in disc.columns)
    assert zones == ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"]
    assert [c.domain for c in sorted(disc.columns, key=lambda c: c.zone)] == ["pkg", "core", "dram"]
    skipped = dict(disc.skipped)
    assert "intel-rapl-mmio:0" in skipped and "mirrors" in skipped["intel-rapl-mmio:0"].reason
    assert "intel-rapl:1" in skipped and "package-0" in skipped["intel-rapl:1"].reason
    assert "intel-rapl:1:0" in skipped
    pkg = next(c for c in disc.columns if c.domain == "pkg")
    assert pkg.wrap_raw == 10_000_000 + 1


def test_powercap_uses_mmio_when_it_is_the_only_package(fake_roots):
    root = os.path.join(fake_roots["sysfs_root"], "class/powercap")
    os.makedirs(root)
    fakehw._zone(fakehw.Path(root) / "intel-rapl-mmio:0", "package-0", 1000)
    disc = powercap.discover(_roots(fake_roots))
    assert [c.zone for c in disc.columns] == ["intel-rapl-mmio:0"]


def test_powercap_missing_tree_says_container(fake_roots):
    av = availability_of("powercap", **fake_roots)
    assert not av.ok and "container" in av.reason and "/sys/class/powercap" in av.fix


def test_powercap_permission_denied_explains_platypus(fake_roots, monkeypatch):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    monkeypatch.setattr(powercap, "try_probe",
                        lambda spec: (None, NativeError(errno.EACCES, "Permission denied")))
    av = availability_of("powercap", **fake_roots)
    assert not av.ok
    assert "PLATYPUS" in av.reason and "CVE-2020-8694" in av.reason
    assert "chmod" in av.fix and "udev" in av.fix and "root" in av.fix


def test_msr_intel_layout_units_and_absent_registers(fake_roots):
    fakehw.make_cpus(fake_roots["sysfs_root"], packages=[0, 0, 1, 1])
    fakehw.make_msr(fake_roots["msr_path"], [0, 2], vendor="intel", esu=14, domains=("pkg", "core"))
    disc = msr.discover(_roots(fake_roots), vendor_override="intel")
    got = sorted((c.domain, c.inputs[0].path.split("/")[-2]) for c in disc.columns)
    assert got == [("core", "0"), ("core", "2"), ("pkg", "0"), ("pkg", "2")]  # one CPU per package
    assert all(c.scale == pytest.approx(1e6 / 2 ** 14) and c.wrap_raw == 2 ** 32 for c in disc.columns)
    assert any("0x641" in a.reason for _, a in disc.skipped)  # uncore reads 0: not implemented


def test_msr_server_dram_uses_the_fixed_unit(fake_roots):
    """Skylake-X (family 6, model 0x55) counts DRAM in 15.3 µJ steps whatever the unit
    register says; a client part (model 0x9E) uses the register's unit."""
    fakehw.make_msr(fake_roots["msr_path"], [0], vendor="intel", esu=14, domains=("pkg", "dram"))
    cpuinfo = os.path.join(fake_roots["proc_root"], "cpuinfo")
    for model, dram_uj in ((0x55, 15.3), (0x9E, 1e6 / 2 ** 14)):
        with open(cpuinfo, "w") as fh:
            fh.write(f"processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
                     f"model\t\t: {model}\n\n")
        disc = msr.discover(_roots(fake_roots))
        scale = {c.domain: c.scale for c in disc.columns}
        assert scale["dram"] == pytest.approx(dram_uj)
        assert scale["pkg"] == pytest.approx(1e6 / 2 ** 14)


def test_msr_vendor_from_cpuinfo(fake_roots):
    fakehw.make_proc(fake_roots["proc_root"], vendor_id="AuthenticAMD")
    assert msr.vendor(_roots(fake_roots)) == "amd"
    fakehw.make_proc(fake_roots["proc_root"], vendor_id="HygonGenuine")
    assert msr.vendor(_roots(fake_roots)) == "amd"
    fakehw.make_proc(fake_roots["proc_root"], vendor_id="GenuineIntel")
    assert msr.vendor(_roots(fake_roots)) == "intel"
    assert msr.vendor(_roots(fake_roots), "amd") == "amd"


def test_msr_module_missing_gives_modprobe(fake_roots):
    roots = Roots(fake_roots["sysfs_root"], fake_roots["proc_root"], "/nonexistent/dev/cpu/{cpu}/msr")
    av = msr.available(roots)
    assert not av.ok and "does not exist" in av.reason
    assert msr._fail(FileNotFoundError(2, "x"), "/dev/cpu/0/msr", True).fix == "sudo modprobe msr"


def test_perf_software_counters_open_here():
    av = availability_of("perf")
    assert av.ok, av.reason
    for name in ("task_clock_ns", "context_switches", "page_faults"):
        assert name in av.reason


def test_perf_hardware_counters_open_or_say_why():
    col, av = perf.open_counter("instructions", *perf.HARDWARE["instructions"],
                                roots=Roots.resolve())
    has_perf_hw, why_not = perf_hw()
    if has_perf_hw:
        assert col is not None
    else:
        assert col is None and av.reason and "instructions" in av.reason, why_not


def test_perf_permission_reason_has_paranoid_and_sysctl(fake_roots):
    av = perf.why_not(PermissionError(errno.EACCES, "Permission denied"), _roots(fake_roots),
                      "power/energy-pkg", True)
    assert "perf_event_paranoid=2" in av.reason
    assert av.fix.endswith("sudo sysctl kernel.perf_event_paranoid=-1`")
    av = perf.why_not(OSError(errno.ENOENT, "No such file or directory"), _roots(fake_roots),
                      "cycles", False)
    assert "not supported here" in av.reason


def test_perf_power_pmu_from_sysfs(fake_roots):
    base = os.path.join(fake_roots["sysfs_root"], "bus/event_source/devices/power")
    os.makedirs(os.path.join(base, "events"))
    fakehw.Path(base, "type").write_text("4242\n")  # no such PMU type: open fails
    fakehw.Path(base, "cpumask").write_text("0\n")
    fakehw.Path(base, "events/energy-pkg").write_text("event=0x02\n")
    fakehw.Path(base, "events/energy-pkg.scale").write_text("2.3283064365386962890625e-10\n")
    fakehw.Path(base, "events/energy-pkg.unit").write_text("Joules\n")
    av = availability_of("perf-power", **fake_roots)
    assert not av.ok and "power/energy-pkg" in av.reason


def test_slow_sources_discovered(fake_roots):
    fakehw.make_thermal(fake_roots["sysfs_root"])
    fakehw.make_cpuidle(fake_roots["sysfs_root"], ncpu=3)
    disc = slow.discover(_roots(fake_roots))
    names = [c.name for c in disc.columns]
    assert names.count("package_temp_c") == 1  # x86_pkg_temp preferred over acpitz
    assert "thermal_zone1" in next(c.zone for c in disc.columns if c.name == "package_temp_c")
    c6 = next(c for c in disc.columns if c.name == "cstate_C6_time_us")
    assert len(c6.inputs) == 3  # summed over CPUs in one slot
    assert {"interrupts", "system_context_switches", "procs_running"} <= set(names)


def test_list_sources_covers_every_source(fake_roots):
    reports = list_sources(**fake_roots)
    assert [r.name for r in reports] == list(ALL_SOURCES)
    for r in reports:
        assert r.availability.ok or r.availability.reason


def test_msr_amd_one_cpu_per_core_and_package(fake_roots, monkeypatch):
    monkeypatch.setenv("ALEMS_MSR_STRIDE", "8")
    fakehw.make_cpus(fake_roots["sysfs_root"], packages=[0, 0, 0, 0], core_ids=[0, 0, 1, 1])
    fakehw.make_msr(fake_roots["msr_path"], [0, 2], vendor="amd", stride=8)
    disc = msr.discover(_roots(fake_roots), vendor_override="amd")
    got = sorted((c.domain, c.inputs[0].path.split("/")[-2]) for c in disc.columns)
    assert got == [("core", "0"), ("core", "2"), ("pkg", "0")]
    assert all(c.inputs[0].offset % 8 == 0 for c in disc.columns)


# ---------------------------------------------------------------- live or frozen counters


def test_a_frozen_energy_counter_is_not_passed_off_as_a_measurement(fake_roots):
    """A counter that reads but never advances (seen on a VM's perf power PMU) must not
    become the energy source: doctor says why, and automatic selection falls back to the
    labelled estimate."""
    from alems.measure.sampler import Sampler
    from alems.measure.sources import list_sources

    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)  # no writer: frozen
    report = {r.name: r for r in list_sources(**fake_roots)}["powercap"]
    assert not report.availability.ok
    assert "did not advance" in report.availability.reason
    with Sampler(hz=200, **fake_roots) as s:
        time.sleep(0.05)
    assert s.energy_source == "estimate"
    assert any("did not advance" in n for n in s.result.summary["source_notes"])


def test_a_live_energy_counter_is_chosen_automatically(fake_roots):
    from alems.measure.sampler import Sampler

    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    with fakehw.EnergyWriter(tree.targets):
        with Sampler(hz=200, **fake_roots) as s:
            time.sleep(0.05)
    assert s.energy_source == "powercap"
    assert s.result.summary["energy_j"]["pkg"] > 0
