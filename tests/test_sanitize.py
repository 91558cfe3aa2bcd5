"""The C core under AddressSanitizer and UndefinedBehaviorSanitizer: csrc/*.c and
tests/sanitize_driver.c built with -fsanitize=address,undefined, run against a fake
powercap/MSR tree whose counters wrap while it samples (tests/fakehw.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

import fakehw

REPO = Path(__file__).resolve().parents[1]
CSRC = REPO / "csrc"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1",
            "-fno-omit-frame-pointer"]
# What a sanitizer prints when it finds something (it also exits non-zero).
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
RANGE_UJ = 1_000_000  # the package wraps every 30-50 ms of the fake profile


def _compiler() -> str:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    found = shutil.which(cc) or shutil.which("cc")
    if found is None:  # the package itself could not have been built either
        pytest.fail("no C compiler found: the sanitizer build needs one (as the core does)")
    return found


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("asan") / "sanitize_driver"
    cmd = [_compiler(), "-std=gnu11", "-pthread", "-Wall", "-Wextra", "-Werror", *SANITIZE,
           f"-I{CSRC}", *sorted(str(p) for p in CSRC.glob("*.c")),
           str(REPO / "tests" / "sanitize_driver.c"), "-o", str(out)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return out


@pytest.mark.slow
def test_the_c_core_runs_clean_under_asan_and_ubsan(driver, tmp_path):
    tree = fakehw.make_powercap_tree(tmp_path / "sys", pkg_range_uj=RANGE_UJ,
                                     core_range_uj=RANGE_UJ, dram_range_uj=RANGE_UJ,
                                     mmio_mirror=False)
    msr = str(tmp_path / "dev" / "cpu" / "{cpu}" / "msr")
    msr_targets = fakehw.make_msr(msr, [0], domains=("pkg",))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ,
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98"}
    with fakehw.EnergyWriter(tree.targets + msr_targets):
        run = subprocess.run([str(driver), *(t.path for t in tree.targets), str(RANGE_UJ),
                              msr.format(cpu=0), str(scratch)],
                             capture_output=True, text=True, env=env, timeout=300)
    report = run.stdout + run.stderr
    assert not any(r in report for r in REPORTS), report
    assert run.returncode == 0, report
    assert "sanitize_driver: all checks passed" in run.stdout
