"""Hardware sources: discovery in Python, reading in the C core.

Each source has `available(roots, **ctx) -> Availability(ok, reason, fix)` and
`discover(roots, **ctx) -> Discovery` (the columns to sample, plus what it skipped and
why). `list_sources()` is what `alems doctor` renders.

    from alems.measure.sources import list_sources, availability_of
    for s in list_sources():          # SourceReport(name, description, availability, items)
        print(s.name, s.availability.ok, s.availability.reason, s.availability.fix)
        for item, av in s.items:      # per zone / counter / file, with its own reason
            ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

from alems.errors import AlemsError
from alems.measure.sources import msr, perf, powercap, slow
from alems.measure.sources.base import Availability, Column, Discovery, Roots, SourceUnavailable
from alems.measure.sources.liveness import check_energy_advances

# Automatic choice of the energy source tries these in order.
from alems.measure.names import ENERGY_ORDER, SOURCE_NAMES as ALL_SOURCES


@dataclass(frozen=True)
class SourceDef:
    name: str
    description: str
    discover: Callable[..., Discovery]
    available: Callable[..., Availability]
    describe: Callable[[Discovery], str]   # one line on what `discover` found
    energy: bool


SOURCES: dict[str, SourceDef] = {
    "powercap": SourceDef("powercap", powercap.DESCRIPTION, powercap.discover, powercap.available,
                          powercap.describe, True),
    "perf-power": SourceDef("perf-power", "RAPL energy through the perf `power` PMU (system-wide)",
                            perf.discover_power, perf.available_power, perf.describe_power, True),
    "msr": SourceDef("msr", msr.DESCRIPTION, msr.discover, msr.available, msr.describe, True),
    "perf": SourceDef("perf", "hardware/software perf counters of the measured process tree",
                      perf.discover_counters, perf.available_counters, perf.describe_counters,
                      False),
    "slow": SourceDef("slow", slow.DESCRIPTION, slow.discover, slow.available, slow.describe,
                      False),
}


@dataclass
class SourceReport:
    name: str
    description: str
    availability: Availability
    items: list[tuple[str, Availability]] = field(default_factory=list)
    discovery: Discovery | None = None  # what discover() found; None if unavailable


def availability_of(name: str, sysfs_root: str | None = None, proc_root: str | None = None,
                    msr_path: str | None = None, **ctx) -> Availability:
    """Whether source `name` is readable here, and if not why and the fix."""
    if name not in SOURCES:
        raise AlemsError(f"unknown source '{name}'; choose from {', '.join(SOURCES)}")
    return SOURCES[name].available(Roots.resolve(sysfs_root, proc_root, msr_path), **ctx)


def list_sources(sysfs_root: str | None = None, proc_root: str | None = None,
                 msr_path: str | None = None, **ctx) -> list[SourceReport]:
    """Every source with its availability and per-item details (zones, counters, files)."""
    roots = Roots.resolve(sysfs_root, proc_root, msr_path)
    reports = []
    for sdef in SOURCES.values():
        try:
            disc = sdef.discover(roots, **ctx)
        except SourceUnavailable as exc:
            reports.append(SourceReport(sdef.name, sdef.description, exc.availability))
            continue
        items = [(c.zone or c.name, Availability(True, c.name)) for c in disc.columns]
        items += disc.skipped
        # Built from this discovery: available() would discover (and probe) all over again.
        availability = Availability(True, sdef.describe(disc))
        if sdef.energy:
            live = check_energy_advances(disc.columns)
            if not live.ok:
                availability = live
        reports.append(SourceReport(sdef.name, sdef.description, availability, items, disc))
    return reports


__all__ = ["Availability", "Column", "Discovery", "Roots", "SourceUnavailable", "SourceReport",
           "SOURCES", "ENERGY_ORDER", "ALL_SOURCES", "availability_of", "list_sources"]
