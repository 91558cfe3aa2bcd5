"""Choosing what to sample: sources and columns from source names and hardware roots.

One place decides which energy source is used, with the liveness check (a counter that
opens but never advances is not a measurement): `Sampler` (`plan_sources`), `alems doctor`
(`choose_energy` over the discoveries it already made) and the batch
(`energy_source_label`, before any run) all get the same answer from `choose_energy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Any

from alems.errors import AlemsError
from alems.measure import estimate
from alems.measure._native import MAX_CHANNELS
from alems.measure.names import ENERGY_ORDER
from alems.measure.sources import SOURCES, Roots, SourceUnavailable
from alems.measure.sources.base import Column, Discovery
from alems.measure.sources.liveness import check_energy_advances
from alems.measure.spawn import is_gated

# energy_source labels (contract): the perf power PMU is reported as 'perf'.
ENERGY_LABEL = {"powercap": "powercap", "msr": "msr", "perf-power": "perf"}
ESTIMATE = "estimate"


@dataclass
class EnergyChoice:
    """The energy source to use: `name` among ENERGY_ORDER, or None for the estimate."""

    name: str | None
    discovery: Discovery | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ENERGY_LABEL[self.name] if self.name else ESTIMATE


@dataclass
class Plan:
    """What a Sampler samples: one value slot per column, and the provenance of each."""

    columns: list[Column]
    used: list[str]              # source names, plus 'estimate' when energy is estimated
    energy_source: str           # label: powercap, msr, perf or estimate
    estimate: dict | None        # the estimate's model and parameters, None if measured
    notes: list[str]             # what was skipped or dropped, and why


def check_source_names(sources: Sequence[str] | None) -> None:
    """Known names, at most one energy source; else one clear AlemsError."""
    if sources is None:
        return
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise AlemsError(f"unknown source(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(SOURCES)}")
    energy = [s for s in sources if SOURCES[s].energy]
    if len(energy) > 1:
        raise AlemsError(f"choose one energy source, not {', '.join(energy)}")


def _discover(name: str, roots: Roots, explicit: bool, ctx: dict,
              notes: list[str]) -> Discovery | None:
    """The source's discovery; None (and a note) when unreadable, unless it was named
    explicitly: then one AlemsError with the reason and the fix."""
    try:
        return SOURCES[name].discover(roots, **ctx)
    except SourceUnavailable as exc:
        av = exc.availability
        if explicit:
            fix = f"; fix: {av.fix}" if av.fix else ""
            raise AlemsError(f"source '{name}' is not readable here: {av.reason}{fix}") from None
        notes.append(f"{name}: {av.reason}")
        return None


def choose_energy(roots: Roots, requested: str | None = None, *,
                  found: Mapping[str, Discovery | None] | None = None, **ctx) -> EnergyChoice:
    """The energy source to sample. `requested`: the one named explicitly (used as is,
    an error if unreadable). Otherwise the first of ENERGY_ORDER that is readable and
    whose counters advance, else the estimate. `found`: discoveries already made (None =
    unavailable), reused instead of discovering again."""
    notes: list[str] = []
    for name in ([requested] if requested else ENERGY_ORDER):
        if found is not None and name in found:
            disc = found[name]
        else:
            disc = _discover(name, roots, requested is not None, ctx, notes)
        if disc is None:
            continue
        if requested is None:
            live = check_energy_advances(disc.columns)
            if not live.ok:
                notes.append(f"{name}: not used: {live.reason}")
                continue
        return EnergyChoice(name, disc, notes)
    return EnergyChoice(None, None, notes)


def energy_source_label(sources: Sequence[str] | None = None, *, sysfs_root: str | None = None,
                        proc_root: str | None = None, msr_path: str | None = None,
                        pid: int | None = None, system_wide: bool = False) -> str:
    """The energy_source a Sampler with these arguments would report ('powercap', 'msr',
    'perf' or 'estimate'), found without starting one."""
    check_source_names(sources)
    roots = Roots.resolve(sysfs_root, proc_root, msr_path)
    requested = next((s for s in sources if SOURCES[s].energy), None) if sources else None
    if sources is not None and requested is None:
        return ESTIMATE  # sources named, none of them energy
    ctx: dict[str, Any] = {"pid": pid, "gated": is_gated(pid), "system_wide": system_wide}
    return choose_energy(roots, requested, **ctx).label


def plan_sources(sources: Sequence[str] | None, roots: Roots, *, pid: int | None = None,
                 system_wide: bool = False, w_per_core: float | None = None,
                 also_pids: Sequence[int] = ()) -> Plan:
    """Columns to sample. sources=None: automatic (energy by choose_energy, plus perf
    counters and slow sources where readable); named sources must all be readable.
    also_pids: running processes the perf counters and the CPU-time estimate also cover."""
    check_source_names(sources)
    ctx: dict[str, Any] = {"pid": pid, "gated": is_gated(pid), "system_wide": system_wide}
    columns: list[Column] = []
    used: list[str] = []
    notes: list[str] = []
    requested = next((s for s in sources if SOURCES[s].energy), None) if sources else None
    if sources is None or requested is not None:
        choice = choose_energy(roots, requested, **ctx)
    else:
        choice = EnergyChoice(None)
    notes += choice.notes
    if choice.discovery is not None and choice.name is not None:
        columns += choice.discovery.columns
        notes += [f"{choice.name}: skipped {i}: {a.reason}" for i, a in choice.discovery.skipped]
        used.append(choice.name)
    for name in ("perf", "slow"):
        if sources is None or name in sources:
            extra = {"also_pids": tuple(also_pids)} if name == "perf" else {}
            disc = _discover(name, roots, sources is not None, {**ctx, **extra}, notes)
            if disc is not None:
                columns += disc.columns
                notes += [f"{name}: skipped {i}: {a.reason}" for i, a in disc.skipped]
                notes += disc.info.get("notes", [])
                used.append(name)
    est = None
    if choice.name is None:
        w = estimate.w_per_core(w_per_core)
        have_tc = any(c.name == "task_clock_ns" for c in columns)
        col, label = estimate.cpu_time_column(roots, pid, have_tc, also_pids)
        if col is not None:
            columns.append(col)
        also_col = estimate.also_ticks_column(roots, col, also_pids)
        if also_col is not None:
            columns.append(also_col)
        est = {"model": estimate.MODEL, "w_per_core": w, "cpu_time_source": label,
               "cpu_time_column": col.name if col is not None else "task_clock_ns"}
        used.append(ESTIMATE)
    # Slots are limited: drop slow extras first, say so.
    while len(columns) > MAX_CHANNELS:
        victim = next((c for c in reversed(columns) if c.slow), None)
        if victim is None:
            raise AlemsError(f"{len(columns)} columns exceed the sampler's {MAX_CHANNELS} "
                             "slots; choose fewer sources with --sources")
        columns.remove(victim)
        notes.append(f"{victim.name}: dropped (more than {MAX_CHANNELS} columns)")
    return Plan(columns, used, choice.label, est, notes)
