"""Every /proc read goes through the configured proc root (ALEMS_PROC_ROOT, or the
sampler's `proc_root`), and nothing falls back to the real /proc behind a fake one.

A fake tree with known values stands for a process that does not exist on this machine
(FAKE_PID), so a read of the real /proc could not produce the values asserted here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import fakehw
from alems.errors import AlemsError
from alems.experiment.execute import read_cpu_model
from alems.measure import ctxsw, quiet, threads
from alems.measure.estimate import cpu_time_column
from alems.measure.sampler import Sampler
from alems.measure.sources.base import Roots

FAKE_PID = 4_000_000   # above the kernel's pid_max limit (2^22): never a live process
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass"


def _task(proc: Path, pid: int, tid: int, state: str, voluntary: int, involuntary: int) -> None:
    d = proc / str(pid) / "task" / str(tid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(f"{tid} (worker) {state} 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0\n")
    (d / "status").write_text(f"Name:\tworker\nvoluntary_ctxt_switches:\t{voluntary}\n"
                              f"nonvoluntary_ctxt_switches:\t{involuntary}\n")


@pytest.fixture
def proc(tmp_path) -> Path:
    """A fake proc root with FAKE_PID's three threads: two running, one sleeping."""
    root = fakehw.make_proc(tmp_path / "proc")
    _task(root, FAKE_PID, FAKE_PID, "R", 10, 1)
    _task(root, FAKE_PID, FAKE_PID + 1, "R", 20, 2)
    _task(root, FAKE_PID, FAKE_PID + 2, "S", 30, 3)
    return root


def test_threads_and_run_state_come_from_the_proc_root(proc):
    tids = [FAKE_PID, FAKE_PID + 1, FAKE_PID + 2]
    assert threads.workload_tids(FAKE_PID, str(proc)) == tids
    assert sorted(ctxsw.thread_ids(FAKE_PID, str(proc))) == tids
    assert quiet.own_running(FAKE_PID, str(proc)) == 2


def test_the_configured_root_is_the_default(proc, monkeypatch):
    monkeypatch.setenv("ALEMS_PROC_ROOT", str(proc))
    assert threads.workload_tids(FAKE_PID) == [FAKE_PID, FAKE_PID + 1, FAKE_PID + 2]
    assert quiet.own_running(FAKE_PID) == 2
    (proc / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Fake CPU 9000 @ 1.00GHz\n")
    assert read_cpu_model() == "Fake CPU 9000 @ 1.00GHz"


def test_switch_tracker_counts_the_fake_trees_threads(proc):
    tracker = ctxsw.SwitchTracker(FAKE_PID, proc_root=str(proc))
    tracker.poll()
    _task(proc, FAKE_PID, FAKE_PID + 1, "R", 25, 4)   # +5 voluntary, +2 involuntary
    tracker.poll()
    assert tracker.totals() == {"voluntary_ctxt_switches": 5, "nonvoluntary_ctxt_switches": 2}


def test_estimate_never_falls_back_to_the_real_proc(proc):
    """The fake root has no entry for this process: the estimate says so instead of
    reading the real /proc/<pid>/stat."""
    roots = Roots.resolve(str(proc.parent / "sys"), str(proc), None)
    with pytest.raises(AlemsError, match=str(proc)):
        cpu_time_column(roots, None, have_task_clock=False)


def test_estimate_reads_the_fake_roots_cpu_time(tmp_path):
    """A fake <pid>/stat that never advances: 0.3 s of real CPU time in this process must
    give an estimate of exactly 0 J (the real /proc would give about 0.3 s × W)."""
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    proc = fakehw.make_proc(tmp_path / "proc")
    (proc / str(os.getpid())).mkdir()
    (proc / str(os.getpid()) / "stat").write_text(
        f"{os.getpid()} (python) R 1 1 1 0 -1 0 0 0 0 0 500 600 70 80 20 0 1 0\n")
    roots = Roots.resolve(str(sysfs), str(proc), None)
    col, label = cpu_time_column(roots, None, have_task_clock=False)
    assert col.inputs[0].path == str(proc / str(os.getpid()) / "stat")
    assert label.startswith(str(proc))
    s = Sampler(200, sources=["slow"], sysfs_root=str(sysfs), proc_root=str(proc),
                estimate_w_per_core=10.0)
    with s:
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
    assert s.result.energy_source == "estimate"
    assert s.result.summary["estimate_model"]["cpu_time_source"].startswith(str(proc))
    assert s.result.summary["energy_j"]["pkg"] == 0.0


def test_no_measure_module_names_the_real_proc_or_sys():
    """Paths are built from the roots; '/proc' and '/sys' appear only in texts (messages,
    docstrings, comments). A literal path prefix in code is the bug this guards."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "alems"
    offenders = []
    for path in sorted((src / "measure").rglob("*.py")) + [src / "experiment" / "execute.py"]:
        tree = ast.parse(path.read_text())
        texts = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in texts \
                    and node.value.startswith(("/proc", "/sys")) \
                    and " " not in node.value:
                offenders.append(f"{path.relative_to(src)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr) and node.values \
                    and isinstance(node.values[0], ast.Constant) \
                    and str(node.values[0].value).startswith(("/proc/", "/sys/")):
                offenders.append(f"{path.relative_to(src)}:{node.lineno}: f-string")
    assert offenders == [], offenders


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
