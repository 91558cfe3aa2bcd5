"""Task sets: built-in JSONL files under data/tasks/, user JSONL files, GSM8K's own format.

A line of a native task file is one JSON object::

    {"id": "...", "prompt": "...", "answer": "42", "answer_type": "number",
     "needs_tool": null, "complexity_level": 1, "complexity_score": 2, "aliases": []}

A line in GSM8K's format has ``question`` and ``answer``; the answer's last line is
``#### N`` and N (commas stripped) is the ground truth.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from alems.datafiles import data_dir
from alems.errors import AlemsError, UsageError

ANSWER_TYPES = ("number", "text")
TOOL_NAMES = ("calculator", "lookup")
ANSWER_SUFFIX = "Give the final answer after 'Answer:'."

# Bounds on task files: a line (one item) and a prompt far beyond any model's context only
# cost memory and time before failing; JSON nested deeper than any item needs is refused.
MAX_LINE_CHARS = 1_000_000
MAX_PROMPT_CHARS = 200_000
MAX_FILE_BYTES = 256 * 1024 * 1024

# A ground-truth number longer than this is a data error, not an answer (and would exceed
# Python's int-to-text limit of 4300 digits).
MAX_ANSWER_DIGITS = 100
_MAX_ANSWER_BITS = int(MAX_ANSWER_DIGITS * 3.33)
_NUMBER_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class TaskItem:
    id: str
    prompt: str
    answer: str                     # ground truth, as a string
    answer_type: str                # 'number' | 'text'
    needs_tool: str | None = None   # 'calculator' | 'lookup' | None
    complexity_level: int = 1       # 1..3
    complexity_score: float = 1.0   # 1..10
    aliases: list[str] = field(default_factory=list)   # other accepted answers (text)

    def to_json(self) -> str:
        record = asdict(self)
        if not record["aliases"]:
            del record["aliases"]
        return json.dumps(record, ensure_ascii=False)


@dataclass
class TaskSet:
    name: str
    items: list[TaskItem]
    source: str                     # file the items were read from

    def __len__(self) -> int:
        return len(self.items)

    def item_for(self, repetition: int, seed: int) -> TaskItem:
        """The item for repetition ``repetition`` (0, 1, 2, …) under ``seed``.

        Walks a seeded permutation of the items, so consecutive repetitions get different
        items; after every item was used once, the next cycle uses a fresh permutation.
        The same (set, repetition, seed) always gives the same item.
        """
        if not isinstance(repetition, int) or repetition < 0:
            raise AlemsError(
                f"repetition must be a non-negative integer, got {repetition!r}; "
                "count repetitions from 0"
            )
        n = len(self.items)
        if n == 0:
            raise AlemsError(f"task set {self.name!r} has no items; load a task file with at "
                             "least one item")
        cycle, position = divmod(repetition, n)
        order = list(range(n))
        random.Random(f"alems-tasks|{self.name}|{seed}|{cycle}").shuffle(order)
        return self.items[order[position]]


def tasks_dir() -> Path:
    return data_dir("tasks")


def available_tasks() -> list[str]:
    """Names of the built-in task sets (stems of data/tasks/*.jsonl), sorted."""
    folder = tasks_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.jsonl"))


def load_task_set(name_or_path: str) -> TaskSet:
    """Load a built-in task set by name, or a JSONL file (native or GSM8K format) by path."""
    text = str(name_or_path).strip()
    names = available_tasks()
    if text in names:
        return _read_file(tasks_dir() / f"{text}.jsonl", name=text)
    path = Path(text).expanduser()
    if path.is_file():
        return _read_file(path, name=path.stem)
    what = "file not found" if ("/" in text or text.endswith(".jsonl")) else "unknown task set"
    raise UsageError(
        f"{what}: {text!r}; use a built-in task set ({', '.join(names) or 'none installed'}) "
        "or the path of a JSONL task file"
    )


def _read_file(path: Path, *, name: str) -> TaskSet:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AlemsError(f"task file {path} is {size / 1e6:.0f} MB, more than "
                             f"{MAX_FILE_BYTES / 1e6:.0f} MB; split it")
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AlemsError(f"cannot read task file {path}: {exc}; check the path and that it is "
                         "UTF-8 text") from exc
    items: list[TaskItem] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        item = _parse_line(line, path, line_no, stem=path.stem)
        if item.id in seen:
            raise AlemsError(
                f"{path}:{line_no}: duplicate item id {item.id!r} (first on line {seen[item.id]}); "
                "give every item a unique id"
            )
        seen[item.id] = line_no
        items.append(item)
    if not items:
        raise AlemsError(f"{path}: no task items; each line must be a JSON object with a prompt "
                         "and an answer")
    return TaskSet(name=name, items=items, source=str(path))


def _bad(path: Path, line_no: int, what: str) -> AlemsError:
    return AlemsError(
        f"{path}:{line_no}: {what}; each line needs 'prompt' and 'answer' (or GSM8K's "
        "'question' and 'answer' ending in '#### N'). Built-in task sets: "
        f"{', '.join(available_tasks())}"
    )


def _parse_line(line: str, path: Path, line_no: int, *, stem: str) -> TaskItem:
    if len(line) > MAX_LINE_CHARS:
        raise _bad(path, line_no, f"the line is {len(line):,} characters long, more than "
                   f"{MAX_LINE_CHARS:,}")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad(path, line_no, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise _bad(path, line_no, "JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise _bad(path, line_no, "a line must be a JSON object")
    try:  # JSON allows "\ud800"; such text cannot be stored, printed or sent to a model
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(path, line_no, "a text holds a lone surrogate escape (e.g. \\ud800), "
                   "which is not valid Unicode") from None
    if "prompt" in record:
        return _native_item(record, path, line_no, stem)
    if "question" in record:
        return _gsm8k_item(record, path, line_no, stem)
    raise _bad(path, line_no, "no 'prompt' or 'question' field")


def _text_field(record: dict, key: str, path: Path, line_no: int) -> str:
    value = record.get(key)
    if isinstance(value, bool) or value is None:
        raise _bad(path, line_no, f"'{key}' is missing or empty")
    if isinstance(value, (int, float)):
        value = repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, line_no, f"'{key}' must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise _bad(path, line_no, f"'{key}' is {len(value):,} characters long, more than "
                   f"{MAX_PROMPT_CHARS:,}")
    return value.strip()


def _looks_numeric(answer: str) -> bool:
    return (bool(_NUMBER_RE.match(answer.replace(",", "")))
            or bool(re.fullmatch(r"-?\d+/\d+", answer)))


def _native_item(record: dict, path: Path, line_no: int, stem: str) -> TaskItem:
    prompt = _text_field(record, "prompt", path, line_no)
    answer = _text_field(record, "answer", path, line_no)
    item_id = str(record.get("id") or f"{stem}-{line_no}")
    answer_type = record.get("answer_type") or ("number" if _looks_numeric(answer) else "text")
    if answer_type not in ANSWER_TYPES:
        raise _bad(path, line_no, f"answer_type {answer_type!r} is not one of "
                                  f"{', '.join(ANSWER_TYPES)}")
    if answer_type == "number" and not _looks_numeric(answer):
        raise _bad(path, line_no, f"answer {answer!r} is not a number but answer_type is 'number'")
    needs_tool = record.get("needs_tool")
    if needs_tool is not None and needs_tool not in TOOL_NAMES:
        raise _bad(path, line_no, f"needs_tool {needs_tool!r} is not one of "
                                  f"{', '.join(TOOL_NAMES)} or null")
    level = record.get("complexity_level", 1)
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 3:
        raise _bad(path, line_no, f"complexity_level {level!r} must be an integer from 1 to 3")
    score = record.get("complexity_score", float(level))
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 10:
        raise _bad(path, line_no, f"complexity_score {score!r} must be a number from 1 to 10")
    aliases = record.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise _bad(path, line_no, "'aliases' must be a list of non-empty strings")
    return TaskItem(
        id=item_id, prompt=prompt, answer=answer, answer_type=answer_type, needs_tool=needs_tool,
        complexity_level=level, complexity_score=score, aliases=[a.strip() for a in aliases],
    )


def _gsm8k_item(record: dict, path: Path, line_no: int, stem: str) -> TaskItem:
    question = _text_field(record, "question", path, line_no)
    solution = _text_field(record, "answer", path, line_no)
    if "####" not in solution:
        raise _bad(path, line_no, "GSM8K 'answer' does not end in '#### N'")
    reasoning, _, final = solution.rpartition("####")
    final = final.strip().replace(",", "").replace("$", "").strip()
    canonical = _canonical_number(final) if _looks_numeric(final) else None
    if canonical is None:
        raise _bad(path, line_no, f"the value after '####' ({final[:40]!r}) is not a number "
                   f"of at most {MAX_ANSWER_DIGITS} digits")
    steps = max(1, sum(1 for ln in reasoning.splitlines() if ln.strip()))
    level = 1 if steps <= 1 else 2 if steps <= 3 else 3
    item_id = str(record.get("id") or f"{stem}-{line_no}")
    return TaskItem(
        id=item_id, prompt=f"{question}\n{ANSWER_SUFFIX}", answer=canonical,
        answer_type="number", needs_tool=None, complexity_level=level,
        complexity_score=float(min(10, 1 + 2 * steps) if steps > 1 else 2),
    )


def _canonical_number(text: str) -> str | None:
    """'1,000' -> '1000', '3.50' -> '3.5', '007' -> '7' (exact, through Fraction); None for
    what no answer can be: a zero denominator ('3/0') or a number too long to print
    ('1e5000')."""
    try:
        value = Fraction(text.replace(",", ""))
    except (ZeroDivisionError, ValueError):
        return None
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > _MAX_ANSWER_BITS:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return text.replace(",", "")
