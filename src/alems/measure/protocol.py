"""The interface the experiment room codes against: `SamplerProtocol`, which the C-core
`Sampler` and the recorded-table `ReplaySampler` both satisfy, and the phase marks they
share (phases are stamped on the samples' clock, CLOCK_MONOTONIC)."""

from __future__ import annotations

import contextlib
import time
from typing import Protocol, runtime_checkable

from alems.measure.phases import PhaseRecorder
from alems.measure.result import Phase, SampleResult


@runtime_checkable
class SamplerProtocol(Protocol):
    """start() … stop() -> SampleResult; phase() marks spans in between; usable as a
    context manager (stops on exit). `energy_source` is the provenance label ('powercap',
    'msr', 'perf', 'estimate', …); `result` is the last stop()'s result, else None."""

    energy_source: str
    result: SampleResult | None

    def start(self) -> None: ...

    def stop(self) -> SampleResult: ...

    def phase(self, name: str, kind: str | None = None,
              **detail) -> contextlib.AbstractContextManager[Phase]: ...

    def now_ns(self) -> int: ...

    def __enter__(self) -> SamplerProtocol: ...

    def __exit__(self, *exc) -> None: ...


class PhaseMarks:
    """phase(), mark() and now_ns() for every sampler: one PhaseRecorder (`recorder`,
    alems.measure.phases) on CLOCK_MONOTONIC, shared with whoever else marks phases of
    this run (a custom arm, a marker channel, OpenTelemetry spans)."""

    def _init_phases(self) -> None:
        self.recorder = PhaseRecorder()

    @staticmethod
    def now_ns() -> int:
        """CLOCK_MONOTONIC ns, the samples' clock."""
        return time.monotonic_ns()

    def phase(self, name: str, kind: str | None = None,
              **detail) -> contextlib.AbstractContextManager[Phase]:
        return self.recorder.phase(name, kind, **detail)

    def mark(self, name: str, t_ns: int | None = None, **detail) -> bool:
        """A phase boundary (alems.measure.phases): `name` runs until the next mark."""
        return self.recorder.mark(name, t_ns, **detail)

    def _phases_until(self, t_end_ns: int | None) -> list[Phase]:
        return self.recorder.phases(t_end_ns)
