"""Prompts of both workflow arms and the tolerant parser for the agentic plan.

Plan format asked of the model, one step a line:

    1. TOOL calculator: <arithmetic expression>
    2. TOOL lookup: <table>|<key>
    3. THINK: <instruction>

The parser accepts what small models actually write: bullets or "Step 2:" instead of
numbers, markdown bold and backticks, lower case, "calc"/"calculate" for the calculator,
`calculator(3*4)` call style, and "table, key" for a lookup (rewritten to "table|key"). Lines it cannot read are
skipped and counted; a plan with no readable step is a fallback (decided by the caller).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANSWER_SYSTEM = (
    "You are a careful problem solver. Work through the problem briefly, then give the "
    "final answer on the last line in the form 'Answer: <answer>'."
)

PLAN_SYSTEM = (
    "You plan how to solve a problem; you do not solve it. Reply with a numbered list of "
    "at most {max_steps} steps and nothing else. Every step is one line in one of these forms:\n"
    "TOOL calculator: <arithmetic expression using numbers, + - * / ** and parentheses>\n"
    "TOOL lookup: <table>|<key>   (or <table>|<key>|<column>)\n"
    "THINK: <a short reasoning instruction>\n"
    "Use the calculator for arithmetic and lookup for facts stored in a table.\n"
    "Tools:\n{tools}\n"
    "Example.\n"
    "Question: A crate holds 24 bottles. How many bottles are in 17 crates after 5 break?\n"
    "Plan:\n"
    "1. TOOL calculator: 24 * 17 - 5\n"
    "2. THINK: state the number of bottles left"
)

STEP_SYSTEM = "You carry out one step of a plan. Be brief and precise."


def answer_prompt(question: str) -> tuple[str, str]:
    """(system, prompt) of the linear arm: one call with the task prompt."""
    return ANSWER_SYSTEM, question


def plan_prompt(question: str, tools_text: str, max_steps: int) -> tuple[str, str]:
    """tools_text: one line per tool (and table), as alems.experiment.tools.describe_tools() gives."""
    return (
        PLAN_SYSTEM.format(max_steps=max_steps, tools=tools_text.strip() or "- (none)"),
        f"Question: {question}\nPlan:",
    )


def _observations_block(observations: list[str]) -> str:
    return "\n".join(observations) if observations else "(none yet)"


def think_prompt(question: str, observations: list[str], index: int, instruction: str) -> tuple[str, str]:
    prompt = (
        f"Question: {question}\n\n"
        f"Results so far:\n{_observations_block(observations)}\n\n"
        f"Step {index}: {instruction}"
    )
    return STEP_SYSTEM, prompt


def synthesis_prompt(question: str, observations: list[str]) -> tuple[str, str]:
    prompt = (
        f"Question: {question}\n\n"
        f"Results of the plan's steps:\n{_observations_block(observations)}\n\n"
        "Using these results, answer the question."
    )
    return ANSWER_SYSTEM, prompt


MAX_OBSERVATION_CHARS = 400


def observation(index: int, label: str, output: str) -> str:
    """One line of the record the later steps and the synthesis see; long outputs are cut
    (the trace keeps them whole) so five steps fit a small model's context."""
    text = " ".join(output.split())
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[: MAX_OBSERVATION_CHARS - 1] + "…"
    return f"Step {index} ({label}) -> {text}"


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class PlanStep:
    kind: str  # 'tool' | 'think'
    argument: str  # the expression, 'table|key', or the THINK instruction
    tool: str | None = None

    @property
    def label(self) -> str:
        return f"{self.tool}: {self.argument}" if self.kind == "tool" else f"think: {self.argument}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "tool": self.tool, "argument": self.argument}


@dataclass(frozen=True)
class ParsedPlan:
    steps: list[PlanStep]
    ignored_lines: int


TOOL_ALIASES = {
    "calculator": "calculator", "calculate": "calculator", "calc": "calculator",
    "math": "calculator", "lookup": "lookup", "look_up": "lookup", "table": "lookup",
}

_MARKER = re.compile(r"^\s*(?:[-*•+>]\s*)?(?:(?:step\s*)?\d+\s*[.):\-]?\s*)?", re.IGNORECASE)
_TOOL_CALL = re.compile(r"^(?:tool\s*[:\-]?\s*)?([a-z_]+)\s*\((.+)\)\s*\.?$", re.IGNORECASE)
_TOOL_EXPLICIT = re.compile(r"^tool\s*[:\-]?\s*([a-z_]+)\s*[:\-=]\s*(.+)$", re.IGNORECASE)
_TOOL_BARE = re.compile(r"^(calculator|calculate|calc|lookup|look_up)\s*[:\-=]\s*(.+)$", re.IGNORECASE)
_THINK = re.compile(r"^(?:think|reason|reasoning)\s*[:\-]\s*(.+)$", re.IGNORECASE)


def _clean_line(line: str) -> str:
    line = line.replace("**", "").replace("__", "").replace("`", "")
    line = line.strip().lstrip("#").strip()
    return _MARKER.sub("", line, count=1).strip()


def _clean_argument(tool: str, argument: str) -> str:
    argument = argument.strip().strip("\"'“”").strip()
    if tool == "calculator":
        # "3 * 4 =", "3 * 4 = ?" and "3 * 4 = 11" (a guessed result): keep the expression
        argument = argument.split("=", 1)[0].strip().rstrip(".").strip()
    elif tool == "lookup":
        separator = "|" if "|" in argument else ","  # "table, key[, column]" -> "table|key[|column]"
        argument = "|".join(part.strip().strip("\"'") for part in argument.split(separator))
    return argument


def parse_plan(text: str) -> ParsedPlan:
    steps: list[PlanStep] = []
    ignored = 0
    for raw in (text or "").splitlines():
        if not raw.strip():
            continue
        line = _clean_line(raw)
        step = None
        match = _TOOL_EXPLICIT.match(line) or _TOOL_BARE.match(line)
        if match is None:
            call = _TOOL_CALL.match(line)
            if call and (call.group(1).lower() in TOOL_ALIASES or line.lower().startswith("tool")):
                match = call
        if match:
            name = match.group(1).lower()
            tool = TOOL_ALIASES.get(name, name)
            argument = _clean_argument(tool, match.group(2))
            if argument:
                step = PlanStep("tool", argument, tool)
        else:
            think = _THINK.match(line)
            if think and think.group(1).strip():
                step = PlanStep("think", think.group(1).strip())
        if step is None:
            ignored += 1
        else:
            steps.append(step)
    return ParsedPlan(steps, ignored)
