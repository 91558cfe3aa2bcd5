"""Shared test set-up: hardware flags (each with the reason it is off) and fake roots.

HAS_RAPL / HAS_PERF_HW / IS_ROOT describe *this* machine; tests needing the real thing
skip with the reason, everything else runs against the fake trees in tests/fakehw.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import fakehw` from any test

IS_ROOT = os.geteuid() == 0
IS_ROOT_REASON = "" if IS_ROOT else "not running as root"


def _rapl() -> tuple[bool, str]:
    try:
        from alems.measure.sources import availability_of
        av = availability_of("powercap", sysfs_root="/sys")
    except Exception as exc:  # the native core is not built
        return False, f"alems not importable: {exc}"
    return av.ok, av.reason + (f" (fix: {av.fix})" if av.fix else "")


def _perf_hw() -> tuple[bool, str]:
    try:
        from alems.measure.sources import perf
        from alems.measure.sources.base import Roots
        col, av = perf.open_counter("instructions", *perf.HARDWARE["instructions"],
                                    roots=Roots.resolve("/sys", "/proc", None))
    except Exception as exc:
        return False, f"alems not importable: {exc}"
    return col is not None, av.reason


HAS_RAPL, HAS_RAPL_REASON = _rapl()
HAS_PERF_HW, HAS_PERF_HW_REASON = _perf_hw()

needs_rapl = pytest.mark.skipif(not HAS_RAPL, reason=f"no real RAPL here: {HAS_RAPL_REASON}")
needs_perf_hw = pytest.mark.skipif(not HAS_PERF_HW,
                                   reason=f"no hardware perf counters here: {HAS_PERF_HW_REASON}")
needs_root = pytest.mark.skipif(not IS_ROOT, reason=IS_ROOT_REASON)


@pytest.fixture
def fake_roots(tmp_path):
    """Empty fake sysfs/proc roots and an MSR path template inside tmp_path."""
    sysfs = tmp_path / "sys"
    proc = tmp_path / "proc"
    sysfs.mkdir()
    import fakehw
    fakehw.make_proc(proc)
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
