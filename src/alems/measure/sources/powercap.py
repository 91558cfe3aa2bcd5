"""powercap RAPL: every zone and sub-zone under <sysfs>/class/powercap, counted once.

Sub-zones appear both nested (intel-rapl:0/intel-rapl:0:0) and as top-level entries
(intel-rapl:0:0): zones are keyed by their id, so each is read once. `intel-rapl-mmio:*`
mirrors the package counter of the regular zone and is skipped when a regular package
zone exists; packages with identical names (one per die mirroring the same socket
counter) are counted once, with their sub-zones. Each zone's highest power limit
(`constraint_*_max_power_uw`) bounds the power a gap between samples can hide
(alems.measure.gaps).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from alems.measure._native import ChannelSpec
from alems.measure.sources.base import (Availability, Column, Discovery, Roots,
                                        SourceUnavailable, availability_from, perm_denied,
                                        read_int, read_text, try_probe)

NAME = "powercap"
DESCRIPTION = "RAPL energy counters through the powercap sysfs tree"

_ZONE_ID = re.compile(r"^(?P<ctype>[a-z0-9-]+?):(?P<idx>\d+(?::\d+)*)$")
_MAX_POWER = re.compile(r"^constraint_\d+_max_power_uw$")


def max_power_w(zone_path: str) -> float | None:
    """The highest of a zone's `constraint_*_max_power_uw` in W (the most its power limits
    can be set to); None when it states none (no such file, unreadable, or 0)."""
    try:
        names = os.listdir(zone_path)
    except OSError:
        return None
    read = [read_int(os.path.join(zone_path, n)) for n in names if _MAX_POWER.match(n)]
    values = [v for v in read if v is not None and v > 0]
    return max(values) / 1e6 if values else None


def domain_of(zone_name: str) -> str | None:
    name = zone_name.strip().lower()
    if re.fullmatch(r"package(-[a-z0-9-]+)?", name):  # package-0, package-0-die-1
        return "pkg"
    if name in ("core", "uncore", "dram", "psys"):
        return name
    return None


# Wrap arithmetic runs on signed 64-bit integers (numpy int64 columns); a larger range is a
# broken or hostile file, never a RAPL counter (real ranges are ~2^38 uJ).
MAX_RANGE_LIMIT_UJ = 2**63


@dataclass
class Zone:
    id: str
    path: str
    name: str
    max_range_uj: int | None
    ctype: str
    idx: tuple[int, ...]


def _scan(base: str) -> dict[str, Zone]:
    """Zones by id: top-level entries plus nested sub-zone folders, each id once."""
    zones: dict[str, Zone] = {}

    def visit(path: str, zid: str) -> None:
        m = _ZONE_ID.match(zid)
        if not m or zid in zones or not os.path.exists(os.path.join(path, "energy_uj")):
            return
        zones[zid] = Zone(zid, path, read_text(os.path.join(path, "name")) or zid,
                          read_int(os.path.join(path, "max_energy_range_uj")), m["ctype"],
                          tuple(int(i) for i in m["idx"].split(":")))
        try:
            children = sorted(os.listdir(path))
        except OSError:
            return
        for child in children:  # nested sub-zones are named <zid>:<n>
            if child.startswith(zid + ":"):
                visit(os.path.join(path, child), child)

    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return zones
    for entry in entries:
        visit(os.path.join(base, entry), entry)
    return zones


def select_zones(zones: dict[str, Zone]) -> tuple[list[Zone], list[tuple[str, str]]]:
    """Drop mirrors; return (zones to count, [(zone id, why skipped)])."""
    skipped: list[tuple[str, str]] = []
    regular_pkg = any(not z.ctype.endswith("-mmio") and len(z.idx) == 1
                      and domain_of(z.name) == "pkg" for z in zones.values())
    keep: dict[str, Zone] = {}
    seen_top: dict[tuple[str, str], str] = {}
    for zid in sorted(zones, key=lambda k: (zones[k].ctype, zones[k].idx)):
        z = zones[zid]
        if z.ctype.endswith("-mmio") and regular_pkg:
            skipped.append((zid, "mirrors the package counter of the regular intel-rapl zone"))
            continue
        top = f"{z.ctype}:{z.idx[0]}"
        if len(z.idx) == 1:
            key = (z.ctype, z.name)
            if key in seen_top:
                skipped.append((zid, f"same name '{z.name}' as {seen_top[key]} (mirrored die "
                                     "counter)"))
                continue
            seen_top[key] = zid
        elif top not in keep:
            skipped.append((zid, f"its package zone {top} is skipped"))
            continue
        keep[zid] = z
    return list(keep.values()), skipped


def _unavailable_reason(base: str) -> Availability:
    if not os.path.isdir(base):
        return Availability(
            False, f"no powercap tree at {base} (container without /sys/class/powercap, "
            "or no RAPL driver)",
            "run on the host or bind-mount it (docker run -v "
            "/sys/class/powercap:/sys/class/powercap:ro "
            "...); on the host load the driver: sudo modprobe intel_rapl_msr")
    return Availability(False, f"no RAPL zones with energy_uj under {base}",
                        "load the driver: sudo modprobe intel_rapl_msr (Intel/AMD)")


def discover(roots: Roots, **_ctx) -> Discovery:
    base = roots.sys("class/powercap")
    zones = _scan(base)
    if not zones:
        raise SourceUnavailable(_unavailable_reason(base))
    selected, mirror_skips = select_zones(zones)
    disc = Discovery()
    for zid, why in mirror_skips:
        disc.skipped.append((zid, Availability(False, why)))
    denied = None
    for z in selected:
        spec = ChannelSpec("text", os.path.join(z.path, "energy_uj"))
        domain = domain_of(z.name)
        if domain is None:
            disc.skipped.append((z.id, Availability(False, f"unknown zone name '{z.name}'")))
            continue
        if z.max_range_uj is not None and not 0 <= z.max_range_uj < MAX_RANGE_LIMIT_UJ:
            disc.skipped.append((z.id, Availability(
                False, f"{z.path}/max_energy_range_uj = {z.max_range_uj} is outside "
                f"[0, 2^63): not a counter range this sampler can correct wraps with")))
            continue
        value, exc = try_probe(spec)
        if exc is not None:
            if perm_denied(exc):
                denied = exc
                av = Availability(
                    False, f"{spec.path} is readable by root only (since the 2020 PLATYPUS fix, "
                    "CVE-2020-8694)",
                    "run as root, or `sudo chmod o+r /sys/class/powercap/intel-rapl*/energy_uj "
                    "/sys/class/powercap/intel-rapl*/*/energy_uj` (until reboot), or a udev rule: "
                    'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"')
            else:
                av = Availability(False, exc.strerror or str(exc))
            disc.skipped.append((z.id, av))
            continue
        wrap = (z.max_range_uj + 1) if z.max_range_uj and z.max_range_uj > 0 else None
        disc.columns.append(Column(f"zone_{re.sub(r'[^A-Za-z0-9]+', '_', z.id)}_energy_uj",
                                   [spec], "energy", 1.0, wrap, domain, z.id,
                                   max_power_w=max_power_w(z.path), source=NAME))
    if not disc.columns:
        if denied is not None:
            raise SourceUnavailable(next(av for _, av in disc.skipped if not av.ok and av.fix))
        raise SourceUnavailable(Availability(
            False,
            "no readable RAPL zone: " + "; ".join(f"{i}: {a.reason}" for i, a in disc.skipped),
            "run as root"))
    disc.info["zones"] = {c.zone: c.domain for c in disc.columns}
    return disc


def describe(disc: Discovery) -> str:
    return "zones " + ", ".join(f"{c.zone}={c.domain}" for c in disc.columns)


available = availability_from(discover, describe)


