"""Answer extraction and correctness: ``score(response, item) -> (extracted, correct)``.

Extraction prefers the text after the last 'Answer:' marker (also 'Final answer:',
'#### N', '\\boxed{N}'); without a marker, numeric tasks take the last number in the
response and text tasks the last non-empty line.

Numbers: commas, $, units, percentages, fractions (3/4, 1 1/2) and negative numbers are
understood. Two integer values must be equal; otherwise the tolerance is relative 1e-6 or
absolute 1e-9. A percentage matches either its value or its value ÷ 100.
A marked answer gives the final number it asserts: the number after the last '=' of its
first sentence, else the last number of that sentence once parenthesised asides are
dropped ("Answer: Sofia has 30, gives 24 away, so 6 are left" -> 6).
Text: case, accents, punctuation, articles and whitespace are ignored; the ground truth or
any alias must appear as whole words in the answer's sentence ("The first person to walk on
the Moon was Neil Armstrong." is correct for Neil Armstrong), unless its last mention is
negated ("not Paris", "Paris is not"). yes/no answers also accept true/false.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from alems.catalog.tasks import TaskItem

REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9
LONG_SEGMENT_WORDS = 30        # a longer answer line is judged by its last sentence

_MARKER = re.compile(
    r"(?:final\s+)?answer(?:\s+is)?\s*[:=]\s*|(?:final\s+)?answer\s+is\b\s*|####\s*",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(
    r"(?P<sign>[-+−]?)(?:\$\s?)?(?P<sign2>[-−]?)"
    r"(?P<whole>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d{1,3}))?"
    r"(?:\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)(?![\d/]))?"      # mixed number: 1 1/2
    r"(?:\s*/\s*(?P<over>\d+(?:\.\d+)?)(?![\d/]))?"          # fraction: 3/4
    r"(?P<pct>\s*(?:%|percent\b))?"
)
_ARTICLES = {"a", "an", "the"}
_LEADS = re.compile(r"^(?:so |thus |therefore |hence )?(?:the answer is |answer is |it is |it s )")
_YES = {"yes", "true"}
_NO = {"no", "false"}


# ---------------------------------------------------------------------------- numbers

class ParsedNumber:
    """A number as written: its exact value and whether it carried a percent sign."""

    __slots__ = ("value", "percent", "text")

    def __init__(self, value: Fraction, percent: bool, text: str):
        self.value, self.percent, self.text = value, percent, text

    def candidates(self) -> list[Fraction]:
        return [self.value, self.value / 100] if self.percent else [self.value]


def _from_match(match: re.Match) -> ParsedNumber | None:
    whole = match.group("whole").replace(",", "")
    value = Fraction(whole)
    if match.group("exp"):
        value *= Fraction(10) ** int(match.group("exp"))
    if match.group("num"):
        den = int(match.group("den"))
        if den == 0:
            return None
        value += Fraction(int(match.group("num")), den)
    if match.group("over"):
        over = Fraction(match.group("over"))
        if over == 0:
            return None
        value /= over
    if match.group("sign") in ("-", "−") or match.group("sign2") in ("-", "−"):
        value = -value
    return ParsedNumber(value, bool(match.group("pct")), match.group(0).strip())


def _numbers_at(text: str) -> list[tuple[int, ParsedNumber]]:
    """(start offset, number) of every number in the text, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        start = match.start("whole")
        if start > 0 and (text[start - 1].isalpha() or text[start - 1] == "_"):
            continue                     # part of a word or identifier, e.g. 'H2O', 'x1'
        parsed = _from_match(match)
        if parsed is not None:
            found.append((match.start(), parsed))
    return found


def find_numbers(text: str) -> list[ParsedNumber]:
    """Every number in the text, in order."""
    return [number for _, number in _numbers_at(text)]


def parse_number(text: str) -> ParsedNumber | None:
    """The first number in the text, or None."""
    numbers = find_numbers(text)
    return numbers[0] if numbers else None


def numbers_match(got: ParsedNumber, truth: ParsedNumber) -> bool:
    for a in got.candidates():
        for b in truth.candidates():
            if a.denominator == 1 and b.denominator == 1:
                if a == b:
                    return True
                continue
            diff = abs(float(a - b))
            if diff <= ABS_TOLERANCE or diff <= REL_TOLERANCE * max(abs(float(a)), abs(float(b))):
                return True
    return False


def _format_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.12g}"


# ---------------------------------------------------------------------------- text

def normalise_text(text: str) -> str:
    """Lower case, accents folded, punctuation and articles dropped, whitespace collapsed."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).casefold()
    folded = re.sub(r"[^\w\s]|_", " ", folded)
    return " ".join(w for w in folded.split() if w not in _ARTICLES)


def _yes_no(text: str) -> str | None:
    for word in normalise_text(text).split():
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    return None


_NEGATION_WORDS = {"not", "never", "no", "t"}   # 't' of isn't / wasn't after normalising
# 'Paris is not'
_NEGATED_AFTER = re.compile(r"^\s*(?:is|was|are)\s+not\b|^\s*(?:isn|wasn|aren)\s+t\b")


def _text_matches(extracted: str, accepted: list[str]) -> bool:
    if len(normalise_text(extracted).split()) > LONG_SEGMENT_WORDS:
        sentences = [x for x in re.split(r"(?<=[.!?])\s+", extracted.strip()) if x.strip()]
        extracted = sentences[-1] if sentences else extracted
    got = _LEADS.sub("", normalise_text(extracted)).strip()
    if not got:
        return False
    padded = f" {got} "
    for candidate in accepted:
        want = normalise_text(candidate)
        if not want:
            continue
        at = padded.rfind(f" {want} ")      # the last mention is the final assertion
        before = padded[:at].split()[-3:]          # 'was not Neil Armstrong' for 'Armstrong'
        if at >= 0 and not (_NEGATION_WORDS & set(before)
                            or _NEGATED_AFTER.search(padded[at + len(want) + 1:])):
            return True
    return False


# ---------------------------------------------------------------------------- extraction

def _marked_segments(response: str) -> list[str]:
    """Text after each answer marker, up to the end of its line; last marker first."""
    segments = [m.group(1) for m in _BOXED.finditer(response)]
    for match in _MARKER.finditer(response):
        # the marker's trailing \s* takes the newline too: 'Answer:\n42' gives '42'
        segments.append(response[match.end():].split("\n", 1)[0].strip())
    cleaned = [s.strip().strip("*").strip() for s in segments]
    return [s for s in reversed(cleaned) if re.search(r"\w", s)]


def _number_in_segment(segment: str) -> ParsedNumber | None:
    # the first sentence
    segment = re.split(r"(?<=[^\d\s])\.\s|\.\s+(?=[A-Z])|;", segment, maxsplit=1)[0]
    if "=" in segment:                               # 'Answer: 5 + 3 = 8'
        return parse_number(segment.rsplit("=", 1)[1])
    numbers = find_numbers(re.sub(r"\([^()]*\)", " ", segment)) or find_numbers(segment)
    return numbers[-1] if numbers else None


_CUE = re.compile(r"(?:=|\b(?:is|are|was|were|has|have|had|gets?|got|costs?|equals?|makes?|"
                  r"gives?|totals?|leaves?|to)\b)(?:\s+[^\s\d$=]+){0,4}\s*$", re.IGNORECASE)


def _asserted_number(response: str) -> ParsedNumber | None:
    """Without an answer marker: the last number a clause asserts ('… has $292 left',
    '= 126', 'gets 5 cookies'), parenthesised asides dropped; else the last number."""
    text = re.sub(r"\([^()]*\)", " ", response)
    found = _numbers_at(text) or _numbers_at(response)
    if not _numbers_at(text):
        text = response
    cued = [n for start, n in found if _CUE.search(text[max(0, start - 60):start])]
    if cued:
        return cued[-1]
    return found[-1][1] if found else None


def _extract(response: str, item: TaskItem) -> tuple[str | None, ParsedNumber | None]:
    response = response or ""
    segments = _marked_segments(response)
    if item.answer_type == "number":
        for segment in segments:
            number = _number_in_segment(segment)
            if number is not None:
                return _display(number), number
        number = _asserted_number(response)
        if number is not None:
            return _display(number), number
        word = _word_number(segments[0] if segments else response)
        if word is not None:
            return _display(word), word
        return None, None
    if segments:
        return segments[0], None
    lines = [ln.strip().strip("*").strip() for ln in response.splitlines() if ln.strip()]
    return (lines[-1] if lines else None), None


_WORD_NUMBERS = {
    w: i for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen", "twenty"])
}
_WORD_NUMBERS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                      "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000})


def _word_number(text: str) -> ParsedNumber | None:
    """A number written as one word ('eight', 'sixty'), for responses with no digits."""
    for word in reversed(normalise_text(text).split()):
        if word in _WORD_NUMBERS:
            return ParsedNumber(Fraction(_WORD_NUMBERS[word]), False, word)
    return None


def _display(number: ParsedNumber) -> str:
    return _format_fraction(number.value) + ("%" if number.percent else "")


def score(response: str, item: TaskItem) -> tuple[str | None, bool]:
    """(extracted answer, correct) for a model's response to a task item."""
    extracted, number = _extract(response, item)
    if extracted is None:
        return None, False
    if item.answer_type == "number":
        truth = parse_number(item.answer)
        return extracted, bool(truth is not None and number is not None
                               and numbers_match(number, truth))
    accepted = [item.answer, *item.aliases]
    truth_yn = _yes_no(item.answer) if normalise_text(item.answer) in _YES | _NO else None
    if truth_yn is not None:
        got = _yes_no(extracted)
        if got is None and not _marked_segments(response):
            got = _yes_no(response)
        return (got or extracted), got == truth_yn
    return extracted, _text_matches(extracted, accepted)
