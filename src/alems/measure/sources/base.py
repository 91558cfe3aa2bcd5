"""What every source shares: availability, roots, and the columns a source produces.

A source discovers its inputs in Python and describes them as `Column`s; each column is
one value slot in the C record, fed by one or more inputs that the C core sums (e.g. one
cpuidle state over all CPUs). The sampler turns raw slots into output columns.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from alems import config
from alems.measure._native import ChannelSpec, NativeError, probe


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Roots:
    sysfs: str
    proc: str
    msr: str  # template with {cpu}

    @classmethod
    def resolve(cls, sysfs_root=None, proc_root=None, msr_path=None) -> Roots:
        return cls(sysfs_root or config.sysfs_root(), proc_root or config.proc_root(),
                   msr_path or config.msr_path_template())

    def sys(self, *parts: str) -> str:
        return os.path.join(self.sysfs, *parts)

    def procf(self, *parts: str) -> str:
        return os.path.join(self.proc, *parts)

    def as_dict(self) -> dict[str, str]:
        return {"sysfs_root": self.sysfs, "proc_root": self.proc, "msr_path": self.msr}


@dataclass
class Column:
    """One value slot. kind: 'energy' (wrap-corrected, cumulative µJ), 'counter'
    (cumulative delta since start), 'gauge' (instantaneous), 'temp' (°C, max over the
    columns sharing `name`)."""

    name: str
    inputs: list[ChannelSpec]
    kind: str
    scale: float = 1.0          # raw units -> output units (µJ for energy)
    wrap_raw: int | None = None  # counter range in raw units (energy only)
    domain: str | None = None    # canonical energy domain: pkg, core, uncore, dram, psys
    zone: str | None = None      # source-specific zone name (energy)
    max_power_w: float | None = None  # the zone's highest power limit (energy; powercap)
    slow: bool = False
    source: str = ""


@dataclass
class Discovery:
    """What a source found: columns to sample, and what it skipped and why."""

    columns: list[Column] = field(default_factory=list)
    skipped: list[tuple[str, Availability]] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class SourceUnavailable(Exception):
    def __init__(self, availability: Availability):
        super().__init__(availability.reason)
        self.availability = availability


def availability_from(discover, describe):
    """An `available(roots, **ctx)` for a source: the reason it is unavailable, or a
    one-line description of what `discover` found."""

    def available(roots: Roots, **ctx) -> Availability:
        try:
            disc = discover(roots, **ctx)
        except SourceUnavailable as exc:
            return exc.availability
        return Availability(True, describe(disc))

    return available


def open_input(path: str, *, device_ok: bool = False) -> int:
    """A read-only fd of a hardware input (sysfs/procfs file; with device_ok, an MSR
    character device too). Opened non-blocking, so a FIFO planted in place of a counter
    cannot hang discovery, and refused (OSError EINVAL) unless regular: the one check on
    the Python side, as open_input() is on the C core's."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (device_ok and stat.S_ISCHR(mode))):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_text(path: str) -> str | None:
    try:
        with open(open_input(path), errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def read_int(path: str) -> int | None:
    text = read_text(path)
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def try_probe(spec: ChannelSpec) -> tuple[int | None, NativeError | None]:
    try:
        return probe(spec), None
    except NativeError as exc:
        return None, exc


def perm_denied(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM)


def cpus(roots: Roots) -> list[int]:
    """Online CPU numbers from <sysfs>/devices/system/cpu/cpuN (falls back to [0])."""
    base = roots.sys("devices/system/cpu")
    found = []
    try:
        for name in os.listdir(base):
            if name.startswith("cpu") and name[3:].isdigit():
                found.append(int(name[3:]))
    except OSError:
        pass
    return sorted(found) or [0]


def package_of(roots: Roots, cpu: int) -> int:
    v = read_int(roots.sys(f"devices/system/cpu/cpu{cpu}/topology/physical_package_id"))
    return v if v is not None and v >= 0 else 0


def first_cpu_per_package(roots: Roots) -> dict[int, int]:
    """{package id: lowest CPU in it}; cpu0 alone when topology is absent."""
    out: dict[int, int] = {}
    for cpu in cpus(roots):
        out.setdefault(package_of(roots, cpu), cpu)
    return dict(sorted(out.items()))
