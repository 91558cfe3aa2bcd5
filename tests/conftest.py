"""Shared test set-up: hardware flags (each with the reason it is off) and fake roots.

rapl() / perf_hw() / IS_ROOT describe *this* machine; tests needing the real thing (marked
needs_rapl / needs_perf_hw, hence `hw`) skip with the reason, everything else runs against
the fake trees in tests/fakehw.py. Test tiers (markers) are described in pyproject.toml.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import fakehw` from any test

# Many tests start `python -m alems`; with PYTHONDONTWRITEBYTECODE set (some shells and CI
# images set it) every one of them recompiles the whole package, and pytest re-rewrites every
# test module. Caching bytecode for the test session only costs __pycache__ folders.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
# Output widths must not depend on who runs the tests: a terminal's (or pytest-xdist's
# workers') COLUMNS/LINES would wrap the tables; tests that need a width set it themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
# A suite started in the background by a script (`pytest … &` without job control) inherits
# Ctrl-C ignored, and so would every command it starts: the Ctrl-C tests would hang or fail.
# Python's own handler here; the commands the tests start get the default back at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

IS_ROOT = os.geteuid() == 0
IS_ROOT_REASON = "" if IS_ROOT else "not running as root"


# Hardware probes run on first use (a test marked needs_rapl / needs_perf_hw), not when
# this file is imported: collecting or running a test that needs no hardware costs nothing.
@functools.cache
def rapl() -> tuple[bool, str]:
    """(this machine has real RAPL energy counters, why not)."""
    try:
        from alems.measure.sources import availability_of
        av = availability_of("powercap", sysfs_root="/sys")
    except Exception as exc:  # the native core is not built
        return False, f"alems not importable: {exc}"
    return av.ok, av.reason + (f" (fix: {av.fix})" if av.fix else "")


@functools.cache
def perf_hw() -> tuple[bool, str]:
    """(hardware perf counters open here, why not)."""
    try:
        from alems.measure.sources import perf
        from alems.measure.sources.base import Roots
        col, av = perf.open_counter("instructions", *perf.HARDWARE["instructions"],
                                    roots=Roots.resolve("/sys", "/proc", None))
    except Exception as exc:
        return False, f"alems not importable: {exc}"
    return col is not None, av.reason


_HW_PROBES = {"needs_rapl": (rapl, "no real RAPL here"),
              "needs_perf_hw": (perf_hw, "no hardware perf counters here")}
needs_rapl = pytest.mark.needs_rapl
needs_perf_hw = pytest.mark.needs_perf_hw
needs_root = pytest.mark.skipif(not IS_ROOT, reason=IS_ROOT_REASON)


def pytest_collection_modifyitems(config, items):
    for item in items:  # a test that needs real hardware is an `hw` test
        if any(item.get_closest_marker(name) for name in _HW_PROBES):
            item.add_marker(pytest.mark.hw)
        if "cluster" in getattr(item, "fixturenames", ()):  # test_fleet's Ray cluster
            item.add_marker(pytest.mark.cluster)


def pytest_runtest_setup(item):
    for name, (probe, what) in _HW_PROBES.items():
        if item.get_closest_marker(name):
            ok, why = probe()
            if not ok:
                pytest.skip(f"{what}: {why}")


@pytest.fixture
def fake_roots(tmp_path):
    """Empty fake sysfs/proc roots and an MSR path template inside tmp_path. Every /proc read
    goes through the proc root, so it shows this test process, as a real one would (a link
    to its real entry, fakehw.link_process); a test that fakes the process's own entries
    removes the link first."""
    sysfs = tmp_path / "sys"
    proc = tmp_path / "proc"
    sysfs.mkdir()
    import fakehw
    fakehw.make_proc(proc)
    fakehw.link_process(proc)
    return {"sysfs_root": str(sysfs), "proc_root": str(proc),
            "msr_path": str(tmp_path / "dev" / "cpu" / "{cpu}" / "msr")}


def unprivileged_prefix() -> tuple[str, ...] | None:
    """argv prefix that runs a command without the power to bypass file permissions:
    nothing when we are not root; as root, setpriv dropping every capability (uid 0
    stays, so the interpreter under /root is still reachable). None if impossible."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = (setpriv, "--bounding-set=-all", "--inh-caps=-all")
    with tempfile.NamedTemporaryFile() as fh:
        os.chmod(fh.name, 0)
        probe = subprocess.run([*prefix, "cat", fh.name], capture_output=True)
    return prefix if probe.returncode != 0 else None
