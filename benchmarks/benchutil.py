"""Helpers for the sampler benchmarks: a static fake RAPL tree, a fake MSR file, a
deterministic CPU-bound workload, thread CPU clocks, and the figures table that
conftest.py prints at the end of the session (run pytest with -s to see it live too).

A module of its own (not conftest.py) so `pytest tests benchmarks` cannot confuse it
with tests/conftest.py."""

from __future__ import annotations

import contextlib
import os
import statistics
import struct
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Four energy domains, as the target asks: package, core, uncore, dram.
RAPL_DOMAINS = (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core"),
                ("intel-rapl:0:1", "uncore"), ("intel-rapl:0:2", "dram"))
MAX_RANGE_UJ = 262143328850

# A deterministic CPU-bound workload that reports its own wall time and CPU time
# (seconds) on stdout, so the interpreter's start-up is not part of the comparison.
WORKLOAD_ROUNDS = int(os.environ.get("ALEMS_BENCH_ROUNDS", "4000000"))
WORKLOAD = (
    "import hashlib, time\n"
    "t0, c0 = time.perf_counter(), time.process_time()\n"
    "h = b'alems'\n"
    f"for _ in range({WORKLOAD_ROUNDS}):\n"
    "    h = hashlib.sha256(h).digest()\n"
    "print(time.perf_counter() - t0, time.process_time() - c0)\n"
)

FIGURES: list[tuple[str, str]] = []


def record(name: str, value: str) -> None:
    """Keep one figure for the end-of-run table (and print it now)."""
    FIGURES.append((name, value))
    print(f"  {name}: {value}", flush=True)


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


# ------------------------------------------------------------------ child processes

def fake_rapl_env(root: Path) -> dict[str, str]:
    """The environment of a child that samples the static fake powercap tree made under
    `root` (this machine's /proc; no MSR), importing this checkout's alems."""
    make_static_powercap(root / "sys")
    return dict(os.environ, ALEMS_SYSFS_ROOT=str(root / "sys"), ALEMS_PROC_ROOT="/proc",
                ALEMS_MSR_PATH=str(root / "no-msr-{cpu}"),
                PYTHONPATH=os.pathsep.join([str(REPO / "src"),
                                            os.environ.get("PYTHONPATH", "")]))


def process_cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (/proc/<pid>/task/*/schedstat), ns."""
    total = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):  # a thread just exited
            total += int(f.read_text().split()[0])
    return total


def cpu_pct_side_by_side(a_pid: int, b_pid: int, window_s: float) -> tuple[float, float]:
    """% of a core each of two running processes uses over the same `window_s` seconds
    (after half a second more of settling)."""
    time.sleep(0.5)
    a0, b0 = process_cpu_ns(a_pid), process_cpu_ns(b_pid)
    time.sleep(window_s)
    a1, b1 = process_cpu_ns(a_pid), process_cpu_ns(b_pid)
    return 100 * (a1 - a0) / (window_s * 1e9), 100 * (b1 - b0) / (window_s * 1e9)


def median_pct(values: list[float]) -> str:
    """'M % (runs a, b, …)' of per-run percentages."""
    return (f"{statistics.median(values):.2f} % "
            f"(runs {', '.join(f'{p:.2f}' for p in values)})")


# A Python child's own peak RSS: hwm/sitecustomize.py writes its VmHWM (kB) at exit to the
# file $ALEMS_BENCH_HWM names. ru_maxrss from wait4 cannot give it: Linux carries the
# parent's peak into a child across fork and exec, so no child of a large benchmark process
# reads below the benchmark's own size.
HWM_DIR = REPO / "benchmarks" / "hwm"


def with_hwm(env: dict[str, str], hwm_file: Path) -> dict[str, str]:
    """`env` for a Python child whose peak RSS is to be read with `hwm_mb(hwm_file)`."""
    hwm_file.unlink(missing_ok=True)
    return dict(env, ALEMS_BENCH_HWM=str(hwm_file),
                PYTHONPATH=os.pathsep.join([str(HWM_DIR), env.get("PYTHONPATH", "")]))


def hwm_mb(hwm_file: Path) -> float:
    return int(hwm_file.read_text()) / 1024
