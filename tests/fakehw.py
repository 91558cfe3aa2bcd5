"""Fake hardware for hardware-free tests and benchmarks.

Builds sysfs/procfs/MSR look-alikes under a temporary folder and runs a *writer process*
that advances energy counters at a known power profile, so the real C sampler can be
checked against an exact truth:

    tree = make_powercap_tree(tmp / "sys")           # package + core + dram + mirrors
    with EnergyWriter(tree.targets) as w:              # writer process, 1 kHz updates
        ... sample ...
        truth_j = w.energy_j("pkg", t0_ns, t1_ns)      # exact integral of the profile

Counter files are rewritten in place with one pwrite of fixed-width text (the sampler keeps
them open, so they cannot be replaced by rename); MSR values are 8-byte little-endian
pwrites at offset = register in a sparse file.

Run as a script (`python fakehw.py write SPEC_JSON`) it is the writer process itself.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TEXT_WIDTH = 20  # digits; every write is the same length so a read never sees a shorter tail

# A profile is a list of (until_s, watts) segments from the writer's start; the last
# segment lasts for ever.
PKG_PROFILE = [(0.8, 20.0), (math.inf, 35.0)]
CORE_PROFILE = [(math.inf, 12.0)]
DRAM_PROFILE = [(math.inf, 3.0)]
# The zones' power limits (constraint_N_max_power_uw: long_term, short_term), above every
# profile above, as a real part's limits are above what it draws.
MAX_POWER_UW = {"pkg": (40_000_000, 50_000_000), "core": (20_000_000,), "dram": (5_000_000,)}


def profile_energy_j(profile, dt_s: float) -> float:
    """Exact energy of `profile` between the writer's start and dt_s later."""
    e, prev = 0.0, 0.0
    for until, watts in profile:
        seg_end = min(until, dt_s)
        if seg_end > prev:
            e += (seg_end - prev) * watts
        prev = until
        if until >= dt_s:
            break
    return e


@dataclass
class Target:
    """One counter the writer advances. kind 'text' (µJ in a file, wraps at range_uj+1)
    or 'msr' (raw counts of unit_j at offset `reg`, wraps at 2^32)."""

    kind: str
    path: str
    domain: str
    profile: list
    range_uj: int = 0
    reg: int = 0
    unit_j: float = 0.0
    start_uj: float = 0.0  # counter value at the writer's start (tests a non-zero origin)
    mirror: bool = False   # a copy of another counter: written, never part of the truth

    def raw(self, energy_j: float) -> int:
        if self.kind == "text":
            return int(self.start_uj + energy_j * 1e6) % (self.range_uj + 1)
        return int(self.start_uj / 1e6 / self.unit_j + energy_j / self.unit_j) % (1 << 32)


def _write_text(fd: int, value: int) -> None:
    os.pwrite(fd, f"{value:0{TEXT_WIDTH}d}\n".encode(), 0)


def _write_msr(fd: int, reg: int, value: int) -> None:
    os.pwrite(fd, int(value).to_bytes(8, "little"), reg)


# ------------------------------------------------------------------ trees

@dataclass
class FakeTree:
    root: Path
    targets: list[Target] = field(default_factory=list)
    mirrors: list[Target] = field(default_factory=list)  # written, must not be counted


def _zone(dirpath: Path, name: str, range_uj: int, start_uj: int = 0,
          max_power_uw: tuple[int, ...] = ()) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "name").write_text(name + "\n")
    (dirpath / "max_energy_range_uj").write_text(f"{range_uj}\n")
    (dirpath / "energy_uj").write_text(f"{start_uj:0{TEXT_WIDTH}d}\n")
    (dirpath / "enabled").write_text("1\n")
    for i, uw in enumerate(max_power_uw):
        (dirpath / f"constraint_{i}_name").write_text(("long_term", "short_term", "peak_power")[i] + "\n")
        (dirpath / f"constraint_{i}_max_power_uw").write_text(f"{uw}\n")
    return dirpath / "energy_uj"


def make_powercap_tree(sysfs_root, *, pkg_range_uj: int = 10_000_000,
                       core_range_uj: int = 6_000_000, dram_range_uj: int = 1_000_000,
                       mmio_mirror: bool = True, die_mirror: bool = False,
                       sockets: int = 1, max_power_uw: dict | None = MAX_POWER_UW) -> FakeTree:
    """A powercap tree like a client Intel part, with the layouts that trap counting:

    intel-rapl:N (package-N) with nested intel-rapl:N:0 (core), intel-rapl:N:1 (dram),
    the same sub-zones again as top-level symlinks, an intel-rapl-mmio:0 zone mirroring
    package 0, and optionally a second "package-0" zone (a die mirroring the socket).
    Default ranges make pkg wrap every ~0.3-0.5 s, core every 0.5 s, dram every 0.33 s.
    Zones state their power limits (`max_power_uw`: domain -> constraint values; None: none).
    """
    limits = max_power_uw or {}
    root = Path(sysfs_root)
    base = root / "class" / "powercap"
    (base / "intel-rapl").mkdir(parents=True, exist_ok=True)
    tree = FakeTree(root)
    for s in range(sockets):
        pkg = base / f"intel-rapl:{s}"
        start = 1234567 * (s + 1) % pkg_range_uj
        p = _zone(pkg, f"package-{s}", pkg_range_uj, start, limits.get("pkg", ()))
        tree.targets.append(Target("text", str(p), "pkg", PKG_PROFILE, pkg_range_uj, start_uj=start))
        c = _zone(pkg / f"intel-rapl:{s}:0", "core", core_range_uj, 0, limits.get("core", ()))
        tree.targets.append(Target("text", str(c), "core", CORE_PROFILE, core_range_uj))
        d = _zone(pkg / f"intel-rapl:{s}:1", "dram", dram_range_uj, 0, limits.get("dram", ()))
        tree.targets.append(Target("text", str(d), "dram", DRAM_PROFILE, dram_range_uj))
        for sub in (f"intel-rapl:{s}:0", f"intel-rapl:{s}:1"):  # top-level duplicates
            link = base / sub
            if not link.exists():
                link.symlink_to(Path(f"intel-rapl:{s}") / sub)
    if mmio_mirror:
        (base / "intel-rapl-mmio").mkdir(exist_ok=True)
        m = _zone(base / "intel-rapl-mmio:0", "package-0", pkg_range_uj, tree.targets[0].start_uj)
        tree.mirrors.append(Target("text", str(m), "pkg", PKG_PROFILE, pkg_range_uj,
                                   start_uj=tree.targets[0].start_uj, mirror=True))
    if die_mirror:
        n = sockets
        m = _zone(base / f"intel-rapl:{n}", "package-0", pkg_range_uj, tree.targets[0].start_uj)
        tree.mirrors.append(Target("text", str(m), "pkg", PKG_PROFILE, pkg_range_uj,
                                   start_uj=tree.targets[0].start_uj, mirror=True))
        cm = _zone(base / f"intel-rapl:{n}" / f"intel-rapl:{n}:0", "core", core_range_uj)
        tree.mirrors.append(Target("text", str(cm), "core", CORE_PROFILE, core_range_uj,
                                   mirror=True))
    return tree


def make_cpus(sysfs_root, packages: list[int], core_ids: list[int] | None = None) -> None:
    """cpuN/topology/physical_package_id (and core_id) for each CPU."""
    for cpu, pkg in enumerate(packages):
        topo = Path(sysfs_root) / "devices/system/cpu" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True, exist_ok=True)
        (topo / "physical_package_id").write_text(f"{pkg}\n")
        core = core_ids[cpu] if core_ids else cpu
        (topo / "core_id").write_text(f"{core}\n")


INTEL_REGS = {"unit": 0x606, "pkg": 0x611, "core": 0x639, "uncore": 0x641, "dram": 0x619}
AMD_REGS = {"unit": 0xC0010299, "core": 0xC001029A, "pkg": 0xC001029B}


def make_msr(template: str, cpus: list[int], vendor: str = "intel", esu: int = 28,
             domains: tuple[str, ...] | None = None, profiles: dict | None = None,
             stride: int = 1) -> list[Target]:
    """Sparse MSR files at template.format(cpu=N) with the unit register set; returns the
    energy targets for an EnergyWriter (one per domain per CPU given).

    Register R lives at offset R × stride; AMD's adjacent registers need stride 8 (and
    ALEMS_MSR_STRIDE=8 for the sampler)."""
    regs = INTEL_REGS if vendor == "intel" else AMD_REGS
    domains = domains or (("pkg", "core", "dram") if vendor == "intel" else ("pkg", "core"))
    profiles = profiles or {"pkg": PKG_PROFILE, "core": CORE_PROFILE, "dram": DRAM_PROFILE,
                            "uncore": DRAM_PROFILE}
    unit_j = 1.0 / (1 << esu)
    targets = []
    for cpu in cpus:
        path = template.format(cpu=cpu)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # power unit 3, energy status unit esu (bits 12:8), time unit 10
            _write_msr(fd, regs["unit"] * stride, (10 << 16) | (esu << 8) | 3)
            for dom in domains:
                t = Target("msr", path, dom, profiles[dom], reg=regs[dom] * stride, unit_j=unit_j,
                           start_uj=(0xFFFF0000 * unit_j * 1e6))  # starts near the wrap
                _write_msr(fd, t.reg, t.raw(0.0))
                targets.append(t)
        finally:
            os.close(fd)
    return targets


def make_proc(proc_root, *, vendor_id: str = "GenuineIntel", intr: int = 1000,
              ctxt: int = 5000, procs_running: int = 3) -> Path:
    root = Path(proc_root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: {vendor_id}\n\n")
    write_proc_stat(root, intr, ctxt, procs_running)
    (root / "sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/perf_event_paranoid").write_text("2\n")
    return root


def link_process(proc_root, pid: int | None = None) -> None:
    """Show a live process (default: this one) in a fake proc root, as a real proc root
    would: its entry is a link to the real /proc/<pid>. Every /proc read goes through the
    configured root; without this, a fake root shows no process at all."""
    pid = os.getpid() if pid is None else int(pid)
    link = Path(proc_root) / str(pid)
    if not link.is_symlink():
        os.symlink(f"/proc/{pid}", link)


def write_proc_stat(proc_root, intr: int, ctxt: int, procs_running: int) -> None:
    text = (f"cpu  1 2 3 4 5 6 7 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\n"
            f"intr {intr:012d} 1 2 3 4 5 6\nctxt {ctxt:012d}\nbtime 1700000000\n"
            f"processes 100\nprocs_running {procs_running:06d}\nprocs_blocked 0\n")
    path = Path(proc_root) / "stat"
    if path.exists():  # rewrite in place: the sampler keeps the file open
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, text.encode(), 0)
        finally:
            os.close(fd)
    else:
        path.write_text(text)


def make_thermal(sysfs_root, zones=(("acpitz", 30000), ("x86_pkg_temp", 45000))) -> None:
    for i, (ztype, milli_c) in enumerate(zones):
        d = Path(sysfs_root) / "class/thermal" / f"thermal_zone{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "type").write_text(ztype + "\n")
        (d / "temp").write_text(f"{milli_c}\n")


def make_cpuidle(sysfs_root, ncpu: int = 2, states=(("POLL", 10), ("C1", 1000), ("C6", 50000))) -> None:
    """cpuN/cpuidle/stateK/{name,time}; time of CPU n = base × (n + 1) µs."""
    for cpu in range(ncpu):
        for k, (name, base_us) in enumerate(states):
            d = Path(sysfs_root) / "devices/system/cpu" / f"cpu{cpu}" / "cpuidle" / f"state{k}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "name").write_text(name + "\n")
            (d / "time").write_text(f"{base_us * (cpu + 1)}\n")


# ------------------------------------------------------------------ writer process

class EnergyWriter:
    """Runs this file as a subprocess that advances `targets` every `interval_s`.

    `t0_ns` (CLOCK_MONOTONIC) is when the profile started; energy_j() gives the truth."""

    def __init__(self, targets: list[Target], interval_s: float = 0.001):
        self.targets = list(targets)
        self.interval_s = interval_s
        self.proc: subprocess.Popen | None = None
        self.t0_ns = 0

    def start(self) -> "EnergyWriter":
        spec = json.dumps({"interval_s": self.interval_s,
                           "targets": [asdict(t) for t in self.targets]},
                          default=lambda x: "inf" if x == math.inf else x)
        spec = spec.replace("Infinity", '"inf"')
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "write", spec],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.stop()
            raise RuntimeError(f"fake energy writer did not start: {line}")
        self.t0_ns = int(line[1])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> "EnergyWriter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def energy_j(self, domain: str, t0_ns: int, t1_ns: int) -> float:
        """Exact energy written for `domain` (summed over its targets) between t0 and t1."""
        total = 0.0
        for t in self.targets:
            if t.domain == domain and not t.mirror:
                a = max(0.0, (t0_ns - self.t0_ns) / 1e9)
                b = max(0.0, (t1_ns - self.t0_ns) / 1e9)
                total += profile_energy_j(t.profile, b) - profile_energy_j(t.profile, a)
        return total


def _writer_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    targets = []
    for d in spec["targets"]:
        d["profile"] = [(math.inf if u == "inf" else u, w) for u, w in d["profile"]]
        targets.append(Target(**d))
    interval = float(spec["interval_s"])
    fds = {}
    for t in targets:
        if t.path not in fds:
            fds[t.path] = os.open(t.path, os.O_RDWR)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    try:  # best effort: a starved writer would leave stale counters on a loaded machine
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass
    t0 = time.monotonic_ns()

    def write_all(now_ns: int) -> None:
        dt = (now_ns - t0) / 1e9
        for t in targets:
            raw = t.raw(profile_energy_j(t.profile, dt))
            if t.kind == "text":
                _write_text(fds[t.path], raw)
            else:
                _write_msr(fds[t.path], t.reg, raw)

    write_all(t0)
    print("ready", t0, flush=True)
    k = 1
    while running[0]:
        deadline = t0 + int(k * interval * 1e9)
        delay = (deadline - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        write_all(time.monotonic_ns())
        k += 1
    for fd in fds.values():
        os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        _writer_main(sys.argv[2])
    else:
        sys.exit("usage: fakehw.py write SPEC_JSON")
