"""OpenTelemetry spans as phases of the current measurement (the `otel` extra).

    from opentelemetry.sdk.trace import TracerProvider
    from alems.otel import PhaseSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(PhaseSpanProcessor())
    with alems.measure("agent") as m:
        run_my_instrumented_agent()     # its spans become phases of m

Each span that starts while an in-process measurement runs (alems.measure; or the one
given to the processor) becomes a phase named after the span (in a command run under
`alems sample`, with no in-process measurement: a phase of that run, sent through its
marker channel, alems.measure.markchannel), timed on the samples' clock
(CLOCK_MONOTONIC, stamped when the SDK calls on_start / on_end: the span's own times are
wall-clock). Its kind follows the GenAI semantic conventions' `gen_ai.operation.name`:
a model call (chat, text_completion, generate_content), a tool call (execute_tool), an
agent step otherwise. Its detail keeps the span's attributes (model, token usage, tool
name, …) and its span / parent span / trace ids, so a span's true parent is known even
when spans of several threads overlap.
"""

from __future__ import annotations

import threading
import time

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from alems.measure import phases as _phases
from alems import config
from alems.measure.markchannel import send_span

OPERATION = "gen_ai.operation.name"
MODEL_CALL, TOOL_CALL, AGENT_STEP = "model_call", "tool_call", "agent_step"
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TOOL_OPERATIONS = frozenset({"execute_tool"})


def phase_kind(operation) -> str:
    """The phase kind of a span whose gen_ai.operation.name is `operation`."""
    if operation in MODEL_OPERATIONS:
        return MODEL_CALL
    if operation in TOOL_OPERATIONS:
        return TOOL_CALL
    return AGENT_STEP


class PhaseSpanProcessor(SpanProcessor):
    """Turns ended spans into phases (see the module docstring). `measurement`: an
    alems.Measurement to record into; default: whichever is running when a span starts."""

    def __init__(self, measurement=None) -> None:
        self._measurement = measurement
        self._lock = threading.Lock()
        # span id -> (recorder, start on the samples' clock); bounded like the phases
        self._open: dict[int, tuple[_phases.PhaseRecorder | None, int]] = {}

    def _recorder(self) -> _phases.PhaseRecorder | None:
        if self._measurement is not None:
            return self._measurement.recorder if self._measurement.running else None
        return _phases.active_recorder()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        recorder = self._recorder()
        if span.context is None or recorder is None and (
                self._measurement is not None or not config.mark_fifo()):
            return  # not measured: neither in-process nor under `alems sample`
        with self._lock:
            if len(self._open) < config.MAX_PHASES:
                self._open[span.context.span_id] = (recorder, time.monotonic_ns())
            elif recorder is not None:
                recorder.count_dropped(1)

    def on_end(self, span: ReadableSpan) -> None:
        end_ns = time.monotonic_ns()
        if span.context is None:
            return
        with self._lock:
            got = self._open.pop(span.context.span_id, None)
        if got is None:  # started outside a measurement
            return
        recorder, start_ns = got
        attributes = dict(span.attributes or {})
        detail = {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}
        detail[_phases.SPAN_ID] = f"{span.context.span_id:016x}"
        detail["trace_id"] = f"{span.context.trace_id:032x}"
        detail[_phases.PARENT_SPAN_ID] = (f"{span.parent.span_id:016x}"
                                          if span.parent is not None else None)
        kind = phase_kind(attributes.get(OPERATION))
        if recorder is None:  # a command under `alems sample`: through its marker channel
            send_span(span.name, kind, start_ns, end_ns, detail)
        else:
            recorder.add(span.name, kind, start_ns, end_ns, detail)

    def shutdown(self) -> None:
        with self._lock:
            self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # phases are recorded as spans end: nothing is buffered
