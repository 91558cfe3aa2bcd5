"""Generate the built-in task sets (data/tasks/*.jsonl) and data/tables/inventory.csv.

Templated items get their answers computed here (exact arithmetic, seeded RNG), so the
output is the same on every run: ``python scripts/taskgen.py [--data DIR]`` rewrites the
committed files, and a test checks that regeneration gives byte-identical files.
The factual questions are written by hand below; elements.csv and countries.csv are
hand-written tables that ``tool_lookup`` reads.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from fractions import Fraction
from pathlib import Path

from alems.catalog.tasks import ANSWER_SUFFIX, TaskItem

SEED = 20260127
ITEMS_PER_SET = 40

NAMES = [("Maria", "she"), ("Tom", "he"), ("Aisha", "she"), ("Kenji", "he"), ("Lena", "she"),
         ("Omar", "he"), ("Sofia", "she"), ("Ravi", "he"), ("Chloe", "she"), ("Diego", "he")]
OBJECTS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "cards"]


def _item(set_name: str, index: int, prompt: str, answer, answer_type: str = "number", *,
          needs_tool: str | None = None, level: int = 1, score: float = 1.0,
          aliases: list[str] | None = None) -> TaskItem:
    return TaskItem(
        id=f"{set_name}-{index:03d}", prompt=f"{prompt} {ANSWER_SUFFIX}", answer=_fmt(answer),
        answer_type=answer_type, needs_tool=needs_tool, complexity_level=level,
        complexity_score=float(score), aliases=list(aliases or []),
    )


def _fmt(value) -> str:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        text = f"{float(value):.10f}".rstrip("0").rstrip(".")
        if Fraction(text) != value:
            raise ValueError(f"{value} has no short exact decimal form")
        return text
    return str(value)


def _score(steps: int, operands: list) -> float:
    return float(min(10, 2 * steps + (1 if max(operands) >= 100 else 0)))


# ---------------------------------------------------------------------------- gsm8k_basic

def _basic(rng: random.Random):
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    kind = rng.randrange(8)
    if kind == 0:
        a, b = rng.randint(12, 95), rng.randint(5, 60)
        return f"{name} has {a} {obj}. {pron.capitalize()} buys {b} more. How many {obj} does {name} have now?", a + b, [a, b]
    if kind == 1:
        a = rng.randint(30, 120)
        b = rng.randint(5, a - 5)
        return f"{name} had {a} {obj} and gave {b} of them to a friend. How many {obj} does {name} have left?", a - b, [a, b]
    if kind == 2:
        a, b = rng.randint(6, 24), rng.randint(3, 15)
        return f"A box holds {a} {obj}. How many {obj} are in {b} boxes?", a * b, [a, b]
    if kind == 3:
        each, friends = rng.randint(3, 15), rng.randint(2, 9)
        return (f"{name} shares {each * friends} {obj} equally among {friends} friends. "
                f"How many {obj} does each friend get?"), each, [each * friends, friends]
    if kind == 4:
        a, b = rng.randint(4, 35), rng.randint(2, 9)
        return f"A concert ticket costs ${a}. How many dollars do {b} tickets cost?", a * b, [a, b]
    if kind == 5:
        a, b = rng.choice([40, 45, 50, 60, 70, 80, 90]), rng.randint(2, 6)
        return f"A train travels at {a} km per hour. How many kilometres does it travel in {b} hours?", a * b, [a, b]
    if kind == 6:
        a, b = rng.randint(8, 40), rng.randint(3, 14)
        return f"{name} reads {a} pages every day. How many pages does {name} read in {b} days?", a * b, [a, b]
    a = rng.randint(20, 90)
    b = rng.randint(3, a - 4)
    return f"A rope is {a} metres long. {name} cuts off {b} metres. How many metres of rope are left?", a - b, [a, b]


def gsm8k_basic(rng: random.Random) -> list[TaskItem]:
    items = []
    for i in range(ITEMS_PER_SET):
        prompt, answer, operands = _basic(rng)
        items.append(_item("gsm8k_basic", i + 1, prompt, answer, level=1, score=_score(1, operands)))
    return items


# ---------------------------------------------------------------------------- gsm8k_multi_step

def _multi(rng: random.Random):
    """(prompt, answer, steps, operands); every answer is exact."""
    name, pron = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    kind = rng.randrange(9)
    if kind == 0:
        a, b = rng.randint(3, 9), rng.randint(6, 12)
        c = rng.randint(2, a * b - 2)
        return (f"{name} buys {a} packs of {obj} with {b} {obj} in each pack, then gives away {c} {obj}. "
                f"How many {obj} does {name} have left?"), a * b - c, 2, [a, b, c]
    if kind == 1:
        a, b, c = rng.randint(8, 25), rng.randint(20, 60), rng.randint(2, 5)
        return (f"A shirt costs ${a} and a pair of trousers costs ${b}. {name} buys {c} shirts and one pair "
                f"of trousers. How many dollars does {name} spend?"), a * c + b, 2, [a, b, c]
    if kind == 2:
        a, b = rng.randint(30, 100), rng.randint(2, 8)
        c = rng.randint(1, 6)
        while b * c >= a:
            c -= 1
        c = max(c, 1)
        return (f"{name} has ${a}. {pron.capitalize()} buys {b} notebooks that cost ${c} each. "
                f"How many dollars does {name} have left?"), a - b * c, 2, [a, b, c]
    if kind == 3:
        price = rng.choice([20, 40, 60, 80, 100, 120, 160, 200])
        off = rng.choice([10, 20, 25, 50])
        answer = Fraction(price * (100 - off), 100)
        return (f"A jacket costs ${price}. It is on sale for {off}% off. "
                f"What is the sale price in dollars?"), answer, 2, [price, off]
    if kind == 4:
        a, b, c = rng.randint(9, 20), rng.randint(3, 8), rng.randint(4, 6)
        d = rng.randint(10, a * b * c // 2)
        return (f"{name} earns ${a} per hour and works {b} hours a day for {c} days. {pron.capitalize()} then "
                f"spends ${d}. How many dollars does {name} have left from these earnings?"), a * b * c - d, 3, [a, b, c, d]
    if kind == 5:
        while True:
            a, b = rng.randint(3, 8), rng.randint(12, 24)
            c = rng.randint(4, a * b - 4)
            if (a * b - c) % 2 == 0:
                break
        rest = a * b - c
        return (f"A bakery bakes {a} trays of muffins with {b} muffins on each tray. It sells {c} muffins in "
                f"the morning and half of the remaining muffins in the afternoon. How many muffins are left at "
                f"the end of the day?"), rest // 2, 3, [a, b, c]
    if kind == 6:
        while True:
            a, b, c, d = rng.randint(3, 9), rng.randint(10, 24), rng.randint(2, 8), rng.randint(10, 20)
            e = rng.choice([2, 3, 4, 5, 6])
            if (a * b + c * d) % e == 0:
                break
        return (f"A school orders {a} boxes of pencils with {b} pencils in each box and {c} boxes of pens with "
                f"{d} pens in each box. All the pencils and pens are shared equally among {e} classes. "
                f"How many items does each class get?"), (a * b + c * d) // e, 4, [a, b, c, d, e]
    if kind == 7:
        a = rng.randint(2, 9)
        b = rng.randint(1, 2 * a - 1)
        return (f"{name} runs {a} km on Monday and twice as far on Tuesday. On Wednesday {pron} runs {b} km "
                f"less than on Tuesday. How many kilometres does {name} run over the three days?"), a + 2 * a + (2 * a - b), 4, [a, b]
    count = rng.randint(6, 15)
    cents = rng.choice([15, 25, 35, 45, 55, 75])
    fee = rng.randint(1, 4)
    answer = Fraction(count * cents, 100) + fee
    return (f"{name} buys {count} pencils at ${cents / 100:.2f} each and pays a ${fee} delivery fee. "
            f"How many dollars does {name} pay in total?"), answer, 2, [count, cents, fee]


def gsm8k_multi_step(rng: random.Random) -> list[TaskItem]:
    items = []
    for i in range(ITEMS_PER_SET):
        prompt, answer, steps, operands = _multi(rng)
        level = 2 if steps == 2 else 3
        items.append(_item("gsm8k_multi_step", i + 1, prompt, answer, level=level, score=_score(steps, operands)))
    return items


# ---------------------------------------------------------------------------- factual_qa

FACTS: list[tuple[str, str, list[str]]] = [
    ("What is the capital of France?", "Paris", []),
    ("What is the capital of Japan?", "Tokyo", []),
    ("What is the capital of Canada?", "Ottawa", []),
    ("What is the capital of Australia?", "Canberra", []),
    ("What is the capital of Italy?", "Rome", []),
    ("What is the capital of Egypt?", "Cairo", []),
    ("What is the capital of Germany?", "Berlin", []),
    ("Which planet is closest to the Sun?", "Mercury", []),
    ("What is the largest planet in our solar system?", "Jupiter", []),
    ("Which planet is known as the Red Planet?", "Mars", []),
    ("What is the chemical symbol for gold?", "Au", []),
    ("What is the chemical symbol for sodium?", "Na", []),
    ("What is the chemical formula of water?", "H2O", ["H₂O"]),
    ("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare", ["Shakespeare"]),
    ("Who wrote the novel 'Pride and Prejudice'?", "Jane Austen", ["Austen"]),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", ["Leonardo", "da Vinci"]),
    ("Who developed the theory of general relativity?", "Albert Einstein", ["Einstein"]),
    ("Which scientist formulated the three laws of motion?", "Isaac Newton", ["Newton", "Sir Isaac Newton"]),
    ("What is the largest ocean on Earth?", "Pacific Ocean", ["Pacific"]),
    ("What is the tallest mountain above sea level on Earth?", "Mount Everest", ["Everest", "Mt. Everest", "Sagarmatha", "Chomolungma"]),
    ("What gas do plants take in from the air for photosynthesis?", "carbon dioxide", ["CO2", "CO₂"]),
    ("What is the hardest naturally occurring mineral?", "diamond", ["diamonds"]),
    ("In which country are the pyramids of Giza?", "Egypt", []),
    ("What is the currency of Japan?", "yen", ["Japanese yen"]),
    ("What is the main language spoken in Brazil?", "Portuguese", ["Brazilian Portuguese"]),
    ("Which organ pumps blood through the human body?", "heart", ["the heart"]),
    ("Which chemical element has atomic number 1?", "hydrogen", ["H"]),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong", ["Armstrong"]),
    ("On which continent is Kenya?", "Africa", []),
    ("What is the largest mammal on Earth?", "blue whale", ["blue whales"]),
    ("What colour do you get by mixing blue and yellow paint?", "green", []),
    ("Which composer wrote the 'Moonlight' Sonata?", "Ludwig van Beethoven", ["Beethoven"]),
    ("What is the name of the galaxy that contains our solar system?", "Milky Way", ["the Milky Way galaxy", "Milky Way galaxy"]),
    ("What is the main language spoken in Mexico?", "Spanish", []),
    ("Which metal is liquid at room temperature?", "mercury", ["Hg"]),
    ("What is the largest country in the world by area?", "Russia", ["Russian Federation"]),
    ("How many legs does a spider have?", "8", ["eight"]),
    ("How many sides does a hexagon have?", "6", ["six"]),
    ("How many minutes are in one hour?", "60", ["sixty"]),
    ("At what temperature in degrees Celsius does pure water boil at sea level?", "100", ["one hundred"]),
    ("What is the smallest prime number?", "2", ["two"]),
    ("Which gas makes up most of Earth's atmosphere?", "nitrogen", ["N2"]),
]


def factual_qa(rng: random.Random) -> list[TaskItem]:
    items = []
    for i, (question, answer, aliases) in enumerate(FACTS, start=1):
        numeric = answer.isdigit()
        items.append(_item(
            "factual_qa", i, f"{question} Reply with a short answer.", answer,
            "number" if numeric else "text", level=1, score=1.0 if numeric else 2.0,
            aliases=[] if numeric else aliases,
        ))
    return items


# ---------------------------------------------------------------------------- logical_reasoning

NONSENSE = ["bloops", "razzies", "lazzies", "wumps", "glorks", "fizzles", "snarks", "tovs",
            "grinks", "dorbs", "mimsies", "zents"]
PEOPLE = ["Anna", "Ben", "Carla", "David", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas"]
RELATIONS = [("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
             ("faster", "slower", "fastest", "slowest"), ("heavier", "lighter", "heaviest", "lightest")]


def _singular(plural: str) -> str:
    return plural[:-1]


def _syllogism(rng: random.Random, form: int) -> tuple[str, str]:
    a, b, c = rng.sample(NONSENSE, 3)
    x = rng.choice(PEOPLE)
    forms = [
        (f"All {a} are {b}. All {b} are {c}. Does it follow that all {a} are {c}?", "yes"),
        (f"All {a} are {b}. No {b} are {c}. Can any {_singular(a)} be a {_singular(c)}?", "no"),
        (f"All {a} are {b}. Some {b} are {c}. Does it necessarily follow that some {a} are {c}?", "no"),
        (f"All {a} are {b}. {x} is a {_singular(a)}. Is {x} a {_singular(b)}?", "yes"),
        (f"All {a} are {b}. {x} is a {_singular(b)}. Does it necessarily follow that {x} is a {_singular(a)}?", "no"),
        (f"No {a} are {b}. {x} is a {_singular(a)}. Is {x} a {_singular(b)}?", "no"),
        (f"Some {a} are {b}. All {b} are {c}. Does it follow that some {a} are {c}?", "yes"),
        (f"If a creature is a {_singular(a)}, then it is a {_singular(b)}. {x} is not a {_singular(b)}. "
         f"Is {x} a {_singular(a)}?", "no"),
    ]
    return forms[form]


def _ordering(rng: random.Random) -> tuple[str, str, int]:
    n = rng.choice([3, 4, 5])
    people = rng.sample(PEOPLE, n)              # people[0] has the most of the quality
    more, less, most, least = rng.choice(RELATIONS)
    facts = []
    for upper, lower in zip(people, people[1:]):
        facts.append(f"{upper} is {more} than {lower}." if rng.random() < 0.5 else f"{lower} is {less} than {upper}.")
    rng.shuffle(facts)
    kind = rng.randrange(3)
    if kind == 0:
        question, answer = f"Who is the {most}?", people[0]
    elif kind == 1:
        question, answer = f"Who is the {least}?", people[-1]
    else:
        i, j = sorted(rng.sample(range(n), 2))
        while j - i < 2 and n > 2:              # need a chain of at least two facts
            i, j = sorted(rng.sample(range(n), 2))
        if rng.random() < 0.5:
            question, answer = f"Is {people[i]} {more} than {people[j]}? Answer yes or no.", "yes"
        else:
            question, answer = f"Is {people[j]} {more} than {people[i]}? Answer yes or no.", "no"
    return f"{' '.join(facts)} {question}", answer, n


def logical_reasoning(rng: random.Random) -> list[TaskItem]:
    items = []
    for i in range(ITEMS_PER_SET):
        if i % 2 == 0:
            form = (i // 2) % 8
            question, answer = _syllogism(rng, form)
            prompt = f"{question} Answer yes or no."
            items.append(_item("logical_reasoning", i + 1, prompt, answer, "text", level=1 if form in (0, 3, 5) else 2,
                               score=3.0 if form in (0, 3, 5) else 4.0))
        else:
            prompt, answer, n = _ordering(rng)
            items.append(_item("logical_reasoning", i + 1, prompt, answer, "text", level=n - 2, score=float(n + 1)))
    return items


# ---------------------------------------------------------------------------- tool_arithmetic

def tool_arithmetic(rng: random.Random) -> list[TaskItem]:
    items = []
    for i in range(ITEMS_PER_SET):
        kind = i % 4
        if kind in (0, 1):
            a, b = rng.randint(1_000_000, 9_999_999), rng.randint(100_000, 999_999)
            prompt, answer, level, score = f"What is {a} × {b}?", a * b, 2, 6
        elif kind == 2:
            a, b = rng.randint(1_000_000, 9_999_999), rng.randint(100_000, 999_999)
            c = rng.randint(10_000_000, 99_999_999)
            prompt, answer, level, score = f"What is {a} × {b} − {c}?", a * b - c, 3, 7
        else:
            b = rng.randint(1_000, 9_999)
            q = rng.randint(100_000, 999_999)
            prompt, answer, level, score = f"What is {b * q} ÷ {b}?", q, 2, 5
        items.append(_item("tool_arithmetic", i + 1, f"{prompt} Compute the exact value.", answer,
                           needs_tool="calculator", level=level, score=score))
    return items


# ---------------------------------------------------------------------------- tool_lookup

def read_table(tables: Path, name: str) -> list[dict[str, str]]:
    with open(tables / f"{name}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def inventory_csv(rng: random.Random) -> str:
    """A fictional stock table: nothing a model can know without looking it up."""
    products = ["widget", "gasket", "bracket", "sprocket", "flange", "valve", "bearing", "spring",
                "hinge", "clamp", "nozzle", "pulley", "bushing", "coupling", "washer", "rivet"]
    codes = rng.sample(range(1000, 9999), len(products))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "product", "units_in_stock", "unit_price_cents"])
    for code, product in zip(codes, products):
        writer.writerow([f"SKU-{code}", product, rng.randint(3, 950), rng.randint(35, 4999)])
    return out.getvalue()


def tool_lookup(rng: random.Random, tables: Path, inventory: list[dict[str, str]]) -> list[TaskItem]:
    elements = read_table(tables, "elements")
    countries = read_table(tables, "countries")
    items: list[TaskItem] = []

    def add(prompt, answer, answer_type="number", level=1, score=3.0):
        items.append(_item("tool_lookup", len(items) + 1, prompt, answer, answer_type,
                           needs_tool="lookup", level=level, score=score))

    for row in rng.sample(elements, 8):
        add(f"Using the reference table 'elements', what is the atomic number of {row['element']}?",
            row["atomic_number"])
    for row in rng.sample(elements, 4):
        add(f"Using the reference table 'elements', what is the chemical symbol of {row['element']}?",
            row["symbol"], "text")
    for row in rng.sample(countries, 8):
        add(f"Using the reference table 'countries', what is the international calling code of {row['country']}?",
            row["calling_code"])
    for row in rng.sample(countries, 4):
        add(f"Using the reference table 'countries', what is the capital of {row['country']}?", row["capital"], "text")
    for row in rng.sample(inventory, 8):
        add(f"Using the reference table 'inventory', how many units of {row['sku']} are in stock?",
            row["units_in_stock"], score=4.0)
    for _ in range(4):
        x, y = rng.sample(elements, 2)
        add(f"Using the reference table 'elements', what is the sum of the atomic numbers of "
            f"{x['element']} and {y['element']}?", int(x["atomic_number"]) + int(y["atomic_number"]),
            level=3, score=6.0)
    for row in rng.sample(inventory, 4):
        add(f"Using the reference table 'inventory', what is the total value in cents of all units of "
            f"{row['sku']} in stock (units in stock × unit price in cents)?",
            int(row["units_in_stock"]) * int(row["unit_price_cents"]), level=3, score=7.0)
    return items


# ---------------------------------------------------------------------------- driver

def build_all(data: Path) -> dict[str, str]:
    """Relative path -> file text for every generated file (tables are read from ``data``)."""
    inventory_text = inventory_csv(random.Random(f"{SEED}|inventory"))
    inventory = list(csv.DictReader(io.StringIO(inventory_text)))
    sets = {
        "gsm8k_basic": gsm8k_basic(random.Random(f"{SEED}|gsm8k_basic")),
        "gsm8k_multi_step": gsm8k_multi_step(random.Random(f"{SEED}|gsm8k_multi_step")),
        "factual_qa": factual_qa(random.Random(f"{SEED}|factual_qa")),
        "logical_reasoning": logical_reasoning(random.Random(f"{SEED}|logical_reasoning")),
        "tool_arithmetic": tool_arithmetic(random.Random(f"{SEED}|tool_arithmetic")),
        "tool_lookup": tool_lookup(random.Random(f"{SEED}|tool_lookup"), data / "tables", inventory),
    }
    files = {"tables/inventory.csv": inventory_text}
    for name, items in sets.items():
        files[f"tasks/{name}.jsonl"] = "".join(item.to_json() + "\n" for item in items)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate A-LEMS's built-in task sets.")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "data"),
                        help="the data/ folder to write into (default: the repository's)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    for relative, text in build_all(data).items():
        path = data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
