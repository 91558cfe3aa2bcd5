"""The agent's tools: a safe calculator (walks Python's AST, never eval) and a table lookup.

``run_call(name, {fields})`` runs a structured tool call (``check_call`` says whether it is
well-formed, against ``input_schemas()``); ``run_tool(name, text)`` runs one from argument
text. Both return the output as a string or raise ``ToolError`` with one clear line.
"""

from __future__ import annotations

import ast
import csv
import difflib
import math
import operator
import re
from dataclasses import dataclass
from collections.abc import Callable

from alems.datafiles import data_dir
from alems.errors import AlemsError

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_ABS_EXPONENT = 1000
MAX_RESULT_BITS = 4096          # integers larger than this (about 1233 digits) are refused


class ToolError(AlemsError):
    """A tool refused its input or failed; the message says why and what input works."""


# ---------------------------------------------------------------------------- calculator

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _sqrt(x):
    if x < 0:
        raise ToolError(f"calculator: sqrt of a negative number ({x}); the calculator works on "
                        "real numbers")
    if isinstance(x, int):
        root = math.isqrt(x)
        if root * root == x:
            return root
    return math.sqrt(x)


def _round(x, ndigits=None):
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or not -50 <= ndigits <= 50:
        raise ToolError("calculator: round(x, n) needs a whole n between -50 and 50")
    return round(x, ndigits)


_FUNCTIONS: dict[str, tuple[Callable, int, int]] = {   # name -> (function, min args, max args)
    "sqrt": (_sqrt, 1, 1), "abs": (abs, 1, 1), "round": (_round, 1, 2),
    "min": (lambda *a: min(a), 1, 50), "max": (lambda *a: max(a), 1, 50),   # arity checked
}

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _normalise_expression(expression: str) -> str:
    """Accept the way people and models write arithmetic: ×, ÷, ^, −, 1,234,567, a trailing '='."""
    text = expression.strip().strip("`").strip()
    for src, dst in (("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"), ("–", "-"), ("^", "**"),
                     ("$", "")):
        text = text.replace(src, dst)
    text = text.rstrip("=? ").strip()
    if not re.search(r"[A-Za-z_]\s*\(", text):     # no function call: commas are digit groups
        text = _THOUSANDS.sub("", text)
    return text


def _check_int(value, what: str):
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise ToolError(
            f"calculator: {what} would have more than {MAX_RESULT_BITS} bits; "
            "the calculator refuses numbers that large"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"calculator: {what} is not a finite number (overflow)")
    return value


def _power(base, exponent):
    if isinstance(exponent, float) and exponent.is_integer() and abs(exponent) <= MAX_ABS_EXPONENT:
        exponent = int(exponent) if isinstance(base, int) else exponent
    if abs(exponent) > MAX_ABS_EXPONENT:
        raise ToolError(
            f"calculator: exponent {exponent} is too large; |exponent| must be at most "
            f"{MAX_ABS_EXPONENT}"
        )
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0
            and abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_RESULT_BITS):
            raise ToolError(
                f"calculator: {base}**{exponent} would have more than {MAX_RESULT_BITS} bits; "
                "the calculator refuses numbers that large"
            )
    if base == 0 and exponent < 0:
        raise ToolError("calculator: zero cannot be raised to a negative power (division by zero)")
    try:
        result = base ** exponent
    except OverflowError:
        raise ToolError(
            f"calculator: {base}**{exponent} overflows a floating-point number") from None
    if isinstance(result, complex):
        raise ToolError(
            f"calculator: ({base})**({exponent}) is not a real number; the calculator works on "
            "real numbers"
        )
    return result


def _binary(op: ast.operator, left, right):
    kind = type(op)
    if kind is ast.Pow:
        return _power(left, right)
    if (kind is ast.Mult and isinstance(left, int) and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_RESULT_BITS + 1):
            raise ToolError(
                f"calculator: the product would have more than {MAX_RESULT_BITS} bits; "
                "the calculator refuses numbers that large"
            )
    if kind in (ast.Div, ast.FloorDiv, ast.Mod) and right == 0:
        raise ToolError("calculator: division by zero")
    if kind is ast.Div and isinstance(left, int) and isinstance(right, int) and left % right == 0:
        return left // right            # keep exact integers exact: 6/3 -> 2, not 2.0
    try:
        return _BINARY[kind](left, right)
    except OverflowError:
        raise ToolError("calculator: the result overflows a floating-point number") from None


def _evaluate(node: ast.AST):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError(
                f"calculator: {type(value).__name__} values are not allowed ({value!r}); use "
                "numbers only"
            )
        return _check_int(value, "a number")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _evaluate(node.left)
        right = _evaluate(node.right)
        return _check_int(_binary(node.op, left, right), "the result")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise ToolError(
                f"calculator: calling {ast.unparse(node.func)!r} is not allowed; "
                f"allowed functions: {', '.join(sorted(_FUNCTIONS))}"
            )
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ToolError(f"calculator: {node.func.id}() takes plain positional numbers only")
        function, low, high = _FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            raise ToolError(f"calculator: {node.func.id}() takes {low}-{high} arguments, got "
                            f"{len(node.args)}")
        args = [_evaluate(a) for a in node.args]
        try:
            return _check_int(function(*args), "the result")
        except OverflowError:
            raise ToolError(f"calculator: {node.func.id}() overflowed") from None
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(
            f"calculator: names are not allowed ({node.id!r}); use numbers, + - * / // % **, "
            f"parentheses, pi, e and {', '.join(sorted(_FUNCTIONS))}()"
        )
    raise ToolError(
        f"calculator: {type(node).__name__} is not allowed; use numbers, + - * / // % **, "
        f"parentheses and {', '.join(sorted(_FUNCTIONS))}()"
    )


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; ToolError on anything but arithmetic."""
    if not isinstance(expression, str):
        raise ToolError("calculator: expected an expression as text, got "
                        f"{type(expression).__name__}")
    text = _normalise_expression(expression)
    if not text:
        raise ToolError("calculator: empty expression; give an arithmetic expression such as 12 * "
                        "(3 + 4)")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(
            f"calculator: expression is {len(text)} characters; at most {MAX_EXPRESSION_CHARS} are "
            "accepted"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"calculator: cannot parse {text!r} ({exc.msg}); write plain arithmetic "
                        "such as 12 * (3 + 4)") from None
    except (RecursionError, MemoryError, ValueError):
        raise ToolError("calculator: expression is nested too deeply or malformed") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"calculator: expression has more than {MAX_NODES} parts; split it into "
                        "smaller steps")
    try:
        return _evaluate(tree)
    except RecursionError:
        raise ToolError("calculator: expression is nested too deeply") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ToolError(f"calculator: cannot evaluate {text!r}: {exc}") from None


def format_number(value: int | float) -> str:
    """Tool output text: integers exactly, floats without float noise (0.1+0.2 -> 0.3)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.12g}" if abs(value) < 1e15 and abs(value) >= 1e-6 else repr(value)


# ---------------------------------------------------------------------------- lookup

def _norm_key(text: str) -> str:
    return " ".join(str(text).strip().strip("'\"").casefold().split())


def available_tables() -> list[str]:
    folder = data_dir("tables")
    return sorted(p.stem for p in folder.glob("*.csv")) if folder.is_dir() else []


def _load_table(table: str) -> tuple[str, list[str], list[list[str]]]:
    names = available_tables()
    wanted = _norm_key(table).removesuffix(".csv")
    match = next((n for n in names if n.casefold() == wanted), None)
    if match is None:
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ToolError(f"lookup: unknown table {table!r}; {hint}tables: "
                        f"{', '.join(names) or 'none'}")
    with open(data_dir("tables") / f"{match}.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise ToolError(f"lookup: table {match!r} is empty")
    return match, rows[0], rows[1:]


def table_columns(table: str) -> list[str]:
    return _load_table(table)[1]


def lookup(table: str, key: str, column: str | None = None) -> str:
    """Value for ``key`` (matched case-insensitively against the first column) in table.

    With ``column`` the value of that column; without it, the single value of a two-column
    table, or ``col=value; …`` for every other column of the row.
    """
    name, header, rows = _load_table(table)
    wanted = _norm_key(key)
    row = next((r for r in rows if _norm_key(r[0]) == wanted), None)
    if row is None:
        keys = [r[0] for r in rows]
        close = difflib.get_close_matches(str(key).strip(), keys, n=3, cutoff=0.6)
        close = close or [k for k in keys if wanted and wanted in _norm_key(k)][:3]
        hint = (f"did you mean {', '.join(close)}?" if close
                else f"keys look like {', '.join(keys[:5])}")
        raise ToolError(f"lookup: no row {key!r} in table {name!r} (key column {header[0]!r}); "
                        f"{hint}")
    if column is not None:
        columns = {_norm_key(h): i for i, h in enumerate(header)}
        index = columns.get(_norm_key(column))
        if index is None:
            raise ToolError(f"lookup: table {name!r} has no column {column!r}; columns: "
                            f"{', '.join(header[1:])}")
        return row[index]
    if len(header) == 2:
        return row[1]
    return "; ".join(f"{h}={v}" for h, v in zip(header[1:], row[1:], strict=False))


def _lookup_argument(argument: str) -> str:
    """'table, key[, column]' (or ':' / '|'); '|' first: unlike ',' it is never in a key."""
    text = argument.strip().strip("`").strip()
    for separator in ("|", ",", ":"):
        if separator in text:
            parts = [p.strip().strip("'\"") for p in text.split(separator)]
            break
    else:
        parts = [text]
    if len(parts) == 2:
        return lookup(parts[0], parts[1])
    if len(parts) == 3:
        return lookup(parts[0], parts[1], parts[2])
    raise ToolError(
        f"lookup: cannot read {argument!r}; write 'table, key' or 'table, key, column' "
        f"(tables: {', '.join(available_tables())})"
    )


# ---------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Tool:
    name: str
    description: str                 # one line for the planner prompt
    run: Callable[[str], str]        # argument text -> output text


TOOLS: dict[str, Tool] = {
    "calculator": Tool(
        "calculator",
        "exact arithmetic; argument: an expression with numbers, + - * / // % ** ( ) and "
        "sqrt, abs, round, min, max, e.g. 4821937 * 615203",
        lambda argument: format_number(calculate(argument)),
    ),
    "lookup": Tool(
        "lookup",
        "read a value from a reference table; argument: 'table, key' or 'table, key, column', "
        "e.g. elements, Iron, atomic_number",
        _lookup_argument,
    ),
}


def table_keys(table: str) -> list[str]:
    return [row[0] for row in _load_table(table)[2]]   # first column, file order


def input_schemas() -> dict[str, dict]:
    """Each tool's input as a JSON schema: what a structured tool call must hold. The cloud
    provider sends these as the Messages API's `tools`; `check_call` enforces them."""
    tables = available_tables()
    return {
        "calculator": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description":
                           "arithmetic: numbers, + - * / ** and parentheses, e.g. 24 * 17 - 5"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        "lookup": {
            "type": "object",
            "properties": {
                "table": {"type": "string", "enum": tables, "description": "the reference table"},
                "key": {"type": "string", "description": "the row, by the table's first column"},
                "column": {"type": "string", "description": "optional: the column to read"},
            },
            "required": ["table", "key"],
            "additionalProperties": False,
        },
    }


def check_call(name: str, arguments) -> str:
    """The argument text of a structured tool call, or ToolError saying why the call is
    malformed (unknown tool, missing or extra field, not text, unparseable expression).
    A well-formed call may still fail when run (division by zero, no such row)."""
    schemas = input_schemas()
    if name not in schemas:
        raise ToolError(f"unknown tool {name!r}; tools: {', '.join(schemas)}")
    if not isinstance(arguments, dict):
        raise ToolError(f"{name}: the input must be an object, got {type(arguments).__name__}")
    schema = schemas[name]
    wrong = [f"missing {k}" for k in schema["required"] if k not in arguments]
    wrong += [f"unknown {k}" for k in sorted(set(arguments) - set(schema["properties"]))]
    if wrong:
        raise ToolError(f"{name}: {', '.join(wrong)}; fields: {', '.join(schema['properties'])}")
    for key, value in arguments.items():
        if not isinstance(value, str) or not value.strip():
            raise ToolError(f"{name}: {key} must be non-empty text, got {value!r}")
    if name == "calculator":
        text = _normalise_expression(arguments["expression"])
        try:
            ast.parse(text, mode="eval")
        except (SyntaxError, ValueError, RecursionError):
            raise ToolError(f"calculator: cannot parse {arguments['expression']!r}; "
                            "write plain arithmetic such as 12 * (3 + 4)") from None
        return arguments["expression"]
    table = arguments["table"]
    if table not in schema["properties"]["table"]["enum"]:
        raise ToolError(f"lookup: unknown table {table!r}; tables: {', '.join(available_tables())}")
    parts = [table, arguments["key"]] + ([arguments["column"]] if "column" in arguments else [])
    return "|".join(parts)


def run_call(name: str, arguments: object) -> str:
    """Run a structured tool call; ToolError if it is malformed or the tool fails."""
    return run_tool(name, check_call(name, arguments))


def describe_tools() -> str:
    """One line per tool, for a planner prompt; lists the lookup tables and their columns."""
    lines = [f"- {tool.name}: {tool.description}" for tool in TOOLS.values()]
    for table in available_tables():
        header = table_columns(table)
        lines.append(f"  table {table}: key {header[0]}; columns {', '.join(header[1:])}")
    return "\n".join(lines)


def run_tool(name: str, argument: str) -> str:
    """Run the named tool on the argument text; ToolError on an unknown tool or bad input."""
    tool = TOOLS.get(str(name).strip().lower())
    if tool is None:
        raise ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOLS)}")
    if not isinstance(argument, str):
        raise ToolError(f"{tool.name}: argument must be text, got {type(argument).__name__}")
    return tool.run(argument)
