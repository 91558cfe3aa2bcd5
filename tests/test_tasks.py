"""Task sets: built-ins, user files, GSM8K format, repetition → item, ground-truth consistency."""

import json
import re
from fractions import Fraction

import pytest

import importlib.util
from pathlib import Path

_TASKGEN = Path(__file__).resolve().parents[1] / "scripts" / "taskgen.py"
_spec = importlib.util.spec_from_file_location("taskgen", _TASKGEN)
taskgen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(taskgen)
from alems.datafiles import data_dir, data_path
from alems.errors import AlemsError
from alems.experiment.scoring import score
from alems.catalog.tasks import TaskItem, TaskSet, available_tasks, load_task_set
from alems.experiment.tools import calculate, lookup

REQUIRED = {"gsm8k_basic", "gsm8k_multi_step", "factual_qa", "logical_reasoning", "tool_arithmetic", "tool_lookup"}


def test_builtin_sets_present():
    assert REQUIRED <= set(available_tasks())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_builtin_set_loads_and_is_well_formed(name):
    task_set = load_task_set(name)
    assert task_set.name == name and len(task_set.items) >= 30
    assert len({i.id for i in task_set.items}) == len(task_set.items)
    assert len({i.prompt for i in task_set.items}) == len(task_set.items)
    for item in task_set.items:
        assert item.answer_type in ("number", "text")
        assert 1 <= item.complexity_level <= 3 and 1 <= item.complexity_score <= 10
        assert "Answer:" in item.prompt
        # the ground truth, written as the requested answer, scores as correct
        assert score(f"Answer: {item.answer}", item) [1], item.id
    if name.startswith("tool_"):
        assert all(i.needs_tool == name.removeprefix("tool_").replace("arithmetic", "calculator") for i in task_set.items)


def test_wrong_answers_score_false_on_builtins():
    for name in REQUIRED:
        for item in load_task_set(name).items:
            wrong = "Answer: 123456789.5" if item.answer_type == "number" else "Answer: zzzq"
            assert score(wrong, item)[1] is False, item.id


def test_tool_arithmetic_answers_equal_the_calculator():
    for item in load_task_set("tool_arithmetic").items:
        expression = re.search(r"What is (.+?)\?", item.prompt).group(1)
        assert str(calculate(expression)) == item.answer, item.id
        assert len(item.answer) >= 10 or "÷" in item.prompt


def test_tool_lookup_answers_equal_the_tables():
    for item in load_task_set("tool_lookup").items:
        p = item.prompt
        if m := re.search(r"atomic number of (\w+)\?", p):
            assert lookup("elements", m.group(1), "atomic_number") == item.answer
        elif m := re.search(r"chemical symbol of (\w+)\?", p):
            assert lookup("elements", m.group(1), "symbol") == item.answer
        elif m := re.search(r"calling code of (.+?)\?", p):
            assert lookup("countries", m.group(1), "calling_code") == item.answer
        elif m := re.search(r"capital of (.+?)\?", p):
            assert lookup("countries", m.group(1), "capital") == item.answer
        elif m := re.search(r"how many units of (SKU-\d+)", p):
            assert lookup("inventory", m.group(1), "units_in_stock") == item.answer
        elif m := re.search(r"atomic numbers of (\w+) and (\w+)\?", p):
            total = sum(int(lookup("elements", e, "atomic_number")) for e in m.groups())
            assert str(total) == item.answer
        elif m := re.search(r"units of (SKU-\d+) in stock \(", p):
            units = int(lookup("inventory", m.group(1), "units_in_stock"))
            price = int(lookup("inventory", m.group(1), "unit_price_cents"))
            assert str(units * price) == item.answer
        else:
            pytest.fail(f"unrecognised tool_lookup prompt: {p}")


def _numbers(prompt: str) -> list[Fraction]:
    return [Fraction(n) for n in re.findall(r"\d+(?:\.\d+)?", prompt)]


def test_gsm8k_basic_answers_recomputed():
    for item in load_task_set("gsm8k_basic").items:
        a, b = _numbers(item.prompt)
        p, truth = item.prompt, Fraction(item.answer)
        if "more" in p:
            assert truth == a + b
        elif "gave" in p or "cuts off" in p:
            assert truth == a - b
        elif "equally" in p:
            assert truth == a / b
        else:
            assert truth == a * b, item.id


def test_logical_ordering_answers_follow_from_facts():
    for item in load_task_set("logical_reasoning").items:
        facts = re.findall(r"(\w+) is (\w+)er than (\w+)\.", item.prompt)
        if not facts:
            continue
        more = {"tall", "old", "fast", "heavi"}
        above = {(x, y) if word in more else (y, x) for x, word, y in facts}   # (more, less)
        people = {p for pair in above for p in pair}
        # transitive closure
        changed = True
        while changed:
            new = {(a, d) for a, b in above for c, d in above if b == c} - above
            above |= new
            changed = bool(new)
        top = [p for p in people if all((p, q) in above for q in people - {p})]
        bottom = [p for p in people if all((q, p) in above for q in people - {p})]
        if m := re.search(r"Who is the (\w+)est\?", item.prompt):
            expected = top[0] if m.group(1) in ("tall", "old", "fast", "heavi") else bottom[0]
            assert item.answer == expected, item.id
        else:
            x, y = re.search(r"Is (\w+) \w+er than (\w+)\?", item.prompt).groups()
            assert item.answer == ("yes" if (x, y) in above else "no"), item.id
            assert (x, y) in above or (y, x) in above


def test_generator_is_reproducible_and_committed():
    generated = taskgen.build_all(data_dir())
    for relative, text in generated.items():
        assert data_path(relative).read_text(encoding="utf-8") == text, relative
    assert taskgen.build_all(data_dir()) == generated


def test_item_for_cycles_through_distinct_items():
    task_set = load_task_set("gsm8k_basic")
    n = len(task_set.items)
    first = [task_set.item_for(k, seed=7).id for k in range(n)]
    assert len(set(first)) == n                              # one full cycle: every item once
    assert first == [task_set.item_for(k, seed=7).id for k in range(n)]   # deterministic
    assert first != [task_set.item_for(k, seed=8).id for k in range(n)]   # seed matters
    assert first != [i.id for i in task_set.items]           # permuted, not file order
    assert len({task_set.item_for(k, seed=7).id for k in range(30)}) == 30
    with pytest.raises(AlemsError):
        task_set.item_for(-1, seed=7)


def test_gsm8k_format_loader(tmp_path):
    path = tmp_path / "mini_gsm8k.jsonl"
    rows = [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24.\nTotal 48+24 = <<48+24=72>>72.\n#### 72"},
        {"question": "A house costs a lot. How much?", "answer": "It costs\n#### 1,250,000"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task_set = load_task_set(str(path))
    assert task_set.name == "mini_gsm8k" and task_set.source == str(path)
    first, second = task_set.items
    assert (first.answer, first.answer_type, first.id) == ("72", "number", "mini_gsm8k-1")
    assert second.answer == "1250000"
    assert first.prompt.startswith("Natalia") and "Answer:" in first.prompt
    assert first.complexity_level == 2
    assert score("She sold 72 clips.", first) == ("72", True)


def test_native_user_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "q1", "prompt": "Capital of Peru?", "answer": "Lima"}) + "\n")
    item = load_task_set(str(path)).items[0]
    assert item == TaskItem("q1", "Capital of Peru?", "Lima", "text", None, 1, 1.0, [])


@pytest.mark.parametrize("line, fragment", [
    ("{not json", "not valid JSON"),
    ('["a"]', "JSON object"),
    ('{"prompt": "x"}', "'answer'"),
    ('{"question": "x", "answer": "no hashes here"}', "####"),
    ('{"question": "x", "answer": "#### lots"}', "not a number"),
    ('{"prompt": "x", "answer": "1", "answer_type": "date"}', "answer_type"),
    ('{"prompt": "x", "answer": "abc", "answer_type": "number"}', "not a number"),
    ('{"prompt": "x", "answer": "1", "needs_tool": "web"}', "needs_tool"),
    ('{"prompt": "x", "answer": "1", "complexity_level": 5}', "complexity_level"),
    ('{"prompt": "x", "answer": "1", "complexity_score": 0}', "complexity_score"),
    ('{"text": "x"}', "no 'prompt'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "answer": "1"}) + "\n" + line + "\n")
    with pytest.raises(AlemsError) as caught:
        load_task_set(str(path))
    message = str(caught.value)
    assert f"{path}:2" in message and fragment in message
    assert "gsm8k_basic" in message                         # lists the built-in sets


def test_duplicate_ids_rejected(tmp_path):
    path = tmp_path / "dup.jsonl"
    line = json.dumps({"id": "a", "prompt": "x", "answer": "1"})
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(AlemsError, match="duplicate"):
        load_task_set(str(path))


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(AlemsError) as caught:
        load_task_set("gsm9k")
    assert "unknown task set" in str(caught.value) and "factual_qa" in str(caught.value)
    with pytest.raises(AlemsError) as caught:
        load_task_set(str(tmp_path / "nope.jsonl"))
    assert "file not found" in str(caught.value) and "tool_lookup" in str(caught.value)


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(AlemsError, match="no task items"):
        load_task_set(str(path))


def test_taskset_from_items():
    items = [TaskItem(str(i), f"p{i}", str(i), "number") for i in range(3)]
    task_set = TaskSet("tiny", items, "memory")
    assert {task_set.item_for(k, 1).id for k in range(3)} == {"0", "1", "2"}
    assert {task_set.item_for(k, 1).id for k in range(3, 6)} == {"0", "1", "2"}


def test_empty_taskset_item_for_is_a_clear_error():
    with pytest.raises(AlemsError, match="no items"):
        TaskSet("none", [], "memory").item_for(0, 1)
