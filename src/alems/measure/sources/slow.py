"""Slow sources, read every k-th tick and carried forward: thermal zones, cpuidle
residency per state (summed over CPUs), /proc/stat interrupts and context switches, and
the run queue (procs_running)."""

from __future__ import annotations

import glob
import os
import re

from alems.measure._native import MAX_INPUTS, ChannelSpec
from alems.measure.sources.base import (Availability, Column, Discovery, Roots,
                                        SourceUnavailable, availability_from, read_text,
                                        try_probe)

NAME = "slow"
DESCRIPTION = "thermal, cpuidle residency, /proc/stat interrupts/ctxt, run queue"
PREFERRED_THERMAL = ("x86_pkg_temp", "k10temp", "package", "cpu_thermal", "soc_thermal")


def _thermal(roots: Roots, disc: Discovery) -> None:
    zones = []
    for d in sorted(glob.glob(roots.sys("class/thermal/thermal_zone*"))):
        ztype = (read_text(os.path.join(d, "type")) or "").strip()
        zones.append((d, ztype))
    preferred = [z for z in zones if any(p in z[1].lower() for p in PREFERRED_THERMAL)]
    for d, ztype in preferred or zones:
        spec = ChannelSpec("text", os.path.join(d, "temp"), slow=True)
        _, exc = try_probe(spec)
        if exc is not None:
            disc.skipped.append((f"thermal {os.path.basename(d)} ({ztype})",
                                 Availability(False, exc.strerror or str(exc))))
            continue
        disc.columns.append(Column("package_temp_c", [spec], "temp", 0.001, slow=True,
                                   zone=f"{os.path.basename(d)}:{ztype}", source=NAME))
    if not zones:
        disc.skipped.append(("thermal", Availability(False, "no thermal zones")))


def _cpuidle(roots: Roots, disc: Discovery, budget: int) -> None:
    by_state: dict[str, list[ChannelSpec]] = {}
    for d in sorted(glob.glob(roots.sys("devices/system/cpu/cpu[0-9]*/cpuidle/state[0-9]*"))):
        name = read_text(os.path.join(d, "name"))
        if not name or not os.path.exists(os.path.join(d, "time")):
            continue
        by_state.setdefault(name, []).append(
            ChannelSpec("text", os.path.join(d, "time"), slow=True))
    total = sum(len(v) for v in by_state.values())
    if not by_state:
        disc.skipped.append(("cpuidle", Availability(False, "no cpuidle states (VM or idle=poll)")))
        return
    if total > budget:
        disc.skipped.append(("cpuidle", Availability(
            False, f"{total} cpuidle files exceed the sampler's input budget ({budget})")))
        return
    for state, specs in by_state.items():
        _, exc = try_probe(specs[0])
        if exc is not None:
            disc.skipped.append((f"cpuidle {state}", Availability(False, exc.strerror or str(exc))))
            continue
        col = "cstate_" + re.sub(r"[^A-Za-z0-9]+", "_", state).strip("_") + "_time_us"
        disc.columns.append(Column(col, specs, "counter", slow=True, zone=state, source=NAME))


def _procstat(roots: Roots, disc: Discovery) -> None:
    path = roots.procf("stat")
    for key, col, kind in (("intr ", "interrupts", "counter"),
                           ("ctxt ", "system_context_switches", "counter"),
                           ("procs_running ", "procs_running", "gauge")):
        spec = ChannelSpec("keyed", path, key=key, slow=True)
        _, exc = try_probe(spec)
        if exc is not None:
            disc.skipped.append(
                (col, Availability(False, f"{path} '{key.strip()}': {exc.strerror}")))
            continue
        disc.columns.append(Column(col, [spec], kind, slow=True, source=NAME))


def discover(roots: Roots, **_ctx) -> Discovery:
    disc = Discovery()
    _thermal(roots, disc)
    _procstat(roots, disc)
    _cpuidle(roots, disc, MAX_INPUTS // 2)
    if not disc.columns:
        raise SourceUnavailable(Availability(
            False, "; ".join(f"{n}: {a.reason}" for n, a in disc.skipped) or "nothing readable"))
    return disc


def describe(disc: Discovery) -> str:
    return ", ".join(sorted({c.name for c in disc.columns}))


available = availability_from(discover, describe)
