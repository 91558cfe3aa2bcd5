"""The arms a batch compares and the kinds of phase they mark, each named once: the
experiment runs them, the store pairs them, analysis and the dashboard show them.
`store/schema.sql` checks `runs.workflow_type` against the same names (a test keeps the
two in step)."""

from __future__ import annotations

LINEAR = "linear"      # one model call: the reference every other arm's tax is taken over
AGENTIC = "agentic"    # plan, tool calls, synthesis: the headline tax is agentic ÷ linear
REACT = "react"        # reason-act loop: its tax over linear is reported beside the headline

ARMS: tuple[str, ...] = (LINEAR, AGENTIC, REACT)   # also the order tables and figures use
DEFAULT_ARMS: tuple[str, ...] = (LINEAR, AGENTIC)  # what a batch runs unless told

# Phase kinds: the stages of an agentic run, and the activities inside any arm's stages.
STAGE_KINDS: tuple[str, ...] = ("planning", "execution", "synthesis")
ACTIVITY_KINDS: tuple[str, ...] = ("llm", "tool", "waiting")
