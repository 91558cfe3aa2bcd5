"""RAPL energy read straight from the model-specific registers (/dev/cpu/N/msr).

One CPU per package (AMD core energy: one CPU per physical core). The energy counters are
32 bits wide; the unit register gives µJ per count. A register that cannot be read or reads
0 at discovery is treated as not implemented (e.g. PP1 on servers).

A fake MSR (tests) is a sparse regular file with 8-byte little-endian values at
offset = register. AMD's registers are adjacent numbers (…299, …29A, …29B), so their
8-byte values would overlap; such fakes put register R at offset R × ALEMS_MSR_STRIDE
(e.g. 8). The real device is always read with stride 1.
"""

from __future__ import annotations

import errno
import os

from alems import config
from alems.measure._native import ChannelSpec
from alems.measure.sources.base import (Availability, Column, Discovery, Roots,
                                        SourceUnavailable, availability_from, cpus,
                                        first_cpu_per_package, open_input, package_of,
                                        perm_denied, read_int, read_text, try_probe)

NAME = "msr"
DESCRIPTION = "RAPL energy counters read from the MSR device"

MASK32 = 0xFFFFFFFF
INTEL_UNIT = 0x606
INTEL_REGS = [("pkg", 0x611), ("core", 0x639), ("uncore", 0x641), ("dram", 0x619)]
AMD = {"unit": 0xC0010299, "pkg": 0xC001029B, "core": 0xC001029A}

# Intel server parts whose DRAM counter ignores the unit register and counts in fixed
# 15.3 µJ steps (family 6 models the Linux RAPL driver gives `dram_domain_energy_unit`):
# Haswell-X, Broadwell-X, Skylake-X, Ice Lake-X/-D, Xeon Phi KNL/KNM.
FIXED_DRAM_UNIT_MODELS = {0x3F, 0x4F, 0x55, 0x6A, 0x6C, 0x57, 0x85}
FIXED_DRAM_UNIT_UJ = 15.3


def vendor(roots: Roots, override: str | None = None) -> str:
    """'intel' or 'amd' from <proc>/cpuinfo (override: argument or ALEMS_CPU_VENDOR)."""
    v = (override or config.cpu_vendor() or "").lower()
    if v in ("intel", "amd"):
        return v
    text = read_text(roots.procf("cpuinfo")) or ""
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return "amd" if ("AuthenticAMD" in line or "HygonGenuine" in line) else "intel"
    return "intel"


def intel_model(roots: Roots) -> int | None:
    """Family-6 model number from <proc>/cpuinfo, None for another family or unreadable."""
    family = model = None
    for line in (read_text(roots.procf("cpuinfo")) or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu family" and family is None:
            family = value.strip()
        elif key == "model" and model is None:
            model = value.strip()
    try:
        return int(model) if family == "6" and model is not None else None
    except ValueError:
        return None


def unit_uj(raw_unit: int) -> float:
    """Energy status unit: bits 12:8 give 1/2^ESU joules per count."""
    return 1e6 / float(1 << ((raw_unit >> 8) & 0x1F))


def stride() -> int:
    return config.msr_stride()


def _read_reg(path: str, reg: int) -> int:
    fd = open_input(path, device_ok=True)
    try:
        data = os.pread(fd, 8, reg * stride())
    finally:
        os.close(fd)
    if len(data) != 8:
        raise OSError(errno.EIO, f"register 0x{reg:x} not readable in {path}")
    return int.from_bytes(data, "little")


def _fail(exc: OSError, path: str, default_template: bool) -> Availability:
    if isinstance(exc, FileNotFoundError):
        if default_template:
            return Availability(False, f"{path} does not exist (msr module not loaded)",
                                "sudo modprobe msr")
        return Availability(False, f"{path} does not exist", "check ALEMS_MSR_PATH / --msr-path")
    if perm_denied(exc):
        return Availability(False, f"{path} needs root (CAP_SYS_RAWIO)",
                            "run as root (sudo), after `sudo modprobe msr`")
    return Availability(False, f"{path}: {exc.strerror or exc} (CPU without RAPL MSRs?)", "")


def discover(roots: Roots, *, vendor_override: str | None = None, **_ctx) -> Discovery:
    kind = vendor(roots, vendor_override)
    default_template = roots.msr == "/dev/cpu/{cpu}/msr"
    disc = Discovery(info={"vendor": kind})
    pkgs = first_cpu_per_package(roots)
    plan: list[tuple[str, int, int, str]] = []  # (domain, cpu, register, label)
    if kind == "intel":
        for pkg, cpu in pkgs.items():
            for domain, reg in INTEL_REGS:
                plan.append((domain, cpu, reg, f"package{pkg}"))
        unit_reg = INTEL_UNIT
        model = intel_model(roots)
        if model in FIXED_DRAM_UNIT_MODELS:
            disc.info["dram_unit_uj"] = FIXED_DRAM_UNIT_UJ
            disc.info["cpu_model"] = f"0x{model:02X}"
    else:
        unit_reg = AMD["unit"]
        for pkg, cpu in pkgs.items():
            plan.append(("pkg", cpu, AMD["pkg"], f"package{pkg}"))
        seen = set()
        for cpu in cpus(roots):  # core energy: one CPU per physical core
            core = read_int(roots.sys(f"devices/system/cpu/cpu{cpu}/topology/core_id"))
            key = (package_of(roots, cpu), core if core is not None else cpu)
            if key not in seen:
                seen.add(key)
                plan.append(("core", cpu, AMD["core"], f"package{key[0]}_core{key[1]}"))

    units: dict[int, float] = {}
    first_failure: Availability | None = None
    for domain, cpu, reg, label in plan:
        path = config.msr_device_path(roots.msr, cpu)
        if cpu not in units:
            try:
                units[cpu] = unit_uj(_read_reg(path, unit_reg))
            except OSError as exc:
                av = _fail(exc, path, default_template)
                if first_failure is None:
                    first_failure = av
                disc.skipped.append((f"cpu{cpu}", av))
                units[cpu] = 0.0
        if not units[cpu]:
            continue
        spec = ChannelSpec("msr", path, offset=reg * stride(), mask=MASK32)
        value, err = try_probe(spec)
        if err is not None or not value:
            why = err.strerror if err is not None else "reads 0 (not implemented)"
            disc.skipped.append((f"{domain}@cpu{cpu}", Availability(False, f"0x{reg:x}: {why}")))
            continue
        unit = disc.info.get("dram_unit_uj", units[cpu]) if domain == "dram" else units[cpu]
        disc.columns.append(Column(f"zone_msr_{domain}_{label}_energy_uj", [spec], "energy",
                                   unit, 1 << 32, domain, f"{domain}:{label}", source=NAME))
    if not disc.columns:
        raise SourceUnavailable(first_failure if first_failure is not None else Availability(
            False, "no RAPL energy register readable: "
            + "; ".join(f"{n}: {a.reason}" for n, a in disc.skipped), ""))
    return disc


def describe(disc: Discovery) -> str:
    domains = ", ".join(sorted({c.domain for c in disc.columns if c.domain}))
    return f"{disc.info['vendor']} layout, domains {domains}"


available = availability_from(discover, describe)
