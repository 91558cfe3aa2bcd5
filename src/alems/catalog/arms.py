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

# A custom arm (docs/AGENTS.md) is named by the `module:callable` that runs it, stored as
# given in runs.workflow_type: stable across runs and machines, and readable. ASCII
# identifiers, dots and one colon only, so the name is safe as text on every surface (HTML,
# CSV, a shell line, a file name) without quoting; store/schema.sql CHECKs the same
# characters and length (a test keeps the two in step).
CUSTOM_ARM_PATTERN = (r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
                      r":[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
CUSTOM_ARM_MAX_CHARS = 100
# Phase kinds of a custom arm: its whole run, and the steps it marks itself.
AGENT_KIND = "agent"
STEP_KIND = "step"


def is_custom_arm(name: str) -> bool:
    """Whether `name` spells a custom arm (`module:callable`); says nothing of whether it
    imports (alems.experiment.workflows.custom checks that)."""
    import re

    return (isinstance(name, str) and len(name) <= CUSTOM_ARM_MAX_CHARS
            and re.fullmatch(CUSTOM_ARM_PATTERN, name) is not None)


def ordered_arms(present) -> list[str]:
    """The arms in `present` in the order tables and figures use: the built-in ones in
    ARMS order, then custom arms by name."""
    present = set(present)
    return [a for a in ARMS if a in present] + sorted(present - set(ARMS))
