"""Measure code from Python: `alems.measure`, `alems.measured`, `alems.mark`.

    with alems.measure("label", hz=1000) as m:
        with m.phase("load"):          # nestable, from any thread
            ...
    print(m.report())                  # energy per domain and per phase, and its source
    m.save("run.parquet")              # the same file and summary as `alems sample -o`

The same C sampler as `alems sample` at the same rate, following this process's threads
(the instrument's own excluded). Nothing is installed that would fight a host process (a
notebook kernel, a server): no signal handler, no atexit hook, no change to the
environment; the sampler's threads are its own and end at stop(). Light to import: the
sampler loads on the first start().

`alems.measure` is also the name of the instrument's subpackage; importing this module
makes that module callable, so `alems.measure("label")` works however `alems.measure`
was reached (and `alems.measure.Sampler` still names the sampler).
"""

from __future__ import annotations

import functools
import os
import types
from dataclasses import dataclass, field
from typing import Any

import alems.measure as _measure_pkg
from alems import config
from alems.errors import AlemsError
from alems.measure import phases as _phases
from alems.measure.markchannel import clean_name, send_mark

ESTIMATE = "estimate"


@dataclass(frozen=True)
class PhaseEnergy:
    """One phase of a measurement: its span on the samples' clock and its energy."""

    seq: int
    name: str
    kind: str
    parent_seq: int | None
    start_ns: int
    end_ns: int
    duration_s: float
    energy_j: dict = field(default_factory=dict)  # domain -> J (None: unknown, see summary)
    detail: dict = field(default_factory=dict)


class Measurement:
    """One in-process measurement (see the module docstring). Results, after the `with`
    block (or stop()): energy_j, energy_source, energy_label, phases, samples, summary,
    save(). Use as a decorator too: each call of the function is measured."""

    def __init__(self, label: str = "alems", hz: float = config.DEFAULT_HZ, *,
                 sources: list[str] | None = None, slow_hz: float = config.DEFAULT_SLOW_HZ,
                 gpus: list[int] | None = None, counters_full_rate: bool = False,
                 sysfs_root: str | None = None, proc_root: str | None = None,
                 msr_path: str | None = None) -> None:
        if not isinstance(label, str) or not label.strip():
            raise AlemsError(f"the label must be a non-empty string (got {label!r})")
        self.label = label
        self.hz = hz
        self._options: dict[str, Any] = dict(
            sources=sources, slow_hz=slow_hz, gpus=gpus, counters_full_rate=counters_full_rate,
            sysfs_root=sysfs_root, proc_root=proc_root, msr_path=msr_path)
        self._sampler: Any = None
        self._channel: Any = None
        self.recorder: _phases.PhaseRecorder | None = None
        self.result: Any = None
        self._summary: dict | None = None

    # -------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        return self._sampler is not None

    def start(self) -> Measurement:
        if self.running:
            raise AlemsError(f"measurement {self.label!r} is already running")
        from alems.measure.sampler import Sampler

        # Context switches are read at each drain, as `alems sample` does: the same cost.
        sampler = Sampler(self.hz, keep_samples=True, switch_poll_s=None, **self._options)
        sampler.start()
        self._sampler, self.recorder = sampler, sampler.recorder
        self.result, self._summary = None, None
        _phases.push_active(sampler.recorder)
        return self

    def stop(self) -> Measurement:
        if not self.running:
            if self.result is not None:
                return self
            raise AlemsError(f"measurement {self.label!r} was not started")
        sampler, self._sampler = self._sampler, None
        _phases.pop_active(sampler.recorder)
        if self._channel is not None:  # the marks written so far are in before the end
            self._channel.close()
            self._channel = None
        self.result = sampler.stop()
        return self

    def __enter__(self) -> Measurement:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.running:
            self.stop()

    def __call__(self, fn):
        """`@alems.measure("label", hz=...)`: measure each call of `fn` (see measured)."""
        return measured(self.label, hz=self.hz, **self._options)(fn)

    def phase(self, name: str, kind: str | None = None, **detail):
        """A phase of this measurement (a context manager; nestable, any thread)."""
        return self._live_recorder().phase(name, kind, **detail)

    def mark(self, name: str) -> bool:
        """A phase boundary now: phase `name` runs until the next mark (or the end)."""
        return self._live_recorder().mark(clean_name(name))

    def child_env(self) -> dict[str, str]:
        """Environment entries that let a child process mark phases of this measurement
        (`alems mark`, `alems.mark`): merge them into its env."""
        recorder = self._live_recorder()
        if self._channel is None:
            from alems.measure.markchannel import MarkChannel

            self._channel = MarkChannel(recorder).open()
        return dict(self._channel.env)

    def _live_recorder(self) -> _phases.PhaseRecorder:
        if not self.running or self.recorder is None:
            raise AlemsError(f"measurement {self.label!r} is not running; mark phases inside "
                             "its `with` block")
        return self.recorder

    # -------------------------------------------------------------- results
    def _done(self):
        if self.result is None:
            raise AlemsError(f"measurement {self.label!r} has no result yet; read it after "
                             "the `with` block (or stop())")
        return self.result

    @property
    def summary(self) -> dict:
        """The summary `alems sample --summary-json` writes (command: None, label: the
        label), with its warnings."""
        if self._summary is None:
            from alems.cli.sample_summary import data_warnings, summary_for_output

            summary = summary_for_output(self._done(), [], 0, None)
            summary["command"], summary["exit_code"], summary["label"] = None, None, self.label
            summary["warnings"] = data_warnings(summary)
            self._summary = summary
        return self._summary

    @property
    def energy_source(self) -> str:
        return str(self._done().energy_source)

    @property
    def energy_label(self) -> str:
        """'measured' (energy counters) or 'estimated' (CPU time × W/core: no counter)."""
        return "estimated" if self.energy_source == ESTIMATE else "measured"

    @property
    def energy_j(self) -> dict:
        return dict(self.summary["energy_j"])

    @property
    def duration_s(self) -> float:
        return float(self.summary["duration_s"])

    @property
    def phases(self) -> list[PhaseEnergy]:
        return [PhaseEnergy(p["seq"], p["name"], p["kind"], p["parent_seq"], p["start_ns"],
                            p["end_ns"], p["duration_s"], dict(p["energy_j"]), dict(p["detail"]))
                for p in self.summary["phases"]]

    @property
    def samples(self):
        """The samples as an Arrow table (one row per sample, `t_ns` first)."""
        return self._done().table

    def save(self, path, summary_json=None) -> None:
        """Write the samples as `alems sample -o PATH` does (Parquet, with its metadata
        and phases), and the summary as its --summary-json does when given a path."""
        from alems.outputs import check_output_path

        result = self._done()
        check_output_path(os.fspath(path), "path")
        if summary_json is not None:
            check_output_path(os.fspath(summary_json), "summary_json")
        result.write_parquet(path)
        if summary_json is not None:
            from alems.cli.sample_summary import write_summary_json

            write_summary_json(summary_json, {**self.summary, "output": os.fspath(path)})

    def report(self) -> str:
        """Energy per domain and per phase as text (nested phases indented)."""
        s = self.summary
        lines = [f"{self.label}: {s['duration_s']:.3f} s, {s['samples']:,} samples at "
                 f"{s['requested_hz']:g} Hz, energy {self.energy_label} "
                 f"(source: {self.energy_source})",
                 "  total" + _joules(s["energy_j"])]
        depth: dict = {}
        for p in s["phases"]:
            depth[p["seq"]] = depth.get(p["parent_seq"], 0) + 1
            lines.append("  " * depth[p["seq"]] + f"{p['name']} ({p['duration_s']:.3f} s)"
                         + _joules(p["energy_j"]))
        lines += [f"  warning: {w}" for w in s["warnings"]]
        from alems.cli.sample_summary import estimate_note

        note = estimate_note(s)
        if note:
            lines.append(f"  {note}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "running" if self.running else ("done" if self.result is not None else "new")
        return f"<alems.Measurement {self.label!r} {state}>"


def _joules(energy: dict) -> str:
    return "".join(f"  {d} {'n/a' if v is None else f'{v:.3f} J'}" for d, v in energy.items())


def measure(label: str = "alems", hz: float = config.DEFAULT_HZ, **options) -> Measurement:
    """A measurement: `with alems.measure("label", hz=1000) as m:` (or a decorator)."""
    return Measurement(label, hz, **options)


def measured(label=None, /, **options):
    """Decorator: each call of the function runs inside `alems.measure(label, ...)`; the
    last call's Measurement is `fn.last` (set even when the call raised). Plain
    `@alems.measured` names the measurement after the function."""
    if callable(label):
        return measured()(label)

    def wrap(fn):
        name = label or getattr(fn, "__qualname__", "alems")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            m = Measurement(name, **options)
            try:
                with m:
                    return fn(*args, **kwargs)
            finally:
                wrapper.last = m

        wrapper.last = None
        return wrapper

    return wrap


def mark(name: str) -> bool | None:
    """A phase boundary in the current measurement: the newest in-process one, else the
    command `alems sample` measures (its marker channel). None (nothing done) when this
    process is not measured; else whether the mark was kept."""
    recorder = _phases.active_recorder()
    if recorder is not None:
        return recorder.mark(clean_name(name))
    return send_mark(name)


class _MeasureModule(types.ModuleType):
    """The `alems.measure` subpackage, callable as `alems.measure(label, hz=...)`."""

    def __call__(self, label: str = "alems", hz: float = config.DEFAULT_HZ,
                 **options) -> Measurement:
        return measure(label, hz, **options)


_measure_pkg.__class__ = _MeasureModule
