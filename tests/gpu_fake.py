"""Fake NVML for the GPU tests: tests/fake_nvml.c, built once per test session, computes
each reading from CLOCK_MONOTONIC (the sampler's clock) at the instant of the call.

Each fake GPU has a power schedule [(offset_s, watts), ...] from t0 (CLOCK_MONOTONIC, taken
when the FakeNvml is entered); the library returns energy_mJ = 1e6 + ∫power and power_mW
exactly at the time it is called, so a reading is right however late a loaded machine
makes it. `truth_j(gpu, t_a_ns, t_b_ns)` is the exact integral of the schedule: what a
perfect instrument would report. A test may change a schedule's future while a sampler
runs (`set_power`, `lose`); with `log=True` every read is recorded (`reads`).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CC = shutil.which("cc") or shutil.which("gcc")


@functools.cache
def build_lib() -> Path:
    """The fake library, compiled once per process (test session) into a private folder."""
    folder = Path(tempfile.mkdtemp(prefix="alems-fake-nvml-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = folder / "libfake-nvml.so"
    subprocess.run([CC, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out),
                    str(HERE / "fake_nvml.c")], check=True)
    return out


@dataclass
class FakeGpu:
    name: str = "NVIDIA Fake H100"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    schedule: list = field(default_factory=lambda: [(0.0, 150.0)])   # (offset_s, W)
    energy_rc: int = 0      # 3: no energy counter (power-integrated fallback)
    power_rc: int = 0
    frozen: bool = False    # energy counter and power never move
    lost_after_s: float | None = None   # the GPU disappears from NVML after this

    def energy_mj(self, dt_s: float) -> float:
        if self.frozen:
            return 5000.0
        e, sched = 0.0, self.schedule
        for i, (start, watts) in enumerate(sched):
            end = sched[i + 1][0] if i + 1 < len(sched) else float("inf")
            if dt_s <= start:
                break
            e += watts * (min(dt_s, end) - start)
        return 1e6 + e * 1000.0

    def line(self) -> str:
        steps = " ".join(f"{round(off * 1e9)} {watts * 1000.0!r}" for off, watts in self.schedule)
        lost = -1 if self.lost_after_s is None else round(self.lost_after_s * 1e9)
        return (f"{self.name}\t{self.uuid}\t{self.energy_rc}\t{self.power_rc}\t"
                f"{int(self.frozen)}\t{lost}\t{len(self.schedule)}\t{steps}\n")


class FakeNvml:
    """The fake library and its schedule file: use as a context manager; sets the env vars
    (through monkeypatch when given)."""

    def __init__(self, tmp: Path, gpus: list[FakeGpu], monkeypatch=None, init_rc: int = 0,
                 log: bool = False, delay_us: int = 0):
        self.tmp, self.gpus, self.mp = Path(tmp), gpus, monkeypatch
        self.lib = build_lib()
        self.file = self.tmp / "nvml-state.tsv"
        self.log_file = self.tmp / "nvml-reads.log" if log else None
        self.init_rc, self.delay_us = init_rc, delay_us
        self.t0_ns = 0

    def env(self) -> dict:
        env = {"ALEMS_NVML_LIB": str(self.lib), "FAKE_NVML_FILE": str(self.file),
               "FAKE_NVML_INIT_RC": str(self.init_rc), "FAKE_NVML_DELAY_US": str(self.delay_us)}
        if self.log_file is not None:
            env["FAKE_NVML_LOG"] = str(self.log_file)
        return env

    def _write(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{self.t0_ns}\n" + "".join(g.line() for g in self.gpus))
        os.replace(tmp, self.file)  # the library never sees half a file

    def __enter__(self) -> "FakeNvml":
        self.t0_ns = time.monotonic_ns()
        self._write()
        if self.mp is not None:
            for k, v in self.env().items():
                self.mp.setenv(k, v)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _future(self, at_ns: int) -> float:
        """at_ns as a schedule offset; it must still be ahead once the file is written, or a
        read in between would have seen another past (the caller leaves a margin)."""
        return (at_ns - self.t0_ns) / 1e9

    def _check_ahead(self, at_ns: int) -> None:
        if time.monotonic_ns() >= at_ns:
            raise RuntimeError("the schedule change was written after the moment it was for")

    def set_power(self, index: int, watts: float, at_ns: int) -> None:
        """From at_ns (a future CLOCK_MONOTONIC instant) GPU `index` draws `watts`."""
        self.gpus[index].schedule.append((self._future(at_ns), watts))
        self._write()
        self._check_ahead(at_ns)

    def lose(self, index: int, at_ns: int) -> None:
        """From at_ns (a future instant) GPU `index` is gone from NVML."""
        self.gpus[index].lost_after_s = self._future(at_ns)
        self._write()
        self._check_ahead(at_ns)

    def truth_j(self, index: int, t_a_ns: int, t_b_ns: int) -> float:
        g = self.gpus[index]
        return (g.energy_mj((t_b_ns - self.t0_ns) / 1e9)
                - g.energy_mj((t_a_ns - self.t0_ns) / 1e9)) / 1000.0

    def reads(self, index: int | None = None) -> np.ndarray:
        """The logged reads (log=True): rows of (index, t_ns, value, rc), oldest first."""
        text = self.log_file.read_text() if self.log_file.exists() else ""
        rows = np.array([[int(x) for x in ln.split()] for ln in text.splitlines()
                         if len(ln.split()) == 4], dtype=np.int64).reshape(-1, 4)
        return rows if index is None else rows[rows[:, 0] == index]
