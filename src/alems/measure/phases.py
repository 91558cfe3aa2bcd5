"""Phases of one measurement on the samples' clock (CLOCK_MONOTONIC ns), and their energy.

`PhaseRecorder` is the one type that records them, whoever marks them: a workflow's
`phase()` blocks (batch runs), `alems.measure`'s `m.phase()`, boundary marks (`alems
mark`, `alems.mark`, a custom arm's `phases.mark()`), and OpenTelemetry spans. It is
thread-safe and bounded: past `max_entries` phases and marks it keeps counting what it
drops instead of growing. Two shapes of phase:

- a span (`phase()` block, `add()`): it has its own start and end;
- a mark (`mark(name)`): a boundary; phase `name` runs from it to the next mark (or the
  end of the run). An empty name ends the current marked phase without starting another.
  Marks are ordered by their time stamp (taken by the sender), not by arrival.

Their rows with energy: alems.measure.result.phase_rows.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from alems import config

MARK_KIND = "mark"
# Detail keys of a phase that is a traced span (alems.otel): its id and its parent's.
SPAN_ID, PARENT_SPAN_ID = "span_id", "parent_span_id"


@dataclass
class Phase:
    """A span of a run on the samples' clock; end_ns None while it is open."""

    name: str
    kind: str
    start_ns: int
    end_ns: int | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class PhaseRecorder:
    """Thread-safe, bounded record of one measurement's phases and marks."""

    def __init__(self, max_entries: int = config.MAX_PHASES) -> None:
        self._lock = threading.Lock()
        self._spans: list[Phase] = []
        self._marks: list[tuple[int, int, str, dict]] = []  # (t_ns, arrival, name, detail)
        self.max_entries = int(max_entries)
        self.dropped = 0          # refused here: the bound was reached
        self.lost_by_senders = 0  # marks a sender could not deliver (channel full)

    now_ns = staticmethod(time.monotonic_ns)

    def _room(self) -> bool:
        if len(self._spans) + len(self._marks) < self.max_entries:
            return True
        self.dropped += 1
        return False

    def begin(self, name: str, kind: str | None = None, **detail) -> Phase:
        """Open a span now (stored unless the bound is reached); end() closes it."""
        ph = Phase(str(name), kind or str(name), time.monotonic_ns(), None, dict(detail))
        with self._lock:
            if self._room():
                self._spans.append(ph)
        return ph

    @staticmethod
    def end(ph: Phase, t_ns: int | None = None) -> None:
        ph.end_ns = time.monotonic_ns() if t_ns is None else int(t_ns)

    @contextlib.contextmanager
    def phase(self, name: str, kind: str | None = None, **detail) -> Iterator[Phase]:
        ph = self.begin(name, kind, **detail)
        try:
            yield ph
        finally:
            self.end(ph)

    def add(self, name: str, kind: str, start_ns: int, end_ns: int | None,
            detail: dict | None = None) -> bool:
        """A span timed elsewhere (on this clock); False when dropped."""
        ph = Phase(str(name), str(kind), int(start_ns),
                   None if end_ns is None else int(end_ns), dict(detail or {}))
        with self._lock:
            if not self._room():
                return False
            self._spans.append(ph)
        return True

    def mark(self, name: str, t_ns: int | None = None, **detail) -> bool:
        """A boundary at t_ns (default now): phase `name` starts, the previous marked
        phase ends. False when dropped."""
        t = time.monotonic_ns() if t_ns is None else int(t_ns)
        with self._lock:
            if not self._room():
                return False
            self._marks.append((t, len(self._marks), str(name), dict(detail)))
        return True

    def count_dropped(self, n: int) -> None:
        """Marks dropped before they reached the recorder (the channel's own bound)."""
        with self._lock:
            self.dropped += int(n)

    def count_lost(self, n: int) -> None:
        """Marks senders report they could not deliver (their channel was full)."""
        with self._lock:
            self.lost_by_senders += int(n)

    @property
    def marks_received(self) -> int:
        return len(self._marks)

    def mark_stats(self) -> dict:
        with self._lock:
            return {"received": len(self._marks), "dropped": self.dropped,
                    "lost_by_senders": self.lost_by_senders}

    def phases(self, t_end_ns: int | None = None) -> list[Phase]:
        """Every phase, spans and marks together, ordered by start; a marked phase ends
        at the next mark, the last at t_end_ns (open if None)."""
        with self._lock:
            spans = [Phase(**p.to_dict()) for p in self._spans]
            marks = sorted(self._marks)
        out = spans
        for i, (t, _, name, detail) in enumerate(marks):
            if not name:  # an end mark: closes the previous one, starts nothing
                continue
            end = marks[i + 1][0] if i + 1 < len(marks) else t_end_ns
            out.append(Phase(name, MARK_KIND, t, end, detail))
        out.sort(key=lambda p: p.start_ns)
        return out


# ------------------------------------------------------------------ the current measurement
# The recorders of the in-process measurements now running (alems.measure(...)), newest
# last: where `alems.mark` and the OpenTelemetry span processor put phases. Shared by all
# threads (a thread the measured code starts marks into the same measurement).
_active_lock = threading.Lock()
_active: list[PhaseRecorder] = []


def push_active(recorder: PhaseRecorder) -> None:
    with _active_lock:
        _active.append(recorder)


def pop_active(recorder: PhaseRecorder) -> None:
    with _active_lock:
        if recorder in _active:
            _active.remove(recorder)


def _forget_in_child() -> None:
    """A forked child is not the measured process: its copies of the recorders would keep
    marks nobody reads, so there it has none (alems.mark then uses the marker channel,
    or does nothing)."""
    global _active_lock
    _active_lock = threading.Lock()
    _active.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def active_recorder() -> PhaseRecorder | None:
    """The newest running in-process measurement's recorder, or None."""
    with _active_lock:
        return _active[-1] if _active else None
