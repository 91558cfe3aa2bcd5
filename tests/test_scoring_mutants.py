"""Exact answer-extraction rules that mutation testing found unguarded (docs/TESTING.md)."""

from __future__ import annotations

from fractions import Fraction

from alems.experiment.scoring import (find_numbers, normalise_text,
                                      numbers_match, parse_number, score)
from alems.catalog.tasks import TaskItem


def num(answer: str) -> TaskItem:
    return TaskItem(id="n", prompt="p", answer=answer, answer_type="number")


def text(answer: str, *aliases: str) -> TaskItem:
    return TaskItem(id="t", prompt="p", answer=answer, answer_type="text", aliases=list(aliases))


def test_number_forms_are_exact():
    assert parse_number("1.5e3").value == 1500
    assert parse_number("2E-2").value == Fraction(1, 50)
    assert parse_number("2 1/1").value == 3          # a mixed number over 1
    assert parse_number("3/1").value == 3            # a fraction over 1
    assert parse_number("$-5").value == -5 and parse_number("$−5").value == -5
    assert parse_number(" 1,234 apples").text == "1,234"
    assert [n.value for n in find_numbers("x_1 and 4")] == [4]      # part of an identifier
    assert [n.value for n in find_numbers("H2O has 3 atoms")] == [3]
    assert [n.value for n in find_numbers("5 apples")] == [5]        # a number at the start
    assert numbers_match(parse_number("50"), parse_number("5000%"))  # 5000 % = 50


def test_marked_answers_are_cut_exactly():
    assert score("Answer: 7\nthen 9 more", num("7")) == ("7", True)
    assert score("Answer:\n\n42\n43", num("42")) == ("42", True)
    assert score("so \\boxed{12}.", num("12")) == ("12", True)
    assert score("**Answer:** *7*", num("7")) == ("7", True)
    assert score("Answer: 12 = 8 + 4", num("8"))[0] == "8"     # after the last '='
    assert score("Answer: (42)", num("42")) == ("42", True)          # only an aside
    assert score("Answer: none\nI think 5", num("5"))[0] == "5"
    assert score("Answer: 6. Then 7 more.", num("6"))[0] == "6"   # first sentence
    assert score("Answer: eight\nAnswer: nine", num("9")) == ("9", True)  # the last marker


def test_unmarked_numbers():
    assert score("She has 5 apples (not 9).", num("5")) == ("5", True)
    assert score("12 then 13", num("13"))[0] == "13"          # no cue: the last
    assert score(None, text("x")) == (None, False)
    assert score("", num("1")) == (None, False)


def test_text_answers_exact():
    assert score("**Paris**", text("Paris")) == ("Paris", True)
    assert score("?!", text("Paris")) == ("?!", False)
    assert score("Paris", text("???", "Paris"))[1] is True           # an empty form skipped
    assert score("not paris", text("Paris"))[1] is False
    assert score("no way it is paris", text("Paris"))[1] is True     # 'no' 4 words before


def _long(first: str, filler_words: int) -> str:
    return first + " " + " ".join(["word"] * filler_words) + "."


def test_a_long_answer_is_judged_by_its_last_sentence():
    at_limit = _long("Paris.", 29)
    assert len(normalise_text(at_limit).split()) == 30
    assert score(at_limit, text("Paris"))[1] is True                  # 30 words: all of it
    over = _long("Paris.", 30)
    assert len(normalise_text(over).split()) == 31
    assert score(over, text("Paris"))[1] is False                     # 31: the last sentence


def test_yes_no_answers_exact():
    assert score("Answer: yes", text("yes")) == ("yes", True)
    assert score("Answer: Yes, definitely", text("yes")) == ("yes", True)
    assert score("Yes.\nThat is all", text("yes")) == ("yes", True)
    assert score("Answer: no", text("No")) == ("no", True)
    assert score("No man's land", text("No man's land")) == ("No man's land", True)
