"""Running the tool calls a model asked for, the same way in every arm and for every
provider: a well-formed call runs inside a `tool:<name>` phase, a malformed one is
answered with an error result (the model sees why) and counted, never run."""

from __future__ import annotations

import functools

from alems.experiment import tools
from alems.experiment.providers import ToolCall, ToolResult
from alems.experiment.workflows.base import Tally, note_phase


@functools.lru_cache(maxsize=1)
def tool_descriptions() -> str:
    """One line per tool (and lookup table), read once per process: the tables do not
    change during a batch, and re-reading them would put file I/O into measured phases."""
    return tools.describe_tools()


def run_call(call: ToolCall, sampler, tally: Tally, step: int) -> ToolResult:
    """Run one call (or refuse a malformed one) and record it in the trace."""
    if call.malformed is not None:
        tally.malformed_tool_calls += 1
        output, failed = f"error: malformed tool call: {call.malformed}", True
    else:
        with sampler.phase(f"tool:{call.name}", kind="tool", tool=call.name, step=step) as ph:
            try:
                output, failed = str(tools.run_call(call.name, call.input)), False
            except tools.ToolError as exc:
                output, failed = f"error: {exc}", True
            note_phase(ph, failed=failed)
        tally.tool_calls += 1
    tally.trace.append({"event": "tool", "step": step, "call": call.as_dict(), "output": output,
                        "error": failed, "malformed": call.malformed is not None})
    return ToolResult(call, output, failed)


def skipped(call: ToolCall, reason: str, tally: Tally, step: int) -> ToolResult:
    """A call not run because of a limit; the model still gets a result for it (the
    Messages API wants one for every tool_use block)."""
    tally.trace.append({"event": "dropped", "step": step, "reason": reason, "call": call.as_dict()})
    return ToolResult(call, f"error: not run ({reason})", True)
