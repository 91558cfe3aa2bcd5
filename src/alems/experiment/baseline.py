"""Idle power per energy domain: measured with the same sampler, nothing running.

A baseline is `repetitions` windows of `duration_s` each; per domain it keeps the mean and
the sample standard deviation (NULL for a single window) of the window powers, plus when it
was taken and the machine state (host, CPU frequency governor, energy source, 1-minute load
average). A stored baseline is reused only while it is fresh and safe: younger than
`max_age_s`, taken in the same state (host, governor, energy source), measured with at least
the requested window length and number of windows, and — unless this process measured it —
on a quiet machine. Quiet has the runs' one meaning (alems.measure.quiet.QUIET_RULE), judged
over the baseline's windows and stored in its state (`quiet`, `not_quiet_reason`): a
baseline measured while the machine was not quiet overstates idle power; the batch that
measured it uses it (with a warning), later batches never reuse it. Otherwise a new one is
measured. Window lengths are bounded (MIN_DURATION_S … MAX_DURATION_S): a window of a
few milliseconds holds a couple of samples and can report any power at all.

Measured GPUs (NVML) are covered too: their idle power (all GPUs together) is stored as the
`gpu` entry of `power_w`, and the GPUs measured (names) are part of the state, so a
baseline taken without a GPU is not reused for runs that measure one.

With the `estimate` source (CPU time of this process × W/core, the sampler's own threads
excluded) the idle windows see an idle process, so the baseline is near 0 W: stored as
measured.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alems import config
from alems.catalog.baselines import BASELINE_MAX_AGE_S
from alems.errors import AlemsError
from alems.measure.names import DOMAINS
from alems.measure.quiet import read_load_1m
from alems.measure.sources.base import read_text

if TYPE_CHECKING:
    from alems.measure.protocol import SamplerProtocol
from alems.store import baselines as store_baselines
from alems.store.runs import utc_now_iso

if TYPE_CHECKING:
    from alems.measure.protocol import SamplerProtocol

DEFAULT_DURATION_S = 5.0
DEFAULT_REPETITIONS = 3
MIN_DURATION_S = 0.01
MAX_DURATION_S = 600.0
MAX_REPETITIONS = 100
STATE_KEYS = ("host", "governor", "energy_source", "gpus")
GPU = "gpu"  # power_w key of all measured GPUs together


@dataclass
class Baseline:
    energy_source: str
    duration_s: float
    repetitions: int
    power_w: dict[str, float] = field(default_factory=dict)       # mean per domain
    power_w_std: dict[str, float | None] = field(default_factory=dict)
    measured_at: str = ""
    measured_t_ns: int | None = None
    state: dict = field(default_factory=dict)
    baseline_id: int | None = None

    @property
    def host(self) -> str | None:
        return self.state.get("host")

    def age_s(self, now: datetime | None = None) -> float:
        now = now or datetime.now(timezone.utc)
        return (now - datetime.fromisoformat(self.measured_at)).total_seconds()


# ---------------------------------------------------------------- machine state

def read_governor(sysfs_root: str | None = None) -> str | None:
    """cpufreq governor of cpu0 (None where cpufreq is absent, e.g. most VMs)."""
    root = Path(sysfs_root or config.sysfs_root())
    return read_text(str(root / "devices/system/cpu/cpu0/cpufreq/scaling_governor")) or None


def machine_state(energy_source: str | None, gpus: list[str] | None = None) -> dict:
    """gpus: names of the measured GPUs (None: none measured; the key is left out then, so
    older baselines without it still compare equal)."""
    state: dict[str, Any] = {"host": socket.gethostname(), "governor": read_governor(),
             "energy_source": energy_source, "load_1m": read_load_1m(),
             "kernel": os.uname().release, "cpus": os.cpu_count()}
    if gpus:
        state["gpus"] = list(gpus)
    return state


def gpu_names(result) -> list[str] | None:
    """'index:name' of the GPUs a SampleResult measured (None when none)."""
    gpus = (getattr(result, "summary", None) or {}).get("gpus") or []
    return [f"{g['index']}:{g['name']}" for g in gpus] or None


def state_change(old: dict, new: dict) -> str | None:
    """What changed between two states among STATE_KEYS (None if nothing)."""
    for key in STATE_KEYS:
        if old.get(key) != new.get(key):
            return f"{key} changed ({old.get(key)!r} -> {new.get(key)!r})"
    return None


# ---------------------------------------------------------------- measure

def measure(sampler_factory: Callable[[], SamplerProtocol], *,
            duration_s: float = DEFAULT_DURATION_S, repetitions: int = DEFAULT_REPETITIONS,
            sleep=time.sleep) -> Baseline:
    """Run `repetitions` idle windows of `duration_s` with fresh samplers from the factory."""
    if not 0 < duration_s <= MAX_DURATION_S:  # also NaN; the CLI's floor is MIN_DURATION_S
        raise AlemsError(f"baseline duration must be > 0 and at most {MAX_DURATION_S:g} s, "
                         f"got {duration_s!r}")
    if not isinstance(repetitions, int) or repetitions < 1:
        raise AlemsError(f"baseline repetitions must be a positive integer, got {repetitions!r}")
    from alems.measure.gpu_sampler import energy_uj as gpu_energy_uj

    from alems.measure.quiet import LoadProbe

    powers: dict[str, list[float]] = {}
    source = None
    gpus = None
    load = LoadProbe().start()   # was the machine quiet over the windows (the runs' rule)?
    for _ in range(repetitions):
        sampler = sampler_factory()
        sampler.start()
        try:
            sleep(duration_s)
        finally:
            result = sampler.stop()
        source = result.energy_source
        span_s = (result.t_end_ns - result.t_start_ns) / 1e9
        if span_s <= 0:
            raise AlemsError("baseline window had zero duration; the sampler clock did not advance")
        for dom, uj in (result.energy_uj(result.t_start_ns, result.t_end_ns) or {}).items():
            if dom in DOMAINS and uj is not None:
                powers.setdefault(dom, []).append(float(uj) / 1e6 / span_s)
        gpus = gpu_names(result)
        gpu_uj, _, _ = gpu_energy_uj(result, result.t_start_ns, result.t_end_ns)
        if gpu_uj is not None:
            powers.setdefault(GPU, []).append(gpu_uj / 1e6 / span_s)
    background = {k: v for k, (v, _) in load.stop().items()
                  if k in ("other_procs_running", "steal_fraction", "quiet", "not_quiet_reason")}
    mean = {d: statistics.fmean(v) for d, v in powers.items()}
    std = {d: (statistics.stdev(v) if len(v) >= 2 else None) for d, v in powers.items()}
    return Baseline(energy_source=source or "unknown", duration_s=float(duration_s),
                    repetitions=repetitions, power_w=mean, power_w_std=std,
                    measured_at=utc_now_iso(), measured_t_ns=time.monotonic_ns(),
                    state={**machine_state(source or "unknown", gpus), **background})


# ---------------------------------------------------------------- store / load

def save(conn, b: Baseline) -> int:
    b.baseline_id = store_baselines.insert_baseline(
        conn, measured_at=b.measured_at, measured_t_ns=b.measured_t_ns,
        duration_s=b.duration_s, repetitions=b.repetitions, energy_source=b.energy_source,
        state=b.state, power_w=b.power_w, power_w_std=b.power_w_std)
    return b.baseline_id


def latest(conn, energy_source: str, host: str | None = None) -> Baseline | None:
    row = store_baselines.latest_baseline(conn, energy_source, host or socket.gethostname())
    return None if row is None else Baseline(**row)


def not_quiet(state: dict) -> str | None:
    """Why a baseline taken in `state` overstates idle power: the machine was not quiet over
    its windows (alems.measure.quiet); None when it was, or when that is unknown (stored
    before baselines recorded it)."""
    if state.get("quiet") == 0:
        return f"the machine was not quiet ({state.get('not_quiet_reason')})"
    return None


def busy_note(b: Baseline) -> str | None:
    """What to say of a baseline measured on a machine that was not quiet (None if it was);
    `staleness` keeps its promise: only the batch that measured it (trusted) reuses it."""
    busy = not_quiet(b.state)
    return None if busy is None else (
        f"idle baseline #{b.baseline_id} measured while {busy}; it overstates idle power: "
        "this batch uses it, later batches measure their own")


def staleness(b: Baseline | None, state: dict, *, max_age_s: float = BASELINE_MAX_AGE_S,
              now: datetime | None = None, duration_s: float | None = None,
              repetitions: int | None = None, trusted: bool = False) -> str | None:
    """Why `b` cannot be reused in `state` (None when it is fresh and safe): also when it
    was measured with shorter windows than `duration_s`, fewer than `repetitions`, or —
    unless `trusted` (this process measured it) — on a busy machine."""
    if b is None:
        return "no stored baseline"
    if duration_s is not None and b.duration_s < duration_s * (1 - 1e-9):
        return f"stored baseline used {b.duration_s:g} s windows, {duration_s:g} s requested"
    if repetitions is not None and b.repetitions < repetitions:
        return f"stored baseline has {b.repetitions} window(s), {repetitions} requested"
    busy = None if trusted else not_quiet(b.state)
    if busy:
        return f"stored baseline #{b.baseline_id} was measured while {busy}"
    age = b.age_s(now)
    if age > max_age_s:
        return f"baseline is {age:.0f} s old (limit {max_age_s:g} s)"
    if age < -60:
        return "baseline is dated in the future (clock changed)"
    return state_change(b.state, state)


def get_or_measure(conn, sampler_factory: Callable[[], SamplerProtocol], energy_source: str, *,
                   duration_s: float = DEFAULT_DURATION_S,
                   repetitions: int = DEFAULT_REPETITIONS,
                   max_age_s: float = BASELINE_MAX_AGE_S, force: bool | str = False,
                   log: Callable[[str], None] | None = None,
                   trusted_ids: set | None = None, gpus: list[str] | None = None) -> Baseline:
    """A fresh, safe stored baseline for this machine state, or a newly measured (and
    saved) one. `force`: re-measure (a string says why); `trusted_ids`: baselines this
    process measured (reused even if the machine was busy; new ids are added); `gpus`: the
    GPUs the runs measure (gpu_names), part of the state compared."""
    state = machine_state(energy_source, gpus)
    current = None if force else latest(conn, energy_source, state["host"])
    why = (force if isinstance(force, str) else "re-measure requested") if force else \
        staleness(current, state, max_age_s=max_age_s, duration_s=duration_s,
                  repetitions=repetitions,
                  trusted=current is not None and current.baseline_id in (trusted_ids or ()))
    if why is None and current is not None:
        return current
    if log:
        log(f"measuring idle baseline ({repetitions} x {duration_s:g} s): {why}")
    b = measure(sampler_factory, duration_s=duration_s, repetitions=repetitions)
    if b.energy_source != energy_source:
        raise AlemsError(f"baseline sampler used energy source {b.energy_source!r}, runs use "
                         f"{energy_source!r}; pass the same --sources to both")
    with conn:
        save(conn, b)
    note = busy_note(b)
    if note and log:
        log(f"warning: {note}")
    if trusted_ids is not None:
        trusted_ids.add(b.baseline_id)
    return b


def negative_run_note(run: list, row: dict, base: Baseline) -> str | None:
    """Why a stored run points at a bad baseline: its dynamic energy came out negative (or
    was clipped to 0), i.e. the idle power is above what the run drew. None if fine."""
    dyn = row.get("dynamic_energy_uj")
    if not row or ((dyn is None or dyn >= 0) and not row.get("dynamic_clipped")):
        return None
    idle = ", ".join(f"{d} {w:.2f} W" for d, w in sorted((base.power_w or {}).items()))
    return (f"run {run} has negative dynamic energy: the idle baseline ({idle or 'n/a'}, "
            f"measured {base.measured_at}) is above its power")


class BaselineKeeper:
    """The baseline a batch uses before each run: `current()` reuses or measures one (a
    baseline this process measured is trusted even on a busy machine); `check_run` warns
    about a run with negative dynamic energy and has the next `current()` re-measure —
    once per baseline, so a truly noisy setup does not re-measure before every run."""

    def __init__(self, conn, sampler_factory, energy_source: str, *, duration_s: float,
                 repetitions: int, max_age_s: float, log: Callable[[str], None],
                 gpus: list[str] | None = None):
        self.conn, self.factory, self.source = conn, sampler_factory, energy_source
        self.duration_s, self.repetitions, self.max_age_s = duration_s, repetitions, max_age_s
        self.gpus = gpus
        self.log = log
        self.trusted: set = set()
        self.replaced: set = set()
        self.force: str | bool = False

    def current(self) -> Baseline:
        force, self.force = self.force, False
        return get_or_measure(self.conn, self.factory, self.source, log=self.log,
                              force=force, trusted_ids=self.trusted,
                              duration_s=self.duration_s, repetitions=self.repetitions,
                              max_age_s=self.max_age_s, gpus=self.gpus)

    def check_run(self, run: list, row: dict, base: Baseline) -> None:
        why = negative_run_note(run, row, base)
        if why is None:
            return
        self.log(f"warning: {why}")
        if base.baseline_id not in self.replaced:
            self.replaced.add(base.baseline_id)
            self.force = why
