"""Fake NVML for the GPU tests: builds tests/fake_nvml.c into a shared library and runs a
writer process that advances its counters in the file the library reads.

Each fake GPU has a power schedule [(offset_s, watts), ...] from the writer's start t0
(CLOCK_MONOTONIC, shared by every process); the writer writes energy_mJ = ∫power (computed
from the clock, not accumulated) and power_mW about every millisecond, atomically (rename).
`truth_j(gpu, t_a_ns, t_b_ns)` is the exact integral of the schedule: what a perfect
instrument would report. `python gpu_fake.py SPEC.json` is the writer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CC = shutil.which("cc") or shutil.which("gcc")


def build_lib(folder: Path) -> Path:
    out = Path(folder) / "libfake-nvml.so"
    subprocess.run([CC, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "fake_nvml.c")],
                   check=True)
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

    def power_w(self, dt_s: float) -> float:
        if self.frozen:
            return 0.0
        w = self.schedule[0][1]
        for start, watts in self.schedule:
            if dt_s >= start:
                w = watts
        return w


class FakeNvml:
    """The fake library plus its writer: use as a context manager; sets the env vars."""

    def __init__(self, tmp: Path, gpus: list[FakeGpu], monkeypatch=None, init_rc: int = 0):
        self.tmp, self.gpus, self.mp = Path(tmp), gpus, monkeypatch
        self.lib = build_lib(self.tmp)
        self.file = self.tmp / "nvml-state.tsv"
        self.spec = self.tmp / "nvml-spec.json"
        self.t0_file = self.tmp / "nvml-t0"
        self.init_rc = init_rc
        self.proc = None
        self.t0_ns = 0

    def env(self) -> dict:
        return {"ALEMS_NVML_LIB": str(self.lib), "FAKE_NVML_FILE": str(self.file),
                "FAKE_NVML_INIT_RC": str(self.init_rc)}

    def __enter__(self) -> "FakeNvml":
        self.spec.write_text(json.dumps({"file": str(self.file), "t0_file": str(self.t0_file),
                                         "gpus": [g.__dict__ for g in self.gpus]}))
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.spec)])
        deadline = time.monotonic() + 20
        while not self.t0_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fake NVML writer did not start")
            time.sleep(0.01)
        self.t0_ns = int(self.t0_file.read_text())
        if self.mp is not None:
            for k, v in self.env().items():
                self.mp.setenv(k, v)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def truth_j(self, index: int, t_a_ns: int, t_b_ns: int) -> float:
        g = self.gpus[index]
        return (g.energy_mj((t_b_ns - self.t0_ns) / 1e9)
                - g.energy_mj((t_a_ns - self.t0_ns) / 1e9)) / 1000.0


def _writer(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    gpus = [FakeGpu(**{**g, "schedule": [tuple(s) for s in g["schedule"]]}) for g in spec["gpus"]]
    path, tmp = spec["file"], spec["file"] + ".tmp"
    t0 = time.monotonic_ns()
    first = True
    while True:
        dt = (time.monotonic_ns() - t0) / 1e9
        lines = []
        for g in gpus:
            if g.lost_after_s is not None and dt >= g.lost_after_s:
                continue
            lines.append(f"{g.name}\t{g.uuid}\t{int(g.energy_mj(dt))}\t"
                         f"{int(g.power_w(dt) * 1000)}\t{g.energy_rc}\t{g.power_rc}\n")
        with open(tmp, "w") as fh:
            fh.write("".join(lines))
        os.replace(tmp, path)
        if first:
            Path(spec["t0_file"]).write_text(str(t0))
            first = False
        time.sleep(0.001)


if __name__ == "__main__":
    _writer(sys.argv[1])
