"""The text protocol of models without native tool use (local, scripted): plans and ReAct
steps are JSON, decoded under a GBNF grammar built from the tools and tables, so that a
local model's plan always parses, names a real tool, gives an argument of the right shape
(an arithmetic expression that parses, a table, key and column that exist) and holds at
most `max_calls` calls.

    plan:  {"tool_calls": [CALL, ...]}
    step:  {"thought": "...", "action": CALL}   or   {"thought": "...", "answer": "..."}
    CALL:  {"tool": "calculator", "expression": "24 * 17 - 5"}
           {"tool": "lookup", "table": "elements", "key": "Iron", "column": "atomic_number"}
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from alems.experiment import tools
from alems.experiment.providers import ToolCall, Turn

MAX_TEXT_CHARS = 200          # a thought or a step's answer; bounds a step's length
_MAX_TERMS = 6                # operators per level of an expression
_CALL_OBJECT = re.compile(r'\{"tool":[^{}]*\}')

FORMATS = {
    "plan": ('Reply with JSON only: {{"tool_calls": [...]}} with at most {max_calls} calls, '
             'or {{"tool_calls": []}} when no tool helps. A call is '
             '{{"tool": "calculator", "expression": "..."}} or '
             '{{"tool": "lookup", "table": "...", "key": "...", "column": "..."}}.'),
    "step": ('Reply with JSON only: {{"thought": "...", "action": CALL}} to use a tool, or '
             '{{"thought": "...", "answer": "..."}} to give the final answer. CALL is '
             '{{"tool": "calculator", "expression": "..."}} or '
             '{{"tool": "lookup", "table": "...", "key": "...", "column": "..."}}.'),
}


def _lit(text: str) -> str:
    """A GBNF literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _json_lit(value: str) -> str:
    return _lit(json.dumps(value, ensure_ascii=False))


@functools.lru_cache(maxsize=16)
def grammar_text(mode: str, max_calls: int) -> str:
    """The GBNF grammar of a plan (at most max_calls calls) or of a ReAct step."""
    rules = []
    if mode == "plan":
        body = ""
        if max_calls >= 1:
            more = f' ( ", " call ){{0,{max_calls - 1}}}' if max_calls > 1 else ""
            body = f" ( call{more} )?"
        rules.append(f'root ::= "{{\\"tool_calls\\": ["{body} "]}}"')
    elif mode == "step":
        rules.append('root ::= "{\\"thought\\": " text ", " ( "\\"action\\": " call | '
                     '"\\"answer\\": " text ) "}"')
        rules.append(f'text ::= "\\"" [^"\\\\\\n]{{1,{MAX_TEXT_CHARS}}} "\\""')
    else:
        raise ValueError(f"no grammar for mode {mode!r}")
    tables = tools.available_tables()
    alternatives = ["calc"] + [f"lookup{i}" for i in range(len(tables))]
    rules.append("call ::= " + " | ".join(alternatives))
    rules.append('calc ::= "{\\"tool\\": \\"calculator\\", \\"expression\\": \\"" expr "\\"}"')
    for i, table in enumerate(tables):
        keys = " | ".join(_json_lit(k) for k in tools.table_keys(table))
        columns = " | ".join(_json_lit(c) for c in tools.table_columns(table)[1:])
        rules.append(f'lookup{i} ::= '
                     f'"{{\\"tool\\": \\"lookup\\", \\"table\\": " {_json_lit(table)} '
                     f'", \\"key\\": " ( {keys} ) ( ", \\"column\\": " ( {columns} ) )? "}}"')
    # two levels of parentheses: every expression parses, and its length is bounded
    rules += [
        f'expr ::= term2 ( ws [-+] ws term2 ){{0,{_MAX_TERMS}}}',
        f'term2 ::= factor2 ( ws [*/] ws factor2 ){{0,{_MAX_TERMS}}}',
        'factor2 ::= "-"? ( num | "(" expr1 ")" )',
        f'expr1 ::= term1 ( ws [-+] ws term1 ){{0,{_MAX_TERMS}}}',
        f'term1 ::= num ( ws [*/] ws num ){{0,{_MAX_TERMS}}}',
        'num ::= [0-9]{1,12} ( "." [0-9]{1,6} )?',
        'ws ::= " "?',
    ]
    return "\n".join(rules) + "\n"


def format_instructions(mode: str, max_calls: int) -> str:
    return FORMATS[mode].format(max_calls=max_calls) if mode in FORMATS else ""


# --------------------------------------------------------------------------- rendering

def _result_line(result) -> str:
    text = " ".join(result.output.split())
    return f"{result.call.name}({tool_argument_text(result.call)}) -> {text}"


def tool_argument_text(call: ToolCall) -> str:
    if isinstance(call.input, dict):
        return ", ".join(str(v) for v in call.input.values())
    return str(call.input)


def render(system: str | None, conversation: list[Turn], mode: str, max_calls: int) -> list[dict]:
    """Chat messages for a text-protocol model. Answer mode folds the conversation into one
    user message (question, tool results, instruction): small models read that best."""
    fmt = format_instructions(mode, max_calls)
    system_text = "\n".join(p for p in (system, fmt) if p)
    messages = [{"role": "system", "content": system_text}] if system_text else []
    if mode == "answer":
        parts, results = [], []
        for turn in conversation:
            if turn.role == "user":
                parts.append(turn.text)
            elif turn.role == "tool":
                results += [_result_line(r) for r in turn.results]
        if results:
            parts.insert(1 if parts else 0, "Tool results:\n" + "\n".join(results))
        messages.append({"role": "user", "content": "\n\n".join(parts)})
        return messages
    for turn in conversation:
        if turn.role == "assistant":
            messages.append({"role": "assistant", "content": turn.raw or turn.text})
        elif turn.role == "tool":
            lines = [f"Observation: {_result_line(r)}" for r in turn.results]
            messages.append({"role": "user", "content": "\n".join(lines)})
        else:
            messages.append({"role": "user", "content": turn.text})
    return messages


# --------------------------------------------------------------------------- parsing

def _call(obj, index: int) -> ToolCall:
    if not isinstance(obj, dict):
        return ToolCall(str(obj), obj, f"call_{index}", "a call must be a JSON object")
    fields = {k: v for k, v in obj.items() if k != "tool"}
    call = ToolCall(str(obj.get("tool", "")), fields, f"call_{index}")
    try:
        tools.check_call(call.name, fields)
    except tools.ToolError as exc:
        call.malformed = str(exc)
    return call


def parse(text: str, mode: str) -> dict:
    """{'calls', 'thought', 'answer', 'readable', 'salvaged'} from a plan or step reply.
    A plan cut short keeps its complete calls (salvaged=True)."""
    out: dict[str, Any] = {"calls": [], "thought": "", "answer": None, "readable": False,
                           "salvaged": False}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if mode == "plan":
        if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
            out.update(readable=True,
                       calls=[_call(c, i) for i, c in enumerate(data["tool_calls"], 1)])
        else:
            found = []
            for match in _CALL_OBJECT.finditer(text or ""):
                try:
                    found.append(json.loads(match.group(0)))
                except ValueError:
                    continue
            if found:
                out.update(readable=True, salvaged=True,
                           calls=[_call(c, i) for i, c in enumerate(found, 1)])
        return out
    if isinstance(data, dict) and isinstance(data.get("thought", ""), str):
        out["thought"] = data.get("thought", "")
        if "action" in data:
            out.update(readable=True, calls=[_call(data["action"], 1)])
        elif isinstance(data.get("answer"), str):
            out.update(readable=True, answer=data["answer"])
    return out
