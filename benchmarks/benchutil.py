"""Helpers for the sampler benchmarks: a static fake RAPL tree, a fake MSR file, a
deterministic CPU-bound workload, thread CPU clocks, and the figures table that
conftest.py prints at the end of the session (run pytest with -s to see it live too).

A module of its own (not conftest.py) so `pytest tests benchmarks` cannot confuse it
with tests/conftest.py."""

from __future__ import annotations

import os
import struct
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
