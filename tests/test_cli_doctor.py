"""`alems doctor` end to end: the real CLI over fake roots (tests/fakehw.py), in-process
(run_app, as `alems` runs it) and, where it matters, in a real process.

The doctor is a report: it exits 0 whatever it finds, lists every source with its items,
says why each unreadable one is unreadable and how to fix it, and ends with what
`alems sample` would use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fakehw
from conftest import unprivileged_prefix
from inproc import alems_inproc

REPO = Path(__file__).resolve().parents[1]
ALL_SOURCES = {"powercap", "perf-power", "msr", "perf", "slow"}
PERF_COUNTERS = {"instructions", "cycles", "cache_references", "cache_misses", "branch_misses",
                 "task_clock_ns", "context_switches", "cpu_migrations", "page_faults"}


def _env(roots: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["ALEMS_SYSFS_ROOT"] = roots["sysfs_root"]
    env["ALEMS_PROC_ROOT"] = roots["proc_root"]
    env["ALEMS_MSR_PATH"] = roots["msr_path"]
    env.pop("ALEMS_CPU_VENDOR", None)
    env.pop("ALEMS_ESTIMATE_W_PER_CORE", None)
    env["COLUMNS"] = "200"
    return env


def doctor(roots: dict, *args: str, prefix: tuple[str, ...] | None = None
           ) -> subprocess.CompletedProcess:
    """`alems doctor ARGS` over `roots`: in-process (run_app, as `alems` runs it), or in a
    real process started through `prefix` (() for none)."""
    if prefix is None:
        return alems_inproc("doctor", *args, env=_env(roots))
    argv = [*prefix, sys.executable, "-c", "from alems.cli import main; main()", "doctor", *args]
    return subprocess.run(argv, env=_env(roots), capture_output=True, text=True, timeout=60)


def doctor_json(roots: dict) -> dict:
    proc = doctor(roots, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_name(report: dict) -> dict:
    return {s["name"]: s for s in report["sources"]}


def items(source: dict) -> dict:
    return {i["item"]: i for i in source["items"]}


# ---------------------------------------------------------------- nothing readable


def test_no_energy_hardware_lists_every_source_with_reason_and_fix(fake_roots):
    report = doctor_json(fake_roots)
    sources = by_name(report)
    assert set(sources) == ALL_SOURCES
    for name in ("powercap", "perf-power", "msr"):
        assert not sources[name]["ok"]
        assert sources[name]["reason"], name
    assert "class/powercap" in sources["powercap"]["reason"]
    assert "container" in sources["powercap"]["reason"]
    assert "mount" in sources["powercap"]["fix"]
    assert fake_roots["msr_path"].format(cpu=0) in sources["msr"]["reason"]
    assert report["energy_source"] == "estimate"
    assert report["sample_would_use"][0] == "estimate"
    assert report["roots"]["sysfs_root"] == fake_roots["sysfs_root"]


def test_every_perf_counter_is_listed_and_each_failure_says_why(fake_roots):
    perf = by_name(doctor_json(fake_roots))["perf"]
    listed = items(perf)
    if not perf["ok"] and not listed:  # perf_event_open refused altogether
        assert perf["reason"]
        return
    assert PERF_COUNTERS <= set(listed)
    for name, item in listed.items():
        if not item["ok"]:
            assert item["reason"], name


def test_text_report_ends_with_what_sample_would_use(fake_roots):
    proc = doctor(fake_roots, prefix=())  # the real process, once
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("alems sample would use: estimate")
    assert "not a measurement" in proc.stdout
    assert "fix:" in proc.stdout
    for name in ALL_SOURCES:
        assert name in proc.stdout


@pytest.mark.parametrize("level,words", [(3, "refused"), (2, "user space only"),
                                         (-1, "system-wide")])
def test_perf_event_paranoid_is_read_from_the_proc_root(fake_roots, level, words):
    Path(fake_roots["proc_root"], "sys/kernel/perf_event_paranoid").write_text(f"{level}\n")
    report = doctor_json(fake_roots)
    assert report["context"]["perf_event_paranoid"] == level
    assert words in report["context"]["meaning"]
    assert f"kernel.perf_event_paranoid = {level}" in doctor(fake_roots).stdout


# ---------------------------------------------------------------- fake RAPL present


def test_fake_powercap_is_used_and_mirrors_are_not_counted(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=True, die_mirror=True)
    with fakehw.EnergyWriter(tree.targets + tree.mirrors):  # a live counter, as on hardware
        report = doctor_json(fake_roots)
        text = doctor(fake_roots).stdout
    powercap = by_name(report)["powercap"]
    assert powercap["ok"], powercap
    zones = items(powercap)
    for zid in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        assert zones[zid]["ok"], zid
    assert not zones["intel-rapl-mmio:0"]["ok"]
    assert "mirror" in zones["intel-rapl-mmio:0"]["reason"]
    assert not zones["intel-rapl:1"]["ok"]  # the die mirroring package-0
    assert report["energy_source"] == "powercap"
    assert report["sample_would_use"][0] == "powercap"
    assert "would measure energy with powercap" in text


def test_a_counter_that_never_advances_is_not_offered_as_a_measurement(fake_roots):
    fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)  # no writer
    report = doctor_json(fake_roots)
    powercap = by_name(report)["powercap"]
    assert not powercap["ok"]
    assert "did not advance" in powercap["reason"]
    assert powercap["fix"]
    assert report["energy_source"] == "estimate"


def test_an_unreadable_zone_is_reported_and_the_rest_still_used(fake_roots):
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    core = Path(next(t.path for t in tree.targets if t.domain == "core"))
    core.unlink()
    core.mkdir()  # root reads any file; a directory in its place fails for everyone
    with fakehw.EnergyWriter([t for t in tree.targets if t.domain != "core"]):
        report = doctor_json(fake_roots)
    powercap = by_name(report)["powercap"]
    assert powercap["ok"]
    zone = items(powercap)["intel-rapl:0:0"]
    assert not zone["ok"]
    assert zone["reason"]
    assert report["energy_source"] == "powercap"


def test_fake_msr_is_found_when_powercap_is_absent(fake_roots):
    targets = fakehw.make_msr(fake_roots["msr_path"], [0], vendor="intel")
    with fakehw.EnergyWriter(targets):
        report = doctor_json(fake_roots)
    msr = by_name(report)["msr"]
    assert msr["ok"], msr
    assert "intel" in msr["reason"]
    assert report["energy_source"] == "msr"


def test_slow_sources_list_thermal_cpuidle_and_proc_stat(fake_roots):
    fakehw.make_thermal(fake_roots["sysfs_root"])
    fakehw.make_cpuidle(fake_roots["sysfs_root"])
    slow = by_name(doctor_json(fake_roots))["slow"]
    assert slow["ok"], slow
    listed = items(slow)
    for name in ("interrupts", "system_context_switches", "procs_running", "C6"):
        assert listed[name]["ok"], name
    thermal = [v for i, v in listed.items() if "x86_pkg_temp" in i]
    assert thermal and thermal[0]["ok"] and thermal[0]["reason"] == "package_temp_c"


# ---------------------------------------------------------------- not root


def test_root_only_energy_uj_names_platypus_and_the_fix(fake_roots):
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("cannot drop the right to read any file here (no setpriv)")
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)
    for t in tree.targets:
        os.chmod(t.path, 0)  # like a patched kernel's root-only energy_uj, for us too
    proc = doctor(fake_roots, "--json", prefix=prefix)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    powercap = by_name(report)["powercap"]
    assert not powercap["ok"]
    assert "PLATYPUS" in powercap["reason"]
    assert "chmod" in powercap["fix"]
    assert report["energy_source"] == "estimate"
