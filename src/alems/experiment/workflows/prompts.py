"""Prompts of the three arms. The format of plans and steps is not here: providers give it
(native tool use in the cloud, a grammar-bound JSON format for local models)."""

from __future__ import annotations

ANSWER_SYSTEM = (
    "You are a careful problem solver. Work through the problem briefly, then give the "
    "final answer on the last line in the form 'Answer: <answer>'."
)

PLAN_SYSTEM = (
    "You plan which tools to call to answer a question; you do not answer it yet. Call at "
    "most {max_calls} tools, all in this reply; call none when no tool helps. Use the "
    "calculator for arithmetic and lookup for facts stored in a table.\n"
    "Tools:\n{tools}\n"
    "Examples:\n"
    "Question: A crate holds 24 bottles. How many bottles are in 17 crates after 5 break?\n"
    "Calls: calculator(24 * 17 - 5)\n"
    "Question: What is the atomic number of Iron?\n"
    "Calls: lookup(elements, Iron, atomic_number)\n"
    "Question: Who painted the Mona Lisa?\n"
    "Calls: none"
)

REACT_SYSTEM = (
    "You answer a question by thinking step by step. Each reply is one thought and then "
    "either one tool call or the final answer. After a tool call you get its result as an "
    "observation. Give the final answer as soon as you know it; you have at most {max_steps} "
    "replies. Use the calculator for arithmetic and lookup for facts stored in a table.\n"
    "Tools:\n{tools}"
)

SYNTHESIS_INSTRUCTION = "Using the tool results above where they help, answer the question."
LAST_STEP_INSTRUCTION = "No tool calls are left: give the final answer now."


def answer_prompt(question: str) -> tuple[str, str]:
    """(system, prompt) of the linear arm: one call with the task prompt."""
    return ANSWER_SYSTEM, question


def plan_system(tools_text: str, max_calls: int) -> str:
    """tools_text: one line per tool (and table), as tools.describe_tools() gives."""
    return PLAN_SYSTEM.format(max_calls=max_calls, tools=tools_text.strip() or "- (none)")


def react_system(tools_text: str, max_steps: int) -> str:
    return REACT_SYSTEM.format(max_steps=max_steps, tools=tools_text.strip() or "- (none)")
