"""perf_event_open sources.

- 'perf-power': the `power` PMU (RAPL through perf), system-wide on one CPU per package.
- 'perf': hardware and software counters of the measured process tree: one counter per
  thread that exists at the start (minus the instrument's own, alems.measure.threads), each
  with inherit=1 so that threads created later by those threads are counted too. A thread
  that exits before its counter opens counts nothing (no error). For a gated, not yet
  exec'd command the counters start disabled with enable_on_exec, so they count from the
  command's first instruction. A counter that cannot be opened is
  skipped with its reason. The C core opens the counters of one target (software ones
  together, hardware ones together) as one perf group and reads each group with one
  read() per tick; counters the kernel will not group are read one by one (a note says so).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence

from alems.measure._native import (PERF_ENABLE_ON_EXEC, PERF_EXCLUDE_HV, PERF_EXCLUDE_KERNEL,
                       PERF_INHERIT, PERF_THREAD, ChannelSpec)
from alems.measure.threads import workload_tids
from alems.measure.sources.base import (Availability, Column, Discovery, Roots,
                                        SourceUnavailable, availability_from, cpus,
                                        first_cpu_per_package, perm_denied, read_int,
                                        read_text, try_probe)

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
# column name -> (type, config)
HARDWARE = {
    "instructions": (PERF_TYPE_HARDWARE, 1),
    "cycles": (PERF_TYPE_HARDWARE, 0),
    "cache_references": (PERF_TYPE_HARDWARE, 2),
    "cache_misses": (PERF_TYPE_HARDWARE, 3),
    "branch_misses": (PERF_TYPE_HARDWARE, 5),
}
SOFTWARE = {
    "task_clock_ns": (PERF_TYPE_SOFTWARE, 1),
    "page_faults": (PERF_TYPE_SOFTWARE, 2),
    "context_switches": (PERF_TYPE_SOFTWARE, 3),
    "cpu_migrations": (PERF_TYPE_SOFTWARE, 4),
}
POWER_EVENTS = {"energy-pkg": "pkg", "energy-cores": "core", "energy-gpu": "uncore",
                "energy-ram": "dram", "energy-psys": "psys"}


def paranoid(roots: Roots) -> int | None:
    return read_int(roots.procf("sys/kernel/perf_event_paranoid"))


def why_not(exc: OSError, roots: Roots, what: str, system_wide: bool) -> Availability:
    """errno of perf_event_open -> reason and exact fix."""
    if perm_denied(exc):
        level = paranoid(roots)
        need = "-1" if system_wide else "1"
        return Availability(
            False, f"{what}: permission denied (kernel.perf_event_paranoid={level})",
            f"run as root, or `sudo sysctl kernel.perf_event_paranoid={need}`")
    if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL):
        return Availability(False, f"{what}: not supported here ({exc.strerror}; e.g. a VM "
                            "without a virtual PMU)", "")
    if exc.errno == errno.EMFILE:
        return Availability(False, f"{what}: too many open files", "raise `ulimit -n`")
    return Availability(False, f"{what}: {exc.strerror or exc}", "")


# ------------------------------------------------------------------ power PMU

def _parse_cpulist(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
    return out


def discover_power(roots: Roots, **_ctx) -> Discovery:
    base = roots.sys("bus/event_source/devices/power")
    ptype = read_int(os.path.join(base, "type"))
    if ptype is None:
        raise SourceUnavailable(Availability(
            False, f"no perf `power` PMU ({base}/type missing: kernel without perf RAPL, "
            "or not Intel/AMD)", "use powercap or msr instead"))
    cpu_list = _parse_cpulist(read_text(os.path.join(base, "cpumask"))) or \
        list(first_cpu_per_package(roots).values())
    disc = Discovery()
    first_failure = None
    for event, domain in POWER_EVENTS.items():
        spec_text = read_text(os.path.join(base, "events", event))
        if not spec_text:
            continue
        m = re.search(r"event=(0x[0-9a-fA-F]+|\d+)", spec_text)
        if not m:
            continue
        config = int(m.group(1), 0)
        try:
            scale_j = float(read_text(os.path.join(base, "events", event + ".scale")) or "nan")
        except ValueError:
            scale_j = float("nan")
        unit = read_text(os.path.join(base, "events", event + ".unit")) or "Joules"
        if not (scale_j > 0) or unit.lower() != "joules":
            disc.skipped.append(
                (event, Availability(False, f"unusable scale/unit {scale_j} {unit}")))
            continue
        for cpu in cpu_list:
            spec = ChannelSpec("perf", f"power/{event}/cpu{cpu}", perf_type=ptype,
                               perf_config=config, pid=-1, cpu=cpu)
            _, exc = try_probe(spec)
            if exc is not None:
                av = why_not(exc, roots, f"power/{event}", True)
                if first_failure is None:
                    first_failure = av
                disc.skipped.append((f"{event}@cpu{cpu}", av))
                continue
            disc.columns.append(Column(f"zone_perf_{domain}_cpu{cpu}_energy_uj", [spec],
                                       "energy", scale_j * 1e6, None, domain,
                                       f"{event}@cpu{cpu}", source="perf-power"))
    if not disc.columns:
        raise SourceUnavailable(first_failure if first_failure is not None else
                                Availability(False, "no energy-* events in the power PMU"))
    return disc


def describe_power(disc: Discovery) -> str:
    return "events " + ", ".join(sorted({c.zone.split("@")[0] for c in disc.columns if c.zone}))


available_power = availability_from(discover_power, describe_power)


# ------------------------------------------------------------------ counters

def counter_specs(name: str, ptype: int, config: int, *, pid: int | None, gated: bool,
                  system_wide: bool, roots: Roots, extra_flags: int = 0,
                  also_pids: Sequence[int] = ()) -> list[ChannelSpec]:
    """One counter per workload thread (see the module docstring), plus one per thread
    of each `also_pids` process (a local model server: running, never gated), all summed
    in the column."""
    if system_wide:
        return [ChannelSpec("perf", f"{name}/cpu{c}", perf_type=ptype, perf_config=config,
                            pid=-1, cpu=c, perf_flags=extra_flags) for c in cpus(roots)]
    flags = PERF_INHERIT | extra_flags | (PERF_ENABLE_ON_EXEC if gated else 0)
    target = os.getpid() if pid is None else pid
    tids = [] if gated else workload_tids(target, roots.proc)  # a gated child: one thread
    if not tids:
        specs = [ChannelSpec("perf", name, perf_type=ptype, perf_config=config, pid=target,
                             cpu=-1, perf_flags=flags)]
    else:
        specs = [ChannelSpec("perf", f"{name}/tid{tid}", perf_type=ptype, perf_config=config,
                             pid=tid, cpu=-1, perf_flags=flags | PERF_THREAD) for tid in tids]
    also_flags = PERF_INHERIT | extra_flags | PERF_THREAD   # threads born later: inherit
    for other in also_pids:
        specs += [ChannelSpec("perf", f"{name}/pid{other}/tid{tid}", perf_type=ptype,
                              perf_config=config, pid=tid, cpu=-1, perf_flags=also_flags)
                  for tid in workload_tids(other, roots.proc)]
    return specs


def open_counter(name: str, ptype: int, config: int, *, pid: int | None = None,
                 gated: bool = False, system_wide: bool = False, roots: Roots,
                 also_pids: Sequence[int] = ()) -> tuple[Column | None, Availability]:
    """Probe one counter; on EACCES retry counting user space only."""
    specs = counter_specs(name, ptype, config, pid=pid, gated=gated,
                          system_wide=system_wide, roots=roots, also_pids=also_pids)
    _, exc = try_probe(specs[0])
    if exc is not None and exc.errno == errno.ENODATA:
        exc = None  # opened, but not scheduled yet (PMU full): sampled, null until it runs
    note = ""
    if exc is not None and perm_denied(exc) and not system_wide:
        specs = counter_specs(name, ptype, config, pid=pid, gated=gated, system_wide=False,
                              roots=roots, extra_flags=PERF_EXCLUDE_KERNEL | PERF_EXCLUDE_HV,
                              also_pids=also_pids)
        _, exc2 = try_probe(specs[0])
        if exc2 is None:
            exc, note = None, f" (user space only: perf_event_paranoid={paranoid(roots)})"
    if exc is not None:
        return None, why_not(exc, roots, name, system_wide)
    return Column(name, specs, "counter", source="perf"), Availability(True, "opened" + note)


def discover_counters(roots: Roots, *, pid: int | None = None, gated: bool = False,
                      system_wide: bool = False, also_pids: Sequence[int] = (),
                      **_ctx) -> Discovery:
    disc = Discovery()
    for name, (ptype, config) in {**HARDWARE, **SOFTWARE}.items():
        col, av = open_counter(name, ptype, config, pid=pid, gated=gated,
                               system_wide=system_wide, roots=roots, also_pids=also_pids)
        if col is None:
            disc.skipped.append((name, av))
        else:
            disc.columns.append(col)
            if av.reason != "opened":
                disc.info.setdefault("notes", []).append(f"{name}{av.reason[6:]}")
    if not disc.columns:
        raise SourceUnavailable(disc.skipped[0][1])
    return disc


def describe_counters(disc: Discovery) -> str:
    text = "counters " + ", ".join(c.name for c in disc.columns)
    missing = [n for n, _ in disc.skipped]
    return text + ("; not available: " + ", ".join(missing) if missing else "")


available_counters = availability_from(discover_counters, describe_counters)
