"""The interface the experiment room codes against: `SamplerProtocol`, which the C-core
`Sampler` and the recorded-table `ReplaySampler` both satisfy, and the phase marks they
share (phases are stamped on the samples' clock, CLOCK_MONOTONIC)."""

from __future__ import annotations

import contextlib
import time
from typing import Protocol, runtime_checkable
from collections.abc import Iterator

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
    """phase() and now_ns() for every sampler: marks on CLOCK_MONOTONIC."""

    def _init_phases(self) -> None:
        self._phases: list[Phase] = []

    @staticmethod
    def now_ns() -> int:
        """CLOCK_MONOTONIC ns, the samples' clock."""
        return time.monotonic_ns()

    @contextlib.contextmanager
    def phase(self, name: str, kind: str | None = None, **detail) -> Iterator[Phase]:
        ph = Phase(str(name), kind or str(name), time.monotonic_ns(), None, dict(detail))
        self._phases.append(ph)
        try:
            yield ph
        finally:
            ph.end_ns = time.monotonic_ns()
