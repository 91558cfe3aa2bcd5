"""Answer extraction and correctness."""

import pytest

from alems.experiment.scoring import normalise_text, parse_number, score
from alems.catalog.tasks import TaskItem


def num(answer: str) -> TaskItem:
    return TaskItem(id="n", prompt="p", answer=answer, answer_type="number")


def text(answer: str, *aliases: str) -> TaskItem:
    return TaskItem(id="t", prompt="p", answer=answer, answer_type="text", aliases=list(aliases))


@pytest.mark.parametrize("response, truth, extracted", [
    ("Answer: 1,234", "1234", "1234"),
    ("It costs $12.50 in total.", "12.5", "12.5"),
    ("Answer: $1,234,567.00", "1234567", "1234567"),
    ("Answer: 45%", "45", "45%"),
    ("Answer: 25%", "0.25", "25%"),
    ("Answer: 3/4", "0.75", "0.75"),
    ("Answer: 1 1/2 cups", "1.5", "1.5"),
    ("The temperature is -7 degrees.", "-7", "-7"),
    ("Answer: −12", "-12", "-12"),
    ("5 + 3 = 8\nAnswer: 5 + 3 = 8", "8", "8"),
    ("The answer is 42. Check: 42 / 6 = 7", "42", "42"),
    ("I add 20 and 22 to get 42 apples", "42", "42"),
    ("Answer: 0.3333333", "1/3", "0.3333333"),
    ("Answer: 60 km", "60", "60"),
    ("Answer:\n17", "17", "17"),
    ("**Answer:** 99", "99", "99"),
    ("Give the final answer after 'Answer:'.\nAnswer: 9", "9", "9"),
    ("#### 72", "72", "72"),
    ("A spider has eight legs.", "8", "8"),
    ("Answer: 2966470108211", "2966470108211", "2966470108211"),
])
def test_numeric_answers_accepted(response, truth, extracted):
    assert score(response, num(truth)) == (extracted, True)


@pytest.mark.parametrize("response, truth", [
    ("Answer: 12", "13"),
    ("Answer: 2966470108212", "2966470108211"),     # integers: exact, no relative slack
    ("Answer: 0.334", "1/3"),
    ("Answer: -5", "5"),
    ("I do not know.", "5"),
    ("", "5"),
])
def test_numeric_wrong_answers_rejected(response, truth):
    extracted, correct = score(response, num(truth))
    assert correct is False


def test_no_number_gives_none():
    assert score("no idea", num("3")) == (None, False)


def test_numeric_tolerance_is_relative_for_decimals():
    assert score("Answer: 1000000.0005", num("1000000"))[1] is True
    assert score("Answer: 1000002", num("1000000.5"))[1] is False


@pytest.mark.parametrize("response, truth, aliases", [
    ("Answer: Paris.", "Paris", ()),
    ("The capital of France is Paris", "Paris", ()),
    ("Answer: paris", "Paris", ()),
    ("Answer: Shakespeare", "William Shakespeare", ("Shakespeare",)),
    ("Answer: Brasilia", "Brasília", ()),
    ("Answer: The Pacific", "Pacific Ocean", ("Pacific",)),
    ("Answer: H₂O", "H2O", ()),
    ("Thinking...\nMount Everest", "Mount Everest", ("Everest",)),
])
def test_text_answers_accepted(response, truth, aliases):
    assert score(response, text(truth, *aliases))[1] is True


@pytest.mark.parametrize("response, truth, aliases", [
    ("Answer: Lyon", "Paris", ()),
    ("Answer: Marlowe", "William Shakespeare", ("Shakespeare",)),
    ("Answer: the city of Paris is not the capital, it is a long story about Lyon", "Paris", ()),
    ("", "Paris", ()),
])
def test_text_wrong_answers_rejected(response, truth, aliases):
    assert score(response, text(truth, *aliases))[1] is False


@pytest.mark.parametrize("response, truth, correct", [
    ("Answer: Yes.", "yes", True),
    ("Answer: YES", "yes", True),
    ("Answer: True", "yes", True),
    ("Answer: False", "no", True),
    ("No, it does not follow.", "no", True),
    ("Answer: yes", "no", False),
    ("Answer: no", "yes", False),
    ("Answer: maybe", "yes", False),
])
def test_yes_no(response, truth, correct):
    assert score(response, text(truth))[1] is correct


def test_normalise_text():
    assert normalise_text("  The  Milky-Way! ") == "milky way"
    assert normalise_text("Bogotá") == "bogota"


def test_parse_number_forms():
    assert parse_number("$1,234.50").value == 1234.5
    assert parse_number("-3/4").value == -0.75
    assert parse_number("H2O") is None
    assert parse_number("50%").percent is True


# ------------------------------------------------------------------ the hand-labelled set

def test_scorer_agrees_with_hand_labels():
    """tests/data/scoring_labels.jsonl: real SmolLM2 responses and cloud-style answers of
    both arms, each verdict set by reading the response (see the file's `source`)."""
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in
            (Path(__file__).parent / "data" / "scoring_labels.jsonl").read_text().splitlines()]
    assert len(rows) >= 150 and {r["arm"] for r in rows} >= {"linear", "agentic"}
    wrong = []
    for r in rows:
        item = TaskItem(id=r["id"], prompt="p", answer=r["expected"], answer_type=r["answer_type"],
                        aliases=r["aliases"])
        if score(r["response"], item)[1] is not r["verdict"]:
            wrong.append((r["id"], r["response"], r["verdict"]))
    assert 1 - len(wrong) / len(rows) >= 0.98, wrong


@pytest.mark.parametrize("response, truth", [
    ("The first person to walk on the Moon was Neil Armstrong.", "Neil Armstrong"),
    ("The chemical symbol for gold is Au.", "Au"),
])
def test_answer_inside_a_sentence_counts(response, truth):
    assert score(response, text(truth))[1] is True


@pytest.mark.parametrize("response, truth", [
    ("He earns $336 and has $292 left after spending $44.", "292"),
    ("Using the calculator, 14 * 9 = 126. There are 126 stamps in 9 boxes.", "126"),
    ("Spiders are arachnids with 8 legs (insects have 6).", "8"),
    ("Answer: Sofia has 30 cookies, gives away 24, so 6 are left.", "6"),
    ("Answer: 403 bottles (24 * 17 - 5)", "403"),
])
def test_a_number_answer_is_the_final_number_asserted(response, truth):
    assert score(response, num(truth))[1] is True


def test_a_sentence_that_takes_the_answer_back_is_wrong():
    """From a real SmolLM2 run: the last mention of the answer is negated."""
    response = ("The first person to walk on the Moon was Neil Armstrong, who made the historic "
                "historic historic; however, the first person to walk on the Moon was not Neil "
                "Armstrong, but instead, it was named Buzz Alday.")
    assert score(response, text("Neil Armstrong", "Armstrong"))[1] is False
