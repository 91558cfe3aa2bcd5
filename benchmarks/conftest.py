"""Shared helpers for the sampler benchmarks: a static fake RAPL tree, a fake MSR file,
a deterministic CPU-bound workload, thread CPU clocks, and a figures table that is
printed at the end of the session (run pytest with -s to see it live too)."""

from __future__ import annotations

import os
import struct
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "src", REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# Four energy domains, as the target asks: package, core, uncore, dram.
RAPL_DOMAINS = (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core"),
                ("intel-rapl:0:1", "uncore"), ("intel-rapl:0:2", "dram"))
MAX_RANGE_UJ = 262143328850

# A deterministic CPU-bound workload that reports its own wall time (seconds) on stdout,
# so the interpreter's start-up is not part of the comparison.
WORKLOAD_ROUNDS = int(os.environ.get("ALEMS_BENCH_ROUNDS", "4000000"))
WORKLOAD = (
    "import hashlib, time\n"
    "t0 = time.perf_counter()\n"
    "h = b'alems'\n"
    f"for _ in range({WORKLOAD_ROUNDS}):\n"
    "    h = hashlib.sha256(h).digest()\n"
    "print(time.perf_counter() - t0)\n"
)

FIGURES: list[tuple[str, str]] = []


def record(name: str, value: str) -> None:
    """Keep one figure for the end-of-run table (and print it now)."""
    FIGURES.append((name, value))
    print(f"  {name}: {value}", flush=True)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("A-LEMS sampler figures")
    width = max(len(n) for n, _ in FIGURES)
    for name, value in FIGURES:
        terminalreporter.write_line(f"{name.ljust(width)}  {value}")


def make_static_powercap(sysfs: Path) -> list[Path]:
    """A powercap tree with package, core, uncore and dram zones; returns energy_uj paths.

    Static values: the benchmarks measure read cost and overhead, not accuracy (the
    accuracy tests drive a writer process in tests/fakehw.py)."""
    base = sysfs / "class" / "powercap"
    paths = []
    for i, (zid, name) in enumerate(RAPL_DOMAINS):
        parent = base / "intel-rapl:0" if ":" in zid[len("intel-rapl:"):] else base
        zone = parent / zid
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "name").write_text(name + "\n")
        (zone / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
        (zone / "energy_uj").write_text(f"{123456789 + i * 1000}\n")
        paths.append(zone / "energy_uj")
    return paths


def make_fake_msr(path: Path) -> Path:
    """Sparse file, 8-byte little-endian values at offset = register (Intel layout)."""
    regs = {0x606: 0x000A0E03, 0x611: 0x1234567, 0x639: 0x234567, 0x619: 0x34567}
    with open(path, "wb") as fh:
        fh.truncate(0x700)
        for reg, value in regs.items():
            fh.seek(reg)
            fh.write(struct.pack("<Q", value))
    return path


def thread_cpu_ns(tid: int) -> int:
    """CPU time of another thread of this process (Linux per-thread CPU clock)."""
    return time.clock_gettime_ns(((~tid) << 3) | 6)


def task_ids() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


@pytest.fixture
def fake_sysfs(tmp_path) -> Path:
    sysfs = tmp_path / "sys"
    make_static_powercap(sysfs)
    return sysfs
