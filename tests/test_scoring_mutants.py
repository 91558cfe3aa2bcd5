"""Exact answer-extraction rules that mutation testing found unguarded (docs/TESTING.md)."""

from __future__ import annotations

from fractions import Fraction

from alems.experiment.scoring import (_word_number, find_numbers, normalise_text,
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


def test_tolerances_are_inclusive():
    assert numbers_match(parse_number("0"), parse_number("0.000000001"))    # 1e-9 absolute
    assert numbers_match(parse_number("1.4999985"), parse_number("1.5"))    # 1e-6 × 1.5


def test_unmarked_numbers_asides_and_cues():
    assert score("12 then 13 (or 14)", num("13")) == ("13", True)         # aside: not the last
    assert score("Tom has (12)", num("12")) == ("12", True)               # only in an aside
    assert score("(the first of many) Tom has 5 apples and 9 pears in 2 bags",
                 num("5")) == ("5", True)       # cue offsets in the text without asides
    assert score("It costs a b c (x) 5 then 9", num("5")) == ("5", True)  # aside: no words
    assert score("= 5 and 9", num("5")) == ("5", True)                    # a cue at offset 0
    # a cue exactly 60 characters back counts; 'this' cut to 'is' there: a cue
    assert score("this " + "w" * 56 + " 7 and 8", num("7")) == ("7", True)


def test_marked_segments_exact():
    assert score("Answer:", num("5")) == (None, False)
    assert score("Answer: 7\n9 apples\nend", num("7")) == ("7", True)     # its line only
    assert score("Answer: **Paris**", text("Paris")) == ("Paris", True)
    assert score("Answer: Xavier", text("Xavier")) == ("Xavier", True)
    assert score("Xavier", text("Xavier")) == ("Xavier", True)             # unmarked line
    assert score("Answer: 6; then 7", num("6"))[0] == "6"
    assert score("Answer: 6 apples. then 7", num("6"))[0] == "6"
    assert score("Answer: 2 + 3 = 5 = 4 + 1", num("4"))[0] == "4"          # the last '='
    assert score("Answer: 7 or (x)8", num("8"))[0] == "8"                  # aside dropped
    assert score("Answer: eight\nbut not nine", num("8")) == ("8", True)   # the segment's word
    assert _word_number("she ate eight").text == "eight"


def test_leads_and_yes_no_of_the_last_line():
    assert score("It is Paris", text("Paris")) == ("It is Paris", True)
    assert score("No doubt about it.\nYes", text("yes")) == ("yes", True)
